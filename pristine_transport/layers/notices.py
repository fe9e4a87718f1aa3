"""Notices a server attaches to its responses (a deprecation note, say), surfaced to the program once per client.

:class:`ResponseNotices` names the headers and remembers what its client was already told; one instance is shared
by every stack of a client (every endpoint, every event loop), so a note the server repeats on each response is
shown once. :class:`ResponseNoticeLayer` looks for the note on each response (one header lookup).
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass, field

import httpx

from .header_list import find_header

__all__ = ["ResponseNoticeLayer", "ResponseNotices", "ServerNoticeWarning", "notice_level"]

logger = logging.getLogger("pristine_transport.notices")


class ServerNoticeWarning(FutureWarning):
    """A server's notice about the API this client uses (for example that a version is deprecated). A
    ``FutureWarning``: shown by default, since it is meant for the people running the program."""


def notice_level(level_header: str | None) -> int:
    """The logging level of a notice: ``error`` (any case, spaces ignored) is ERROR, anything else WARNING."""
    return logging.ERROR if (level_header or "").strip().lower() == "error" else logging.WARNING


@dataclass
class ResponseNotices:
    """``note_header``: the response header carrying the note; ``level_header``: its severity (see
    :func:`notice_level`). Each distinct note becomes one :class:`ServerNoticeWarning` (``warning_category``) and
    one log record at its level, the first time a response carries it."""

    note_header: str
    level_header: str | None = None
    warning_category: type[Warning] = ServerNoticeWarning
    shown: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(self, response: httpx.Response) -> None:
        raw = find_header(response.headers, self.note_header)
        if raw is None:
            return
        note = raw.decode("utf-8", "replace").strip()
        if not note:
            return
        with self._lock:
            if note in self.shown:
                return
            self.shown.add(note)
        level_raw = find_header(response.headers, self.level_header) if self.level_header else None
        level = notice_level(level_raw.decode("latin-1") if level_raw is not None else None)
        logger.log(level, "Server notice (%s): %s", self.note_header, note)
        warnings.warn(f"the server says: {note}", self.warning_category, stacklevel=2)


class ResponseNoticeLayer(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, notices: ResponseNotices) -> None:
        self._inner = inner
        self._notices = notices

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        self._notices.observe(response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
