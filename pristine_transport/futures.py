"""Future resolution: turn "here is a request id" answers into results, driven by a manifest's ``futures`` block.

An endpoint flagged with ``future`` answers at once with a request id; the result is fetched by polling the
manifest's retrieve endpoint through that endpoint's own layer stack. :class:`FutureResolver` submits and polls;
:class:`FutureHandle` is what the caller awaits (or waits on from another thread).

Delivery rules (design.md, "exactly once"):

- One polling task per future, started as soon as the handle exists. Every awaiter shares it, and awaiting twice
  gives the same result object.
- A wait's own ``timeout``, a ``result()`` call from another thread giving up, or cancelling one of several
  awaiters abandons only that wait: the polling goes on and a later await still gets the result. Cancelling the
  last awaiter, ``handle.cancel()``, the handle's ``deadline_s`` and :meth:`FutureResolver.aclose` stop polling.
  None of them cancels the server's work.
- Response bytes taken from the budget on a metadata-only reply are held until the future ends, and given back
  exactly once on every path (result, failure, deadline, cancellation).

Result formats: a submit may name the formats its result is asked for in (the manifest's ``result_formats`` of
the dialect the caller speaks). The polls then send them as ``Accept``, and a 2xx reply whose ``Content-Type`` is
one of them is decoded by the codec the SDK registered for its ``(serializer, message)`` in ``result_codecs``.
Every other reply is read as JSON, as without formats: try-again, failure and metadata-only replies are JSON.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import random as random_module
import time
import types
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar

import httpx
import msgspec
from opentelemetry import trace

from pristine_transport import extensions
from pristine_transport.client import ManifestClient
from pristine_transport.deadlines import DEADLINES, DeadlineExceededError, effective_deadlines
from pristine_transport.errors import (
    APIConnectionError,
    ConfigurationError,
    FutureExpiredError,
    FutureRetrieveError,
    FutureTimeoutError,
    RequestCancelledError,
    RequestCapacityError,
    RequestFailedError,
    RequestRateLimitedError,
    body_excerpt,
)
from pristine_transport.layers.pool_limiter import BytesSemaphore
from pristine_transport.layers.queue_state import QueueStateObserver
from pristine_transport.layers.telemetry import NotReadyPolls
from pristine_transport.logs import get_logger
from pristine_transport.manifest import FuturesSpec, ResultFormatSpec
from pristine_transport.policy import (
    DEFAULT_DEADLINES,
    Deadlines,
    FailureKind,
    PollAnswer,
    PollBody,
    PollBodyVerdict,
    PollEnd,
    poll_body_verdict,
    poll_delay,
    poll_is_progress,
    poll_status_verdict,
)
from pristine_transport.request import NOT_GIVEN

__all__ = [
    "CombinedHandle",
    "FutureExpiredError",
    "FutureHandle",
    "FutureOutcome",
    "FutureResolver",
    "FutureRetrieveError",
    "FutureTimeoutError",
    "RequestCancelledError",
    "RequestCapacityError",
    "RequestFailedError",
    "RequestRateLimitedError",
    "ResultCodecs",
    "ResultDecoder",
    "ResultHandle",
    "combine",
]

T = TypeVar("T")
R = TypeVar("R")

ResultDecoder = Callable[[bytes], Any]
"""Turns a result body in one registered format into the result object (raises ``ValueError`` when it cannot)."""
ResultCodecs = Mapping[tuple[str, str | None], ResultDecoder]
"""The result decoders an SDK registers, by a :class:`ResultFormatSpec`'s ``(serializer, message)``."""

FutureOutcome = Literal["ok", "failed", "expired", "timeout", "cancelled", "error"]

logger = get_logger("futures")

_FAILURE_ERRORS: Mapping[FailureKind, type[RequestFailedError]] = {
    "failed": RequestFailedError,
    "cancelled": RequestCancelledError,
    "rate_limited": RequestRateLimitedError,
    "capacity": RequestCapacityError,
}
"""The error raised for each failure :func:`~pristine_transport.policy.poll_body_verdict` names."""


