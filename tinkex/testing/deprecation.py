"""The local server's deprecation note: with ``ServerConfig.deprecation_note`` set, every response carries
``x-deprecation-note`` (and ``x-deprecation-level`` from ``ServerConfig.deprecation_level``), the headers official 0.38
reads (``docs/wire.md`` §8.1), so a client's handling of them is testable end to end."""

from __future__ import annotations

__all__ = ["deprecation_headers"]


def deprecation_headers(note: str | None, level: str | None) -> list[tuple[bytes, bytes]]:
    """The ``x-deprecation-note`` / ``x-deprecation-level`` response headers the server adds when it has a note
    (``ServerConfig.deprecation_note``), as the hosted service announces a deprecation to every client."""
    if not note:
        return []
    headers = [(b"x-deprecation-note", note.encode("latin-1", "replace"))]
    if level:
        headers.append((b"x-deprecation-level", level.encode("latin-1", "replace")))
    return headers
