"""Deprecation notes the Tinker server attaches to responses (``x-deprecation-note``, severity in
``x-deprecation-level``: ``error`` or a warning), as official 0.38 reads them (``_base_client._log_deprecation_note``).

The official SDK logs the note on every response that carries it; tinkex shows each distinct note once per client,
as a :class:`ServerDeprecationWarning` and one log record at its level (``pristine_transport.layers.notices``).
"""

from __future__ import annotations

from pristine_transport.layers.notices import ResponseNotices, ServerNoticeWarning

__all__ = ["DEPRECATION_LEVEL_HEADER", "DEPRECATION_NOTE_HEADER", "ServerDeprecationWarning", "deprecation_notices"]

DEPRECATION_NOTE_HEADER = "x-deprecation-note"
DEPRECATION_LEVEL_HEADER = "x-deprecation-level"


class ServerDeprecationWarning(ServerNoticeWarning):
    """The Tinker server says something this client uses is deprecated (the note says what and until when)."""


def deprecation_notices() -> ResponseNotices:
    """A client's record of the notes it was shown (one per client, shared by all its connections)."""
    return ResponseNotices(
        note_header=DEPRECATION_NOTE_HEADER,
        level_header=DEPRECATION_LEVEL_HEADER,
        warning_category=ServerDeprecationWarning,
    )