class ResultHandle(Generic[T]):
    """What :class:`FutureHandle` and :class:`CombinedHandle` share: awaiting, waiting from another thread and
    cancelling one task that lives on one event loop."""

    _loop: asyncio.AbstractEventLoop
    _description: str
    _task: asyncio.Task[T] | None
    """The task every awaiter shares (a combined handle creates it on the first wait)."""
    _awaiters: int = 0

    def _shared_task(self) -> asyncio.Task[T]:
        """The task every awaiter shares; called on the loop thread only."""
        assert self._task is not None
        return self._task

    def _cancel_work(self) -> None:
        """Stop the work behind the handle; called on the loop thread only."""
        if self._task is not None:
            self._task.cancel()

    def done(self) -> bool:
        """True once the handle has a result, a failure, or was cancelled."""
        return self._task is not None and self._task.done()

    def __await__(self) -> Generator[Any, None, T]:
        return self.result_async().__await__()

    async def result_async(self, timeout: float | None = None) -> T:
        """The result. ``timeout`` bounds this wait only (:class:`FutureTimeoutError`); polling goes on. Cancelling
        the last awaiter stops the polling (the server's work is not cancelled); other awaiters keep it alive."""
        if _running_loop() is not self._loop:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.result_async(timeout), self._loop))
        return await self._wait(timeout, awaiter=True)

    async def _wait(self, timeout: float | None, *, awaiter: bool) -> T:
        task = self._shared_task()
        self._awaiters += awaiter
        try:
            async with asyncio.timeout(timeout):
                # shield: cancelling this awaiter must not cancel the task the other awaiters share.
                return await asyncio.shield(task)
        except FutureTimeoutError:
            raise
        except TimeoutError:
            if task.done():
                raise
            raise FutureTimeoutError(self._description, timeout or 0.0, polling_stopped=False) from None
        except asyncio.CancelledError:
            if awaiter and self._awaiters == 1 and not task.done():
                self._cancel_work()
            raise
        finally:
            self._awaiters -= awaiter

    def result(self, timeout: float | None = None) -> T:
        """Block the calling thread until the result is there. Not allowed on the handle's own loop thread,
        where it would deadlock: there, ``await`` the handle or use ``result_async()``. A cancelled handle raises
        ``concurrent.futures.CancelledError``, as a ``concurrent.futures.Future`` would."""
        if _running_loop() is self._loop:
            raise RuntimeError(
                f"{type(self).__name__}.result() called on the event loop that resolves it, which would deadlock; "
                "use `await handle` or `await handle.result_async()` instead."
            )
        task = self._task
        if task is not None and task.done():
            if task.cancelled():
                raise concurrent.futures.CancelledError(f"{self._description} was cancelled")
            return task.result()
        if self._loop.is_closed():
            raise RuntimeError(f"the event loop of {self._description} is closed")
        # Not an awaiter: giving up after ``timeout`` here leaves the polling running, as a concurrent future would.
        waiting = asyncio.run_coroutine_threadsafe(self._wait(None, awaiter=False), self._loop)
        try:
            return waiting.result(timeout)
        except FutureTimeoutError:
            raise  # the handle's own deadline, raised by the task
        except concurrent.futures.TimeoutError:
            waiting.cancel()
            raise FutureTimeoutError(self._description, timeout or 0.0, polling_stopped=False) from None

    def cancel(self) -> None:
        """Stop resolving (polling ends, held budget is released). The server's work is not cancelled."""
        if _running_loop() is self._loop:
            self._cancel_work()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._cancel_work)


class FutureHandle(ResultHandle[T]):
    """One submitted request's future result: ``await handle``, ``handle.result()`` from another thread."""

    def __init__(
        self,
        request_id: str,
        task: asyncio.Task[T],
        loop: asyncio.AbstractEventLoop,
        submit_reply: Mapping[str, Any] | None = None,
    ) -> None:
        self.request_id = request_id
        self._task = task
        self._loop = loop
        self._description = request_id
        self.submit_reply: Mapping[str, Any] = submit_reply if submit_reply is not None else _NO_REPLY
        """The submit's decoded JSON reply (the request id and whatever else the server said when it accepted the
        request, e.g. ids it assigned up front); empty for a handle made by :meth:`FutureResolver.handle`."""

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"FutureHandle(request_id={self.request_id!r}, {state})"


_NO_REPLY: Mapping[str, Any] = types.MappingProxyType({})


