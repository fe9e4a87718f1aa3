"""RetryLayer: re-sends a request under a manifest retry policy, the way the official SDK does.

Two policy kinds (``RetryPolicySpec.kind``):

* ``standard`` (the Stainless client): at most ``max_retries`` re-sends, delay
  ``min(initial * 2**n, max) * (1 - jitter * random())`` for the n-th retry, or the server's ``retry-after-ms`` /
  ``retry-after`` when it lies in (0, ``max_retry_after_s``].
* ``sampling`` (the official sampling ``RetryHandler``): delay ``min(initial * 2**(attempt-1), max)`` with
  symmetric jitter ±``jitter``, clamped to [0, max]; usually unlimited re-sends (``max_retries`` null), bounded by a
  :class:`ProgressTracker` shared by every endpoint of the policy: when no request of the policy has made progress
  for ``progress_timeout_s``, requests fail with :class:`ProgressTimeoutError` (an ``httpx.TimeoutException``).

The request body is read once before the first attempt, so any body (an async generator too) is re-sent intact;
every attempt carries the re-send count and its read timeout in the headers the manifest's ``retry_headers`` names
(``x-stainless-retry-count`` / ``x-stainless-read-timeout`` by default), and its re-send
count in ``request.extensions[extensions.ATTEMPT]`` for the layers beneath. The first attempt is the request itself
(the stack's own: see :class:`~pristine_transport.stack.RouterTransport`); each re-send is a fresh copy with the
headers as they were before the layers beneath edited the first attempt.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import anyio
import httpx
from opentelemetry import trace

from pristine_transport import extensions
from pristine_transport.errors import failure_name
from pristine_transport.layers.response_io import discard, read_or_close

from ..manifest import RetryHeadersSpec, RetryPolicySpec
from .header_list import HeaderEntry, copy_request, live_entries

__all__ = [
    "ProgressTimeoutError",
    "ProgressTracker",
    "RetryLayer",
    "retry_after_s",
]

logger = logging.getLogger("pristine_transport.retry")


_SLACK_FRACTION = 0.01
"""A tracker pushes new deadlines to in-flight requests only when progress moved the deadline by more than this
fraction of the timeout: an attempt may be cancelled up to 1% late, and a burst of successes costs O(1) each."""


class ProgressTimeoutError(httpx.TimeoutException):
    """No request of a retry policy made progress for ``timeout_s`` seconds."""

    def __init__(self, timeout_s: float, request: httpx.Request) -> None:
        super().__init__(f"No progress made in {timeout_s:g}s. Requests appear to be stuck.", request=request)
        self.timeout_s = timeout_s


class ProgressTracker:
    """Progress state and admission shared by every endpoint stack that uses one sampling-style policy.

    Progress is any request of the policy completing successfully, or a request entering while none is in flight;
    it is not total elapsed time. ``max_in_flight`` bounds the logical requests admitted at once (waiting for
    admission does not count against the progress timeout). Use from one event loop.
    """

    def __init__(
        self,
        progress_timeout_s: float | None,
        max_in_flight: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if progress_timeout_s is not None and progress_timeout_s <= 0:
            raise ValueError(f"progress_timeout_s must be positive or None, got {progress_timeout_s}")
        if max_in_flight is not None and max_in_flight <= 0:
            raise ValueError(f"max_in_flight must be positive or None, got {max_in_flight}")
        self.progress_timeout_s = progress_timeout_s
        self._clock = clock
        self._slots = anyio.Semaphore(max_in_flight) if max_in_flight is not None else None
        self._in_flight = 0
        self._last_progress = clock()
        self._pushed_deadline = -math.inf
        """Deadline (tracker clock) last given to the watching scopes; never earlier than the true deadline."""
        self._watchers: set[anyio.CancelScope] = set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def stalled(self) -> bool:
        timeout = self.progress_timeout_s
        return timeout is not None and self._clock() > self._last_progress + timeout

    def record_progress(self) -> None:
        self._last_progress = now = self._clock()
        timeout = self.progress_timeout_s
        if timeout is None or self._pushed_deadline >= now + timeout:
            return
        self._pushed_deadline = now + timeout * (1 + _SLACK_FRACTION)
        if self._watchers:
            deadline = self._loop_deadline()
            for scope in self._watchers:
                scope.deadline = deadline

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold one admission slot (if limited) for a logical request."""
        if self._slots is not None:
            await self._slots.acquire()
        try:
            if self._in_flight == 0:
                self.record_progress()
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1
        finally:
            if self._slots is not None:
                self._slots.release()

    @contextmanager
    def deadline_scope(self) -> Iterator[anyio.CancelScope]:
        """A cancel scope whose deadline follows the tracker: it is pushed out whenever progress is made.

        ``scope.cancelled_caught`` afterwards means the progress timeout passed."""
        scope = anyio.CancelScope(deadline=self._loop_deadline())
        self._watchers.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._watchers.discard(scope)

    def _loop_deadline(self) -> float:
        timeout = self.progress_timeout_s
        if timeout is None:
            return math.inf
        deadline = max(self._pushed_deadline, self._last_progress + timeout)
        return anyio.current_time() + (deadline - self._clock())


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """What a retry hook is told before each re-send."""

    method: str
    path: str
    attempt: int
    """The re-send about to happen, from 1."""
    delay_s: float
    reason: str


