"""Incremental Server-Sent Events decoding (WHATWG HTML, "Interpreting an event stream").

:class:`SSEDecoder` takes the body in chunks cut anywhere (inside a line, inside a UTF-8 character, between the
``\\r`` and ``\\n`` of a line ending) and returns the events completed by each chunk. :func:`aiter_sse` decodes a
streamed :class:`httpx.Response` as its bytes arrive.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

__all__ = ["SSEDecoder", "ServerSentEvent", "aiter_sse"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str = ""
    """The last event id seen in the stream so far (it persists across events, as the spec says)."""
    retry: int | None = None
    """Reconnection time in milliseconds, when this event's block carried a ``retry`` field."""

    def json(self) -> Any:
        return msgspec.json.decode(self.data)


class SSEDecoder:
    """Feed bytes with :meth:`decode`; get the events each chunk completes. An event not ended by a blank line
    when the stream ends is never dispatched (the spec discards it)."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial_line = ""
        self._at_stream_start = True
        self._skip_lf = False  # the previous chunk ended in "\r": a "\n" opening the next one ends nothing
        self._data: list[str] = []
        self._event = ""
        self._retry: int | None = None
        self.last_event_id = ""
        self.retry: int | None = None
        """The stream's current reconnection time (ms), from the latest valid ``retry`` field."""

    def decode(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._utf8.decode(chunk)
        if self._at_stream_start and text:
            self._at_stream_start = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        events: list[ServerSentEvent] = []
        for line in self._complete_lines(text):
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        return events

    def _complete_lines(self, text: str) -> list[str]:
        buffer = self._partial_line + text
        lines: list[str] = []
        start = 0
        length = len(buffer)
        while True:
            cr, lf = buffer.find("\r", start), buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if lf == -1 or (cr != -1 and cr < lf):
                lines.append(buffer[start:cr])
                if cr + 1 == length:
                    self._skip_lf = True
                    start = length
                    break
                start = cr + 2 if buffer[cr + 1] == "\n" else cr + 1
            else:
                lines.append(buffer[start:lf])
                start = lf + 1
        self._partial_line = buffer[start:]
        return lines

    def _process_line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry":
            if value.isascii() and value.isdigit():
                self._retry = self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, retry = self._data, self._event, self._retry
        self._data, self._event, self._retry = [], "", None
        if not data:
            return None
        return ServerSentEvent(event=event or "message", data="\n".join(data), id=self.last_event_id, retry=retry)


async def aiter_sse(response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
    """The events of a streamed response, decoded as its bytes arrive. The response is closed when the stream
    ends, fails, or the consumer stops early; wrap in ``contextlib.aclosing`` to close it at once on ``break``
    rather than when the abandoned generator is collected."""
    decoder = SSEDecoder()
    try:
        async for chunk in response.aiter_bytes():
            for event in decoder.decode(chunk):
                yield event
    finally:
        await response.aclose()