class CombinedHandle(ResultHandle[R]):
    """Several handles reduced by ``transform`` into one result, with the handle API. The first failure among
    the parts propagates. ``transform`` runs once, on the first await; later awaits get the same object.
    ``cancel()`` cancels every part."""

    def __init__(self, parts: Sequence[ResultHandle[Any]], transform: Callable[[list[Any]], R]) -> None:
        if not parts:
            raise ValueError("combine() needs at least one handle")
        loops = {id(part._loop) for part in parts}
        if len(loops) != 1:
            raise ValueError("combine() needs handles of one event loop")
        self.parts = list(parts)
        self._transform = transform
        self._loop = parts[0]._loop
        self._task: asyncio.Task[R] | None = None
        self._description = "combined(" + ", ".join(part._description for part in parts) + ")"

    @property
    def request_ids(self) -> list[str]:
        return [part._description for part in self.parts]

    def _shared_task(self) -> asyncio.Task[R]:
        # Called on the loop thread only (result_async hops there first), so creating it once needs no lock.
        if self._task is None:
            self._task = self._loop.create_task(self._reduce(), name=f"pristine {self._description}")
            self._task.add_done_callback(_retrieve_outcome)
        return self._task

    async def _reduce(self) -> R:
        tasks = [part._shared_task() for part in self.parts]
        # asyncio.wait never cancels what it waits on, so a cancelled combined wait leaves the parts running.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and (task.cancelled() or task.exception() is not None):
                return task.result()  # raises the part's failure
        return self._transform([task.result() for task in tasks])

    def _cancel_work(self) -> None:
        for part in self.parts:
            part._cancel_work()
        super()._cancel_work()

    def done(self) -> bool:
        if self._task is not None:
            return self._task.done()
        return all(part.done() for part in self.parts)

    def __repr__(self) -> str:
        return f"CombinedHandle({self._description})"


def combine(handles: Sequence[ResultHandle[Any]], transform: Callable[[list[Any]], R]) -> CombinedHandle[R]:
    """One handle whose result is ``transform([result of each handle, in order])``."""
    return CombinedHandle(handles, transform)


class _ObserverFanout:
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


class _Poll:
    """Mutable state of one future's polling."""

    def __init__(
        self,
        request_id: str,
        request_type: str | None,
        roundtrip_s: float,
        result_formats: Sequence[ResultFormatSpec] = (),
    ) -> None:
        self.request_id = request_id
        self.request_type = request_type
        self.roundtrip_s = roundtrip_s
        self.result_formats = tuple(result_formats)
        self.iteration = 0
        self.allow_metadata_only = True
        self.held_bytes = 0
        self.fast_repolls = 0
        self.connection_errors = 0
        self.bad_requests = 0
        self.rate_limited = 0
        self.last_answer = "no answer yet"
        self.last_progress = 0.0


