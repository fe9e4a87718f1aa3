"""Future resolution: turn "here is a request id" answers into results, driven by a manifest's ``futures`` block.

An endpoint flagged with ``future`` answers at once with a request id; the result is fetched by polling the
manifest's retrieve endpoint through that endpoint's own layer stack. :class:`FutureResolver` submits and polls;
what each poll's answer means and what follows it are decided by :mod:`pristine_transport.policy`
(``read_poll_answer``, ``next_poll``, ``poll_wait_within_deadline``, pure and table-tested), and the loop here only
applies them: it sends the polls, sleeps and delivers.

Delivery rules (docs/design.md, "exactly once"):

- One polling task per future, started as soon as the handle exists (:mod:`pristine_transport.future_handles`
  holds the handles every awaiter shares).
- A wait's own ``timeout``, a ``result()`` call from another thread giving up, or cancelling one of several
  awaiters abandons only that wait: the polling goes on and a later await still gets the result. Cancelling the
  last awaiter, ``handle.cancel()``, the handle's ``deadline_s`` and :meth:`FutureResolver.aclose` stop polling.
  None of them cancels the server's work.
- Response bytes taken from the budget on a metadata-only reply are held until the future ends, and given back
  exactly once on every path (result, failure, deadline, cancellation).

Result formats and their decoding are :mod:`pristine_transport.future_results`; the future's span is
:mod:`pristine_transport.future_spans`. This module re-exports the public names of both, and of the handles.
"""

from __future__ import annotations

import asyncio
import random as random_module
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import httpx
from opentelemetry import trace