RetryHook = Callable[[RetryEvent], None]

_DEFAULT_HEADERS = RetryHeadersSpec()


class _Attempts:
    """The attempts of one logical request. A per-attempt header the caller set is kept as is on every attempt."""

    __slots__ = ("_count_name", "_headers", "_read_timeout", "_request")

    def __init__(self, request: httpx.Request, count_name: bytes | None, read_timeout: HeaderEntry | None) -> None:
        self._request = request
        self._headers = list(live_entries(request.headers))  # as given, before the layers beneath edit attempt 0
        for entry in self._headers:
            if entry[1] == count_name:
                count_name = None
            elif read_timeout is not None and entry[1] == read_timeout[1]:
                read_timeout = None
        self._count_name = count_name
        self._read_timeout = read_timeout

    def attempt(self, retries: int) -> httpx.Request:
        name = self._count_name
        extra = [(name, name, b"%d" % retries)] if name is not None else []
        if self._read_timeout is not None:
            extra.append(self._read_timeout)
        if retries == 0:
            request = self._request
            live_entries(request.headers).extend(extra)
        else:
            request = copy_request(self._request, [*self._headers, *extra])
        request.extensions[extensions.ATTEMPT] = retries
        return request


class RetryLayer(httpx.AsyncBaseTransport):
    """Re-sends retryable failures of ``inner`` under ``policy``.

    Retried: ``x-should-retry: true`` (``false`` vetoes, checked first; the name is ``headers.should_retry``); statuses in ``retry_statuses``; >= 500
    with ``retry_server_errors``; ``httpx.TransportError`` (timeouts included) with ``retry_connection_errors``.
    A 2xx is never retried. Anything else is returned or raised as is; when re-sends run out, the last response
    is returned (or the last exception raised). Discarded responses are read and closed before the next attempt.

    Each retry logs at INFO on ``pristine_transport.retry`` and adds a ``retry.backoff`` event to the current
    span; the span gets ``pristine.retries`` (re-sends done) at the end.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        policy: RetryPolicySpec,
        *,
        progress: ProgressTracker | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        random: Callable[[], float] = _random.random,
        headers: RetryHeadersSpec = _DEFAULT_HEADERS,
        buffer_body: bool = True,
        on_retry: RetryHook | None = None,
    ) -> None:
        if progress is None and (policy.progress_timeout_s is not None or policy.max_in_flight is not None):
            progress = ProgressTracker(policy.progress_timeout_s, policy.max_in_flight)
        if policy.max_retries is None and (progress is None or progress.progress_timeout_s is None):
            raise ValueError("retry policy: max_retries=None (unlimited) needs a progress_timeout_s")
        self._inner = inner
        self._policy = policy
        self._progress = progress
        self._sleep = sleep
        self._random = random
        self._buffer_body = buffer_body
        self._on_retry = on_retry
        self._read_timeout_cache: tuple[object, HeaderEntry] | None = None
        self._count_name = headers.attempt.lower().encode() if headers.attempt else None
        self._read_timeout_name = headers.read_timeout.lower().encode() if headers.read_timeout else None
        self._should_retry = headers.should_retry

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            request.content  # noqa: B018 - raises while a streamed body is unread
        except httpx.RequestNotRead:
            await request.aread()
        progress = self._progress
        if progress is None:
            return await self._send_with_retries(request)
        async with progress.admit():
            with progress.deadline_scope():
                return await self._send_with_retries(request)
            # Only reachable when the scope swallowed its own deadline cancellation.
            raise ProgressTimeoutError(progress.progress_timeout_s or 0.0, request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def _send_with_retries(self, request: httpx.Request) -> httpx.Response:
        attempts = _Attempts(request, self._count_name, self._read_timeout_entry(request))
        progress = self._progress
        retries = 0
        try:
            while True:
                if progress is not None and progress.stalled():
                    # The deadline scope cancels in real time; this check also covers injected clocks.
                    raise ProgressTimeoutError(progress.progress_timeout_s or 0.0, request)
                try:
                    response = await self._inner.handle_async_request(attempts.attempt(retries))
                    if self._buffer_body and not response.is_closed:
                        # A connection that dies after the headers must count as a failed attempt, not reach the
                        # caller as a broken body (under HTTP/2 one dropped connection breaks every open stream).
                        await read_or_close(response)
                except httpx.TransportError as exc:
                    if not (self._policy.retry_connection_errors and self._has_retries_left(retries)):
                        raise
                    reason, delay = failure_name(exc), self._backoff(retries)
                else:
                    if 200 <= response.status_code < 300 and progress is None:
                        return response  # the common case, without the checks below
                    status_reason = self._retry_reason(response)
                    if status_reason is None or not self._has_retries_left(retries):
                        if progress is not None and response.is_success:
                            progress.record_progress()
                        return response
                    reason, delay = status_reason, self._delay(retries, response)
                    await discard(response)
                self._announce(request, retries + 1, delay, reason)
                await self._sleep(delay)
                retries += 1
        finally:
            trace.get_current_span().set_attribute("pristine.retries", retries)

    def _read_timeout_entry(self, request: httpx.Request) -> HeaderEntry | None:
        timeout = request.extensions.get("timeout")
        read_timeout = timeout.get("read") if type(timeout) is dict or isinstance(timeout, Mapping) else None
        name = self._read_timeout_name
        if read_timeout is None or name is None:
            return None
        # Nearly every request of an endpoint has the same timeout: encode it once (5 and 5.0 print differently).
        cached = self._read_timeout_cache
        if cached is None or cached[0] != read_timeout or type(cached[0]) is not type(read_timeout):
            entry = (name, name, str(read_timeout).encode())
            cached = self._read_timeout_cache = (read_timeout, entry)
        return cached[1]

    def _has_retries_left(self, retries: int) -> bool:
        return self._policy.max_retries is None or retries < self._policy.max_retries

    def _retry_reason(self, response: httpx.Response) -> str | None:
        if response.is_success:
            return None
        verdict = response.headers.get(self._should_retry, "").strip().lower() if self._should_retry else ""
        status = response.status_code
        if verdict == "true":
            return f"status {status} ({self._should_retry})"
        if verdict == "false":
            return None
        if status in self._policy.retry_statuses or (self._policy.retry_server_errors and status >= 500):
            return f"status {status}"
        return None

    def _delay(self, retries: int, response: httpx.Response) -> float:
        if self._policy.respect_retry_after:
            server_delay = retry_after_s(response.headers)
            if server_delay is not None and 0 < server_delay <= self._policy.max_retry_after_s:
                return server_delay
        return self._backoff(retries)

    def _backoff(self, retries: int) -> float:
        policy = self._policy
        base = min(policy.initial_delay_s * 2.0 ** min(retries, 1000), policy.max_delay_s)
        if policy.kind == "standard":
            return base * (1 - policy.jitter * self._random())
        jittered = base + base * policy.jitter * (2 * self._random() - 1)
        return min(max(jittered, 0.0), policy.max_delay_s)

    def _announce(self, request: httpx.Request, attempt: int, delay: float, reason: str) -> None:
        logger.info(
            "retrying %s %s: re-send %d in %.3fs after %s", request.method, request.url.path, attempt, delay, reason
        )
        trace.get_current_span().add_event(
            "retry.backoff", {"retry.attempt": attempt, "retry.delay_s": delay, "retry.reason": reason}
        )
        if self._on_retry is not None:
            try:
                self._on_retry(RetryEvent(request.method, request.url.path, attempt, delay, reason))
            except Exception:  # a broken hook must not break the request
                logger.exception("retry hook failed")


def retry_after_s(headers: httpx.Headers, *, now: Callable[[], float] = time.time) -> float | None:
    """The server's requested delay: ``retry-after-ms`` (ms), else ``retry-after`` (seconds or an HTTP-date,
    whole seconds from ``now``, as the Stainless client). None when absent or unparseable."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return float(milliseconds) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    date = email.utils.parsedate_tz(value)
    if date is None:
        return None
    return float(int(email.utils.mktime_tz(date) - now()))