class FutureResolver:
    """Submits future-returning endpoints and polls their results, as the manifest's ``futures`` block says.

    ``response_budget`` bounds the bytes of results announced by metadata-only replies across every future of
    this resolver (default: a budget of ``metadata_only.budget_bytes``). ``result_codecs`` decodes results in the
    formats a submit names (see the module's docstring). ``clock``, ``sleep`` and ``random`` are injectable for
    tests.
    """

    def __init__(
        self,
        client: ManifestClient,
        *,
        spec: FuturesSpec | None = None,
        response_budget: BytesSemaphore | None = None,
        tracer: trace.Tracer | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = random_module.random,
        deadlines: Deadlines | None = None,
        result_codecs: ResultCodecs | None = None,
        not_ready_polls: Literal["events", "spans"] = "events",
    ) -> None:
        if not_ready_polls not in ("events", "spans"):
            raise ValueError(f"not_ready_polls must be 'events' or 'spans', got {not_ready_polls!r}")
        self.not_ready_polls = not_ready_polls
        """``events``: a poll answered "not ready yet" is an event and a count on the future's span, not spans of its
        own (a long-polled future would flood the exporter); ``spans``: every poll gets its spans."""
        spec = spec if spec is not None else client.manifest.futures
        if spec is None:
            raise ValueError(f"manifest {client.manifest.name!r} has no futures block")
        self.client = client
        self.spec = spec
        if response_budget is None and spec.metadata_only is not None:
            response_budget = BytesSemaphore(spec.metadata_only.budget_bytes)
        self.response_budget = response_budget
        self._tracer = tracer if tracer is not None else trace.get_tracer("pristine_transport.futures")
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._live: set[asyncio.Task[Any]] = set()
        self.result_codecs: ResultCodecs = result_codecs if result_codecs is not None else {}
        self.deadlines = deadlines if deadlines is not None else DEFAULT_DEADLINES
        """This resolver's default deadlines (a ``with deadlines(...)`` scope around a call wins); every request it
        sends carries them, the submit included."""

    async def submit(
        self,
        endpoint: str,
        *,
        result_type: type[T],
        json: Any = NOT_GIVEN,
        observer: QueueStateObserver | None = None,
        deadline_s: float | None = None,
        result_formats: Sequence[ResultFormatSpec] = (),
        request_type: str | None = None,
        **send_kwargs: Any,
    ) -> FutureHandle[T]:
        """Send ``endpoint`` (its own retries and limits apply), read the request id, start polling on the
        current loop. ``deadline_s`` bounds the polling, counted from when the handle is created; when it passes,
        polling stops with :class:`FutureTimeoutError`. The submit's reply is the handle's ``submit_reply``.

        ``result_formats``: what the polls ask the result in (nothing is sent when one has no codec).
        ``request_type``: the polls' request-type header, when it is not ``endpoint``'s (a request a dialect
        sends to another endpoint keeps its own type)."""
        started = self._clock()
        self._check_codecs(result_formats)
        if request_type is None:
            future_spec = self.client.manifest.endpoint(endpoint).future
            request_type = future_spec.request_type if future_spec is not None else None
        span = self._tracer.start_span(f"future {endpoint}", attributes=_future_attributes(endpoint, send_kwargs))
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                if DEADLINES not in (send_kwargs.get("extensions") or {}):
                    given = effective_deadlines({}, self.deadlines)
                    send_kwargs["extensions"] = {**(send_kwargs.get("extensions") or {}), DEADLINES: given}
                body = await self.client.call(endpoint, json=json, **send_kwargs)
            request_id = _request_id_of(body, self.spec.request_id_field, endpoint)
        except BaseException as exc:
            _end_span(span, "cancelled" if isinstance(exc, asyncio.CancelledError) else "error", polls=0, error=exc)
            raise
        reply = body if isinstance(body, Mapping) else None
        state = _Poll(request_id, request_type, self._clock() - started, result_formats)
        return self._start(span, state, result_type, observer, deadline_s, reply)

    def handle(
        self,
        request_id: str,
        *,
        result_type: type[T],
        request_type: str | None = None,
        observer: QueueStateObserver | None = None,
        deadline_s: float | None = None,
        submitted_at: float | None = None,
        endpoint: str | None = None,
        result_formats: Sequence[ResultFormatSpec] = (),
    ) -> FutureHandle[T]:
        """Poll a request id obtained some other way. ``submitted_at`` (on this resolver's clock) gives the
        roundtrip header; ``endpoint`` names the span (default: the retrieve endpoint). Call it on the loop
        that should poll."""
        asyncio.get_running_loop()  # fail before a span is started that nothing would end
        self._check_codecs(result_formats)
        name = endpoint or self.spec.retrieve_endpoint
        span = self._tracer.start_span(f"future {name}", attributes={"pristine.future.endpoint": name})
        roundtrip = self._clock() - submitted_at if submitted_at is not None else 0.0
        state = _Poll(request_id, request_type, roundtrip, result_formats)
        return self._start(span, state, result_type, observer, deadline_s)

    def _check_codecs(self, result_formats: Sequence[ResultFormatSpec]) -> None:
        for result_format in result_formats:
            if result_format.serializer == "json":
                continue
            if (result_format.serializer, result_format.message) not in self.result_codecs:
                raise ConfigurationError(
                    f"no result codec is registered for serializer {result_format.serializer!r} and message "
                    f"{result_format.message!r} ({result_format.content_type})"
                )

    async def aclose(self) -> None:
        """Stop every future still polling and wait until their tasks have ended."""
        tasks = list(self._live)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(
        self,
        span: trace.Span,
        state: _Poll,
        result_type: type[T],
        observer: QueueStateObserver | None,
        deadline_s: float | None,
        submit_reply: Mapping[str, Any] | None = None,
    ) -> FutureHandle[T]:
        request_id = state.request_id
        span.set_attribute("pristine.future.request_id", request_id)  # deprecated: {namespace}.request_id
        span.set_attribute(f"{self.client.manifest.name}.request_id", request_id)
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            self._resolve(span, state, result_type, _ObserverFanout(span, observer), deadline_s),
            name=f"pristine future {request_id}",
        )
        self._live.add(task)
        task.add_done_callback(self._live.discard)
        # Ended from the task's outcome, not inside the coroutine: a task cancelled before its first step never
        # runs any of its code.
        task.add_done_callback(lambda done: _end_future_span(span, state, done))
        return FutureHandle(request_id, task, loop, submit_reply)

    async def _resolve(
        self,
        span: trace.Span,
        state: _Poll,
        result_type: type[T],
        observer: _ObserverFanout,
        deadline_s: float | None,
    ) -> T:
        deadline = asyncio.timeout(deadline_s)
        try:
            # The polls run inside the future's span, so each poll's HTTP span is its child.
            with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                async with deadline:
                    return await self._poll_until_resolved(span, state, result_type, observer)
        except TimeoutError:
            if deadline.expired():
                raise FutureTimeoutError(state.request_id, deadline_s or 0.0, polling_stopped=True) from None
            raise
        finally:
            if state.held_bytes and self.response_budget is not None:
                self.response_budget.release(state.held_bytes)
                state.held_bytes = 0

    async def _poll_until_resolved(
        self, span: trace.Span, state: _Poll, result_type: type[T], observer: _ObserverFanout
    ) -> T:
        spec = self.spec
        started = self._clock()
        warn_at = spec.warn_after_s
        deadlines = effective_deadlines({}, self.deadlines)
        no_progress = deadlines.no_progress_s
        state.last_progress = started
        poll_extensions: dict[str, Any] = {extensions.QUEUE_OBSERVER: observer}
        if self.not_ready_polls == "events" and span.is_recording():
            poll_extensions[extensions.NOT_READY_POLLS] = NotReadyPolls(span)
        while True:
            sent_at = self._clock()
            if warn_at is not None and sent_at - started >= warn_at:
                logger.warning(
                    "future %s (%s) is still unresolved after %.0f s: %d polls, last answer: %s",
                    state.request_id,
                    state.request_type or "request",
                    sent_at - started,
                    state.iteration,
                    state.last_answer,
                )
                warn_at *= 2
            poll_deadlines = deadlines
            if no_progress is not None:
                # One poll may not outlast the future's own no-progress deadline.
                remaining = max(state.last_progress + no_progress - sent_at, 0.001)
                poll_deadlines = dataclasses.replace(deadlines, no_progress_s=remaining)
            try:
                response = await self.client.send(
                    spec.retrieve_endpoint,
                    json=self._poll_body(state),
                    headers=self._poll_headers(state),
                    extensions={**poll_extensions, DEADLINES: poll_deadlines},
                )
            except APIConnectionError as exc:  # includes APITimeoutError
                state.last_answer = type(exc).__name__
                state.iteration += 1
                state.connection_errors += 1
                logger.debug("future %s: poll failed (%s)", state.request_id, exc)
                await self._wait(state, deadlines, PollAnswer.NO_ANSWER, held=False, streak=state.connection_errors)
                continue
            state.iteration += 1
            state.connection_errors = 0
            held = self._clock() - sent_at >= spec.backoff.held_poll_s
            status = response.status_code
            state.last_answer = f"HTTP {status}"
            if status != 400:
                state.bad_requests = 0
            verdict = poll_status_verdict(
                status, response.content, expiry_status=spec.expiry_status, queue_state_field=spec.queue_state_field
            )
            if verdict is PollAnswer.SHED:  # the server sheds polls: back off as for connection errors
                state.rate_limited += 1
                await self._wait(state, deadlines, verdict, held=held, streak=state.rate_limited)
                continue
            state.rate_limited = 0
            if verdict is PollEnd.EXPIRED:
                raise FutureExpiredError(state.request_id, status, request_type=state.request_type)
            if verdict is PollEnd.FATAL:
                raise self._status_error(state, status, response.content, "fatal status")
            if verdict is PollAnswer.BARE_400:
                state.bad_requests += 1
                if state.bad_requests > spec.bad_request_retries:
                    raise self._status_error(state, status, response.content, "repeated bare 400")
            if verdict is not None:  # not ready yet: a server error, a 408 (queued or not), a bare 400
                await self._wait(state, deadlines, verdict, held=held, streak=state.fast_repolls + 1)
                continue
            result_format = _format_of(response, state.result_formats)
            if result_format is not None:
                return self._decoded(state, result_format, response.content, result_type)
            try:
                body = msgspec.json.decode(response.content)
            except msgspec.DecodeError:
                raise self._status_error(state, status, response.content, "response is not JSON") from None
            answer = poll_body_verdict(body, spec, metadata_only_welcome=state.allow_metadata_only)
            if isinstance(answer.outcome, PollAnswer):
                state.last_answer = answer.last_answer
                if answer.outcome is PollAnswer.METADATA_FIRST:
                    await self._hold_metadata_only(span, state, answer.size)
                await self._wait(state, deadlines, answer.outcome, held=held, streak=state.fast_repolls + 1)
                continue
            if answer.outcome is PollBody.BAD_METADATA:
                raise self._bad_metadata(state, body)
            if answer.outcome is PollBody.FAILED:
                raise self._request_failed(state, body, answer)
            try:
                return msgspec.convert(body, result_type)
            except msgspec.ValidationError as exc:
                raise FutureRetrieveError(
                    f"Error retrieving result for request {state.request_id}: the result does not match "
                    f"{_type_name(result_type)}: {exc}",
                    request_id=state.request_id,
                    status_code=status,
                    body=body,
                ) from None

    async def _wait(self, state: _Poll, deadlines: Deadlines, answer: PollAnswer, *, held: bool, streak: int) -> None:
        """Record the answer, then wait as :func:`~pristine_transport.policy.poll_delay` says, unless the next poll
        would start after the no-progress deadline: then fail with :class:`DeadlineExceededError`."""
        now = self._clock()
        if poll_is_progress(answer):
            state.last_progress = now
        delay = poll_delay(answer, held=held, streak=streak, spec=self.spec.backoff, random=self._random())
        if answer not in (PollAnswer.NO_ANSWER, PollAnswer.SHED):
            state.fast_repolls = 0 if delay == 0.0 else state.fast_repolls + 1
        no_progress = deadlines.no_progress_s
        if no_progress is not None and now + delay >= state.last_progress + no_progress:
            if state.last_progress != now:
                raise self._deadline_error(state, now, no_progress)
            delay = no_progress / 2  # a live server just said "not yet": ask again within the deadline
        if delay > 0:
            await self._sleep(delay)

    def _deadline_error(self, state: _Poll, now: float, no_progress: float) -> DeadlineExceededError:
        what = f"future {state.request_id}" + (f" ({state.request_type})" if state.request_type else "")
        return DeadlineExceededError(
            httpx.Request("POST", self.client.url_for(self.spec.retrieve_endpoint)),
            waited_on=what,
            waited_s=now - state.last_progress,
            deadline="no_progress",
            last_seen=state.last_answer,
            may_have_run=True,
            request_id=state.request_id,
            detail=f"no-progress deadline {no_progress:g} s; the next poll would start after it",
        )

    def _decoded(self, state: _Poll, result_format: ResultFormatSpec, content: bytes, result_type: type[T]) -> T:
        decoder = self.result_codecs[(result_format.serializer, result_format.message)]
        try:
            result = decoder(content)
        except ValueError as exc:
            raise FutureRetrieveError(
                f"Error retrieving result for request {state.request_id}: the {result_format.content_type} result "
                f"does not decode as {result_format.message}: {exc}",
                request_id=state.request_id,
                status_code=200,
            ) from None
        if isinstance(result_type, type) and not isinstance(result, result_type):
            raise FutureRetrieveError(
                f"Error retrieving result for request {state.request_id}: the {result_format.message} codec gave "
                f"a {type(result).__name__}, not a {_type_name(result_type)}",
                request_id=state.request_id,
                status_code=200,
            )
        return result

    def _poll_body(self, state: _Poll) -> dict[str, Any]:
        body: dict[str, Any] = {self.spec.request_id_field: state.request_id}
        if self.spec.allow_metadata_only_field is not None:
            body[self.spec.allow_metadata_only_field] = state.allow_metadata_only
        return body

    def _poll_headers(self, state: _Poll) -> dict[str, str]:
        names = self.spec.poll_headers
        headers: dict[str, str] = {}
        if names.iteration is not None:
            headers[names.iteration] = str(state.iteration)
        if names.request_type is not None and state.request_type is not None:
            headers[names.request_type] = state.request_type
        if state.result_formats:
            headers["Accept"] = ", ".join(result_format.content_type for result_format in state.result_formats)
        if names.roundtrip is not None and state.iteration == 0:
            headers[names.roundtrip] = repr(state.roundtrip_s)
        return headers

    async def _hold_metadata_only(self, span: trace.Span, state: _Poll, size: int) -> None:
        """The first metadata-only reply: hold its bytes from the budget until the future ends, and ask for the
        full result from now on."""
        span.add_event("metadata_only", {"pristine.future.response_bytes": size})
        if self.response_budget is not None:
            await self.response_budget.acquire(size)
            state.held_bytes = size
        state.allow_metadata_only = False

    def _bad_metadata(self, state: _Poll, body: Any) -> FutureRetrieveError:
        size_field = self.spec.metadata_only.size_field if self.spec.metadata_only is not None else "size"
        return FutureRetrieveError(
            f"Error retrieving result for request {state.request_id}: metadata-only reply has no valid "
            f"{size_field!r} (got {body.get(size_field)!r})",
            request_id=state.request_id,
            status_code=200,
            body=body,
        )

    def _request_failed(self, state: _Poll, body: Any, answer: PollBodyVerdict) -> RequestFailedError:
        reported = str(body.get(self.spec.failure.field))
        message = f"Request failed: {reported} for request_id={state.request_id}"
        return _FAILURE_ERRORS[answer.failure](message, request_id=state.request_id, category=answer.category)

    def _status_error(self, state: _Poll, status: int, content: bytes, why: str) -> FutureRetrieveError:
        text = self.client.redactor.text(body_excerpt(content.decode("utf-8", errors="replace")))
        try:
            body: object = msgspec.json.decode(content) if content else None
        except msgspec.DecodeError:
            body = text
        return FutureRetrieveError(
            f"Error retrieving result for request {state.request_id} ({why}): HTTP {status} - {text or '<empty>'}",
            request_id=state.request_id,
            status_code=status,
            body=body,
        )


