"""One batched completion poller per sampling session (the server's ``sample_use_retrieve_futures``; docs/wire.md
§2, "Batched retrieval").

Without it, every sample in flight holds its own ``retrieve_future`` long poll. With it, a :class:`SessionPoller`
long-polls ``retrieve_futures`` for all the samples of its target (a sampling session, or one clone of it) at once;
a sample waits for its own request id in the answers (:meth:`SessionPoller.wait_for`) and only then fetches its
payload with one ``retrieve_future``. The poller:

- polls through its own manifest endpoint and pool (``retrieve_futures``: one attempt per poll, a 402 waited out
  by the manifest's billing rule as officially), each poll with its own deadline: the endpoint's ``timeout_s`` for
  a long poll, :data:`ACK_POLL_TIMEOUT_S` for a poll that only acknowledges;
- sends the previous answer's ``cursor`` (what it has seen) and the ids whose results were fetched
  (:meth:`SessionPoller.mark_retrieved`), then idles while nothing waits and nothing is left to acknowledge;
- delivers each completion once: to its waiter, or kept until the waiter comes (the answer may arrive before the
  sample's own task reads its submit reply); a completion seen again is ignored;
- sends a poll again after a transient failure (:func:`poll_failure_verdict`), and after too long without an
  answer (the client's no-progress deadline) or a failure that will not pass, fails for good: every sample waiting
  gets its own typed error (:class:`SessionPollError`, or a ``DeadlineExceededError``), and the sampling client
  starts a new poller for later samples;
- stops when its client closes (:meth:`SessionPoller.aclose`, or when its HTTP client is found closed).

Lives on one event loop; every method is called from it.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import functools
import logging
import time
from collections.abc import Awaitable, Callable

import httpx

from pristine_transport.client import ManifestClient
from pristine_transport.deadlines import DeadlineExceededError
from pristine_transport.errors import APIConnectionError, APIStatusError, FutureRetrieveError

from .sdk_method import detached
from .types import (
    FutureCompletion,
    FuturesRetrieveRequest,
    FuturesRetrieveResponse,
    SamplingSessionFuturesTarget,
    codec,
)

__all__ = [
    "ACK_POLL_TIMEOUT_S",
    "ENDPOINT",
    "PollFailure",
    "SessionPollError",
    "SessionPoller",
    "poll_failure_verdict",
]

logger = logging.getLogger("tinkex.sampling")

ENDPOINT = "retrieve_futures"
"""The manifest endpoint polled (its pool is its own: the per-sample polls never wait behind it, nor it behind them)."""
ACK_POLL_TIMEOUT_S = 5.0
"""A poll that only acknowledges asks the server to answer at once (``timeout: 0``), so it gets a short deadline."""
RETRY_DELAY_S = 1.0
"""Wait before polling again after a transient failure (the official poller's)."""
MAX_BAD_REQUESTS = 3
"""400s in a row polled through (a proxy may inject one) before the poller gives up (the official 3)."""
_REMEMBERED_DELIVERIES = 65_536
"""Request ids delivered recently, so a completion the server repeats is not delivered twice."""


class SessionPollError(FutureRetrieveError):
    """Polling the sampling session's completions failed for good; each sample that waited gets one naming its
    request id (the server accepted the sample: fetch it with that id, do not submit it again)."""


class PollFailure(enum.Enum):
    RETRY = "retry"
    """Transient (a connection error, a timeout, 408, 409, 429, 5xx): poll again after :data:`RETRY_DELAY_S`."""
    BAD_REQUEST = "bad_request"
    """400: poll again, at most :data:`MAX_BAD_REQUESTS` times in a row."""
    FATAL = "fatal"
    """Anything else (401, 403, 404 from a server without the endpoint, a 402 past the billing pause, a malformed
    answer): give up."""


def poll_failure_verdict(error: BaseException) -> PollFailure:
    """What a failed ``retrieve_futures`` poll means for the poller (the official poller's rules)."""
    if isinstance(error, APIConnectionError):  # timeouts included
        return PollFailure.RETRY
    if isinstance(error, APIStatusError):
        status = error.status_code
        if status in (408, 409, 429) or status >= 500:
            return PollFailure.RETRY
        if status == 400:
            return PollFailure.BAD_REQUEST
    return PollFailure.FATAL


class SessionPoller:
    """The completions of one target, polled in one loop for every sample waiting on them.

    ``no_progress_s`` bounds the time without any answer before the waiting samples fail (None: no bound).
    ``clock``/``sleep`` are for tests.
    """

    def __init__(
        self,
        http: ManifestClient,
        target: SamplingSessionFuturesTarget,
        *,
        no_progress_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.http = http
        self.target = target
        self._no_progress_s = no_progress_s
        self._clock = clock
        self._sleep = sleep
        self._cursor = 0
        self._acked_cursor = 0
        self._waiters: dict[str, asyncio.Future[FutureCompletion]] = {}
        self._unclaimed: dict[str, FutureCompletion] = {}
        self._abandoned: set[str] = set()
        self._retrieved: set[str] = set()
        self._delivered: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._has_work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure: Callable[[str], BaseException] | None = None
        self._closed = False
        self.polls = 0
        """``retrieve_futures`` requests sent (answered or not)."""

    @property
    def usable(self) -> bool:
        """Whether new samples may wait on this poller (not failed, not closed, its HTTP client open)."""
        return self._failure is None and not self._closed and not self.http.is_closed

    async def wait_for(self, request_id: str) -> FutureCompletion:
        """The completion of ``request_id`` (submitted to this poller's target), once the server reports it.

        Raises the poller's failure (a :class:`SessionPollError` or ``DeadlineExceededError`` naming ``request_id``)
        if it fails for good first. Cancelling the wait abandons the request here: its completion, when it comes, is
        acknowledged and dropped."""
        completion = self._unclaimed.pop(request_id, None)
        if completion is not None:
            return completion
        if self._failure is not None:
            raise self._failure(request_id)
        if self._closed:
            raise _closed_error(request_id)
        waiter: asyncio.Future[FutureCompletion] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        self._start()
        self._has_work.set()
        try:
            return await waiter
        except asyncio.CancelledError:
            if not (waiter.done() and not waiter.cancelled()):
                self._abandoned.add(request_id)
            raise
        finally:
            if self._waiters.get(request_id) is waiter:
                del self._waiters[request_id]

    def mark_retrieved(self, request_id: str) -> None:
        """``request_id``'s result was fetched: the next poll tells the server, which may then drop it."""
        self._retrieved.add(request_id)
        self._has_work.set()

    def close(self) -> None:
        """Stop polling; samples still waiting fail with a :class:`SessionPollError` saying the client closed."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        self._fail(_closed_error)

    async def aclose(self) -> None:
        """:meth:`close`, then wait until the polling task has ended."""
        task = self._task
        self.close()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    # the loop ---------------------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._task is None or self._task.done():
            # Detached from the first sample's call: the poller serves every sample, so its polls name no method
            # (official 0.38 sends no x-sdk-method on them).
            self._task = detached(
                asyncio.get_running_loop().create_task,
                self._poll_loop(),
                name=f"tinkex: retrieve_futures {self.target.sampling_session_id}",
            )

    def _idle(self) -> bool:
        return not self._waiters and not self._retrieved and self._cursor <= self._acked_cursor

    async def _poll_loop(self) -> None:
        last_answer_at = self._clock()
        last_seen = "no answer yet"
        bad_requests = 0
        while not self._closed:
            if self._idle():
                self._has_work.clear()
                await self._has_work.wait()
                last_answer_at = self._clock()  # idle time is not time without progress
                continue
            acknowledging = set(self._retrieved)
            ack_only = not self._waiters
            request = FuturesRetrieveRequest(
                target=self.target,
                prev_cursor=self._cursor,
                timeout=0 if ack_only else None,
                retrieved_request_ids=sorted(acknowledging),
            )
            self.polls += 1
            try:
                answer = await self.http.call(ENDPOINT, json=request, timeout=ACK_POLL_TIMEOUT_S if ack_only else None)
                response = codec.convert(answer, FuturesRetrieveResponse)  # tinkex's codec reads its tagged unions
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.http.is_closed:  # the client closed under this poll
                    self._closed = True
                    self._fail(_closed_error)
                    return
                last_seen = _describe(exc)
                verdict = poll_failure_verdict(exc)
                if verdict is PollFailure.BAD_REQUEST:
                    bad_requests += 1
                    if bad_requests > MAX_BAD_REQUESTS:
                        verdict = PollFailure.FATAL
                if verdict is PollFailure.FATAL:
                    logger.error("retrieve_futures polling of %s failed: %s", self._target_name(), last_seen)
                    self._fail(functools.partial(self._poll_error, cause=exc))
                    return
                waited = self._clock() - last_answer_at
                if self._no_progress_s is not None and waited >= self._no_progress_s:
                    self._fail(functools.partial(self._deadline_error, waited_s=waited, last_seen=last_seen))
                    return
                logger.debug("retrieve_futures poll of %s failed (%s); polling again", self._target_name(), last_seen)
                await self._sleep(RETRY_DELAY_S)
                continue
            last_answer_at = self._clock()
            bad_requests = 0
            self._retrieved -= acknowledging
            self._acked_cursor = max(self._acked_cursor, request.prev_cursor)
            self._cursor = response.cursor
            for completion in response.completions:
                self._deliver(completion)

    def _deliver(self, completion: FutureCompletion) -> None:
        request_id = completion.request_id
        if request_id in self._delivered:
            return  # repeated by the server: its sample already has it
        if request_id in self._abandoned:
            self._abandoned.discard(request_id)
            self._retrieved.add(request_id)  # nobody will fetch it: the server may drop it
            return
        self._delivered[request_id] = None
        if len(self._delivered) > _REMEMBERED_DELIVERIES:
            self._delivered.popitem(last=False)
        waiter = self._waiters.pop(request_id, None)
        if waiter is None:
            self._unclaimed[request_id] = completion
        elif not waiter.done():
            waiter.set_result(completion)

    def _fail(self, error_for: Callable[[str], BaseException]) -> None:
        """Fail for good: every waiting sample gets its own error, and so does every later one."""
        if self._failure is None:
            self._failure = error_for
        waiters, self._waiters = self._waiters, {}
        for request_id, waiter in waiters.items():
            if not waiter.done():
                waiter.set_exception(self._failure(request_id))

    # errors -----------------------------------------------------------------------------------------------
    def _target_name(self) -> str:
        return f"sampling session {self.target.sampling_session_id} (clone {self.target.cloned_sampler_id})"

    def _poll_error(self, request_id: str, cause: BaseException) -> SessionPollError:
        error = SessionPollError(
            f"sample {request_id}: polling the completions of {self._target_name()} failed: {_describe(cause)}",
            request_id=request_id,
            status_code=getattr(cause, "status_code", None),
        )
        error.__cause__ = cause
        return error

    def _deadline_error(self, request_id: str, waited_s: float, last_seen: str) -> DeadlineExceededError:
        return DeadlineExceededError(
            httpx.Request("POST", self.http.url_for(ENDPOINT)),
            waited_on=f"sample {request_id} (polled with {self._target_name()})",
            waited_s=waited_s,
            deadline="no_progress",
            last_seen=last_seen,
            may_have_run=True,
            request_id=request_id,
        )


def _closed_error(request_id: str) -> SessionPollError:
    return SessionPollError(
        f"sample {request_id}: the client was closed while the sample waited for its result", request_id=request_id
    )


def _describe(error: BaseException) -> str:
    status = getattr(error, "status_code", None)
    return f"HTTP {status}" if status is not None else f"{type(error).__name__}: {error}"

