"""A future's span: its attributes, the queue-state changes recorded on it, and how it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal

from opentelemetry import trace

from pristine_transport import extensions
from pristine_transport.errors import FutureExpiredError, FutureTimeoutError, RequestFailedError
from pristine_transport.layers.queue_state import QueueStateObserver

__all__ = ["FutureOutcome", "QueueStateFanout", "end_span", "end_task_span", "future_attributes", "outcome_of"]

FutureOutcome = Literal["ok", "failed", "expired", "timeout", "cancelled", "error"]


class QueueStateFanout:
    """The observer passed to the retrieve stack: records queue-state changes on the future's span and forwards
    them to the caller's observer. The layer reports every 408 / try-again body; only changes go further."""

    def __init__(self, span: trace.Span, observer: QueueStateObserver | None) -> None:
        self._span = span
        self._observer = observer
        self._last: tuple[str, str | None] | None = None

    def on_queue_state_change(self, state: str, reason: str | None) -> None:
        if (state, reason) == self._last:
            return
        self._last = (state, reason)
        attributes = {"queue.state": str(state)}
        if reason is not None:
            attributes["queue.state_reason"] = reason
        self._span.add_event("queue_state_change", attributes)
        if self._observer is not None:
            self._observer.on_queue_state_change(state, reason)


def future_attributes(endpoint: str, send_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The future span's attributes: its endpoint, and the caller's ``SPAN_ATTRIBUTES`` of the submit."""
    attributes: dict[str, Any] = {"pristine.future.endpoint": endpoint}
    extra = (send_kwargs.get("extensions") or {}).get(extensions.SPAN_ATTRIBUTES)
    if extra:
        attributes.update(extra)
    return attributes


def outcome_of(task: asyncio.Task[Any]) -> FutureOutcome:
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    if error is None:
        return "ok"
    if isinstance(error, RequestFailedError):
        return "failed"
    if isinstance(error, FutureExpiredError):
        return "expired"
    if isinstance(error, FutureTimeoutError):
        return "timeout"
    return "error"


def end_task_span(span: trace.Span, task: asyncio.Task[Any], *, polls: int) -> None:
    """End a future's span from its task's outcome."""
    error = None if task.cancelled() else task.exception()  # also marks a failure nobody awaits as retrieved
    end_span(span, outcome_of(task), polls=polls, error=error)


def end_span(span: trace.Span, outcome: FutureOutcome, *, polls: int, error: BaseException | None) -> None:
    span.set_attribute("pristine.future.polls", polls)
    span.set_attribute("pristine.future.outcome", outcome)
    if error is not None and outcome != "cancelled":
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
        span.record_exception(error)
    span.end()