from pristine_transport import extensions
from pristine_transport.client import ManifestClient
from pristine_transport.deadlines import DEADLINES, DeadlineExceededError, effective_deadlines
from pristine_transport.errors import (
    APIConnectionError,
    FutureExpiredError,
    FutureRetrieveError,
    FutureTimeoutError,
    RequestCancelledError,
    RequestCapacityError,
    RequestFailedError,
    RequestRateLimitedError,
)
from pristine_transport.future_handles import CombinedHandle, FutureHandle, ResultHandle, combine
from pristine_transport.future_polls import (
    PollState,
    bad_metadata_error,
    poll_deadlines,
    poll_request_body,
    poll_request_headers,
    request_failed_error,
    status_error,
)
from pristine_transport.future_results import (
    ResultCodecs,
    ResultDecoder,
    check_codecs,
    convert_result,
    decode_result,
    format_of,
    request_id_of,
)
from pristine_transport.future_spans import (
    FutureOutcome,
    QueueStateFanout,
    end_span,
    end_task_span,
    future_attributes,
)
from pristine_transport.layers.pool_limiter import BytesSemaphore
from pristine_transport.layers.queue_state import QueueStateObserver
from pristine_transport.layers.telemetry import NotReadyPolls
from pristine_transport.logs import get_logger
from pristine_transport.manifest import FuturesSpec, ResultFormatSpec
from pristine_transport.policy import (
    DEFAULT_DEADLINES,
    Deadlines,
    PollAnswer,
    PollBody,
    PollEnd,
    PollReading,
    PollWait,
    next_poll,
    poll_wait_within_deadline,
    read_poll_answer,
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

logger = get_logger("futures")


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
        check_codecs(result_formats, self.result_codecs)
        if request_type is None:
            future_spec = self.client.manifest.endpoint(endpoint).future
            request_type = future_spec.request_type if future_spec is not None else None
        span = self._tracer.start_span(f"future {endpoint}", attributes=future_attributes(endpoint, send_kwargs))
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                if DEADLINES not in (send_kwargs.get("extensions") or {}):
                    given = effective_deadlines({}, self.deadlines)
                    send_kwargs["extensions"] = {**(send_kwargs.get("extensions") or {}), DEADLINES: given}
                body = await self.client.call(endpoint, json=json, **send_kwargs)
            request_id = request_id_of(body, self.spec.request_id_field, endpoint)
        except BaseException as exc:
            end_span(span, "cancelled" if isinstance(exc, asyncio.CancelledError) else "error", polls=0, error=exc)
            raise
        reply = body if isinstance(body, Mapping) else None
        state = PollState(request_id, request_type, self._clock() - started, result_formats, self.spec.warn_after_s)
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
        check_codecs(result_formats, self.result_codecs)
        name = endpoint or self.spec.retrieve_endpoint
        span = self._tracer.start_span(f"future {name}", attributes={"pristine.future.endpoint": name})
        roundtrip = self._clock() - submitted_at if submitted_at is not None else 0.0
        state = PollState(request_id, request_type, roundtrip, result_formats, self.spec.warn_after_s)
        return self._start(span, state, result_type, observer, deadline_s)

    async def aclose(self) -> None:
        """Stop every future still polling and wait until their tasks have ended."""
        tasks = list(self._live)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(
        self,
        span: trace.Span,
        state: PollState,
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
            self._resolve(span, state, result_type, QueueStateFanout(span, observer), deadline_s),
            name=f"pristine future {request_id}",
        )
        self._live.add(task)
        task.add_done_callback(self._live.discard)
        # Ended from the task's outcome, not inside the coroutine: a task cancelled before its first step never
        # runs any of its code.
        task.add_done_callback(lambda done: end_task_span(span, done, polls=state.iteration))
        return FutureHandle(request_id, task, loop, submit_reply)

    async def _resolve(
        self,
        span: trace.Span,
        state: PollState,
        result_type: type[T],
        observer: QueueStateFanout,
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
        self, span: trace.Span, state: PollState, result_type: type[T], observer: QueueStateFanout
    ) -> T:
        spec = self.spec
        deadlines = effective_deadlines({}, self.deadlines)
        poll_extensions = self._poll_extensions(span, observer)
        started = state.last_progress = self._clock()
        while True:
            sent_at = self._clock()
            self._warn_if_unresolved(state, sent_at - started)
            response, result_format = None, None
            try:
                response = await self.client.send(
                    spec.retrieve_endpoint,
                    json=poll_request_body(spec, state),
                    headers=poll_request_headers(spec.poll_headers, state),
                    extensions={**poll_extensions, DEADLINES: poll_deadlines(deadlines, state, sent_at)},
                )
            except APIConnectionError as exc:  # includes APITimeoutError
                logger.debug("future %s: poll failed (%s)", state.request_id, exc)
                reading, held = PollReading(PollAnswer.NO_ANSWER, type(exc).__name__), False
            else:
                held = self._clock() - sent_at >= spec.backoff.held_poll_s
                result_format = format_of(response, state.result_formats)  # asked-for non-JSON result?
                reading = read_poll_answer(
                    response.status_code,
                    response.content,
                    spec,
                    metadata_only_welcome=state.allow_metadata_only,
                    encoded_result=result_format is not None,
                )
            state.iteration += 1
            state.last_answer = reading.last_answer
            step = next_poll(reading.outcome, state.streaks, held=held, spec=spec, random=self._random())
            if isinstance(step, PollWait):
                if reading.outcome is PollAnswer.METADATA_FIRST and reading.verdict is not None:
                    await self._hold_metadata_only(span, state, reading.verdict.size)
                await self._wait(state, deadlines, step)
                continue
            assert response is not None  # only an answer ends the polling; a lost poll is always waited on
            return self._deliver(step, reading, response, result_format, state, result_type)

    def _poll_extensions(self, span: trace.Span, observer: QueueStateFanout) -> dict[str, Any]:
        poll_extensions: dict[str, Any] = {extensions.QUEUE_OBSERVER: observer}
        if self.not_ready_polls == "events" and span.is_recording():
            poll_extensions[extensions.NOT_READY_POLLS] = NotReadyPolls(span)
        return poll_extensions

    def _warn_if_unresolved(self, state: PollState, waited_s: float) -> None:
        """A WARNING once the future is ``warn_after_s`` old, then each time its age doubles."""
        if state.warn_at is not None and waited_s >= state.warn_at:
            _warn_unresolved(state, waited_s)
            state.warn_at *= 2

    def _deliver(
        self,
        end: PollEnd | PollBody,
        reading: PollReading,
        response: httpx.Response,
        result_format: ResultFormatSpec | None,
        state: PollState,
        result_type: type[T],
    ) -> T:
        """The future's outcome, as the answer that ended the polling says: its result, or the error it ends in."""
        status, content = response.status_code, response.content
        if end is PollEnd.EXPIRED:
            raise FutureExpiredError(state.request_id, status, request_type=state.request_type)
        if isinstance(end, PollEnd):
            raise status_error(self.client.redactor, state, status, content, end.value)
        if end is PollBody.BAD_METADATA:
            raise bad_metadata_error(self.spec, state, reading.body)
        if end is PollBody.FAILED and reading.verdict is not None:
            raise request_failed_error(self.spec, state, reading.body, reading.verdict)
        if result_format is not None:
            return decode_result(state.request_id, result_format, content, result_type, self.result_codecs)
        return convert_result(state.request_id, reading.body, result_type, status)

    async def _wait(self, state: PollState, deadlines: Deadlines, step: PollWait) -> None:
        """Take the step's streaks, then wait as it says, unless the next poll would start after the no-progress
        deadline: then fail with :class:`DeadlineExceededError`."""
        now = self._clock()
        state.streaks = step.streaks
        if step.progress:
            state.last_progress = now
        no_progress = deadlines.no_progress_s
        delay = poll_wait_within_deadline(
            step.delay_s, now=now, last_progress=state.last_progress, no_progress_s=no_progress
        )
        if delay is None:
            raise self._deadline_error(state, now, no_progress or 0.0)
        if delay > 0:
            await self._sleep(delay)

    def _deadline_error(self, state: PollState, now: float, no_progress: float) -> DeadlineExceededError:
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

    async def _hold_metadata_only(self, span: trace.Span, state: PollState, size: int) -> None:
        """The first metadata-only reply: hold its bytes from the budget until the future ends, and ask for the
        full result from now on."""
        span.add_event("metadata_only", {"pristine.future.response_bytes": size})
        if self.response_budget is not None:
            await self.response_budget.acquire(size)
            state.held_bytes = size
        state.allow_metadata_only = False


def _warn_unresolved(state: PollState, waited_s: float) -> None:
    logger.warning(
        "future %s (%s) is still unresolved after %.0f s: %d polls, last answer: %s",
        state.request_id,
        state.request_type or "request",
        waited_s,
        state.iteration,
        state.last_answer,
    )
