"""Download links on the local server: unauthenticated URLs that serve one file until they expire, as the
hosted service's signed storage URLs do (the checkpoint archive, external weights files, trace exports)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from .registry import NotFound
from .replies import Reply, error_reply

__all__ = ["Downloads"]


@dataclass(frozen=True)
class _Download:
    produce: Callable[[], bytes]
    """Called when the link is fetched, so the file reflects the state then (and a deleted one is a 404)."""
    content_type: str
    filename: str
    deadline: float
    """``time.monotonic()`` after which the link answers 404."""


class Downloads:
    def __init__(self) -> None:
        self._links: dict[str, _Download] = {}

    def link(
        self, base_url: str, produce: Callable[[], bytes], content_type: str, filename: str, lifetime: timedelta
    ) -> str:
        """A URL on this server that serves ``produce()`` without auth until ``lifetime`` has passed."""
        token = secrets.token_urlsafe(16)
        self._links[token] = _Download(produce, content_type, filename, time.monotonic() + lifetime.total_seconds())
        return f"{base_url}/download/{token}"

    def serve(self, token: str) -> Reply:
        entry = self._links.get(token)
        if entry is None or time.monotonic() > entry.deadline:
            return error_reply(404, "unknown or expired download link")
        try:
            data = entry.produce()
        except NotFound as exc:
            return error_reply(404, str(exc))
        headers = (
            (b"content-type", entry.content_type.encode()),
            (b"content-disposition", f'attachment; filename="{entry.filename}"'.encode()),
        )
        return Reply(200, data, headers)