def _future_attributes(endpoint: str, send_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The future span's attributes: its endpoint, and the caller's ``SPAN_ATTRIBUTES`` of the submit."""
    attributes: dict[str, Any] = {"pristine.future.endpoint": endpoint}
    extra = (send_kwargs.get("extensions") or {}).get(extensions.SPAN_ATTRIBUTES)
    if extra:
        attributes.update(extra)
    return attributes


def _request_id_of(body: Any, field: str, endpoint: str) -> str:
    value = body.get(field) if isinstance(body, Mapping) else getattr(body, field, None)
    if not isinstance(value, str) or not value:
        raise FutureRetrieveError(
            f"{endpoint} answered without a request id in field {field!r}: {body!r:.200}", request_id="", body=body
        )
    return value


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _format_of(response: httpx.Response, formats: Sequence[ResultFormatSpec]) -> ResultFormatSpec | None:
    """The asked-for non-JSON format a reply's ``Content-Type`` names, or None (the reply is read as JSON)."""
    if not formats:
        return None
    media_type = _media_type(response.headers.get("content-type", ""))
    for result_format in formats:
        if result_format.serializer != "json" and _media_type(result_format.content_type) == media_type:
            return result_format
    return None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", repr(tp))


def _outcome_of(task: asyncio.Task[Any]) -> FutureOutcome:
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


def _end_future_span(span: trace.Span, state: _Poll, task: asyncio.Task[Any]) -> None:
    error = None if task.cancelled() else task.exception()  # also marks a failure nobody awaits as retrieved
    _end_span(span, _outcome_of(task), polls=state.iteration, error=error)


def _end_span(span: trace.Span, outcome: FutureOutcome, *, polls: int, error: BaseException | None) -> None:
    span.set_attribute("pristine.future.polls", polls)
    span.set_attribute("pristine.future.outcome", outcome)
    if error is not None and outcome != "cancelled":
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
        span.record_exception(error)
    span.end()


def _retrieve_outcome(task: asyncio.Task[Any]) -> None:
    # A future nobody awaits may still fail; mark its exception retrieved so asyncio does not log it at GC.
    if not task.cancelled():
        task.exception()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
