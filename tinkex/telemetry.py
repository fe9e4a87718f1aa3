"""Tinker's backend telemetry (``docs/wire.md`` §7): the event schemas, sent through pristine's EventReporter.

Toggle: ``TINKER_TELEMETRY`` (on unless ``0/false/no/off``), read once by the client's config, where an explicit
``telemetry=`` argument wins over it; the reporter does not read the environment again. Events go out in batches
from the background runtime loop, so reporting never blocks the caller. Exceptions are classified as the official
SDK does: a user error (``RequestFailedError`` with category ``user``, or a 4xx other than 408 anywhere in the
cause chain) becomes a ``user_error`` generic event; anything else an ``UNHANDLED_EXCEPTION``. Every retry the
transport makes becomes a generic event too, so the backend sees what the client went through.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import platform
import threading
import traceback
import uuid
import weakref
from contextlib import suppress
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pristine_transport.events import EventReporter
from pristine_transport.futures import RequestFailedError
from pristine_transport.layers.retry import RetryEvent

from .types import (
    GenericEvent,
    SessionEndEvent,
    SessionStartEvent,
    TelemetryEvent,
    TelemetrySendRequest,
    UnhandledExceptionEvent,
)

if TYPE_CHECKING:
    from .holder import Holder

__all__ = ["Telemetry", "is_user_error"]

logger = logging.getLogger("tinkex.telemetry")

_REPORTED = "_tinkex_telemetry_reported"
"""Marks an exception already reported (exceptions take no weak references, so no registry can do it)."""


def is_user_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RequestFailedError) and str(current.category).lower() == "user":
            return True
        status = getattr(current, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500 and status != 408:
            return True
        current = current.__cause__ or current.__context__
    return False


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Telemetry:
    """Tinker's event reporting for one client. Holds its client weakly: the reporter's task on the runtime loop
    must not keep a client that its user dropped alive (the client's finalizer closes this reporter)."""

    def __init__(self, holder: Holder) -> None:
        self._holder_ref = weakref.ref(holder)
        self._enabled = holder.config.telemetry
        self._sdk_version = holder.config.sdk_version
        self._events_spec = holder.manifest.events
        self._redactor = holder.redactor
        self._runtime = holder.runtime
        self._reporter: EventReporter | None = None
        self._session_id: str | None = None
        self._index = itertools.count()
        self._started_at = _now()
        self._lock = threading.Lock()
        self._closing: set[asyncio.Task[bool]] = set()
        """Close tasks scheduled on the runtime loop, kept so they are not garbage-collected mid-way."""
        # A client dropped without close(): send what is queued and stop the reporter's task.
        weakref.finalize(holder, self.close_soon)

    async def start(self, session_id: str) -> None:
        """Start reporting for ``session_id``. Runs on the background runtime loop, where the reporter lives."""
        holder = self._holder_ref()
        if holder is None or not self._enabled or self._events_spec is None or self._reporter is not None:
            return
        self._session_id = session_id
        # ``enabled=True``: the config already decided (an explicit argument over TINKER_TELEMETRY).
        self._reporter = EventReporter(holder.clients().http, self._events_spec, envelope=self._envelope, enabled=True)
        self._reporter.start()
        self._record(SessionStartEvent(**self._common("INFO"), timestamp=self._started_at))

    def _envelope(self, events: list[TelemetryEvent]) -> TelemetrySendRequest:
        assert self._session_id is not None
        return TelemetrySendRequest(
            events=events,
            platform=platform.system(),
            sdk_version=self._sdk_version,
            session_id=self._session_id,
        )

    def _common(self, severity: str) -> dict[str, Any]:
        with self._lock:
            index = next(self._index)
        return {"event_id": str(uuid.uuid4()), "event_session_index": index, "severity": severity}

    def _record(self, event: TelemetryEvent) -> None:
        if self._reporter is not None:
            self._reporter.enqueue(event)

    def generic(self, name: str, data: dict[str, Any], severity: str = "INFO") -> None:
        if self._reporter is not None:
            self._record(GenericEvent(**self._common(severity), timestamp=_now(), event_name=name, event_data=data))

    def on_retry(self, event: RetryEvent) -> None:
        """The transport's retry hook: every re-send becomes a ``GENERIC_EVENT`` (the official SDK reports each)."""
        self.generic(
            "transport.retry",
            {
                "method": event.method,
                "path": event.path,
                "attempt": event.attempt,
                "delay_s": event.delay_s,
                "reason": event.reason,
            },
            "WARNING",
        )

    def exception(self, exc: BaseException, *, fatal: bool = False) -> None:
        """Report an exception that reached the user; ``fatal`` also ends the session's telemetry.

        An exception is classified once: a future's failure that later escapes ``with client:`` only adds the
        session end."""
        if self._reporter is None:
            return
        if not getattr(exc, _REPORTED, False):
            self._classify(exc)
            with suppress(AttributeError):  # an exception type with __slots__ cannot be marked: it may repeat
                setattr(exc, _REPORTED, True)
        if fatal:
            duration = str(_now() - self._started_at)
            self._record(SessionEndEvent(**self._common("INFO"), timestamp=_now(), duration=duration))

    def _classify(self, exc: BaseException) -> None:
        redact = self._redactor.text
        if is_user_error(exc):
            data: dict[str, Any] = {"error_type": type(exc).__name__, "message": redact(str(exc))}
            status = getattr(exc, "status_code", None)
            if isinstance(status, int):
                data["status_code"] = status
            self.generic("user_error", data, "WARNING")
            return
        self._record(
            UnhandledExceptionEvent(
                **self._common("ERROR"),
                timestamp=_now(),
                error_type=type(exc).__name__,
                error_message=redact(str(exc)),
                traceback=redact("".join(traceback.format_exception(exc))),
            )
        )

    @property
    def reporter(self) -> EventReporter | None:
        return self._reporter

    def close(self, timeout: float) -> None:
        """Send what is queued (at most ``timeout`` s) and stop. From the runtime loop's own thread (or a finalizer
        running there) the close is scheduled, not awaited."""
        reporter, self._reporter = self._reporter, None
        if reporter is None:
            return
        runtime = self._runtime
        if runtime.in_loop_thread():
            task = runtime.loop.create_task(reporter.aclose(timeout))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        else:
            runtime.run(reporter.aclose(timeout), timeout + 1.0)

    def close_soon(self, timeout: float = 1.0) -> None:
        """Schedule the close on the runtime loop without waiting (safe from a finalizer on any thread)."""
        reporter, self._reporter = self._reporter, None
        if reporter is None or self._runtime.loop.is_closed():
            return
        closing = self._closing

        def schedule() -> None:
            task = asyncio.get_running_loop().create_task(reporter.aclose(timeout))
            closing.add(task)
            task.add_done_callback(closing.discard)

        try:
            self._runtime.loop.call_soon_threadsafe(schedule)
        except RuntimeError:  # the runtime loop closed meanwhile (interpreter exit): nothing left to flush to
            pass
