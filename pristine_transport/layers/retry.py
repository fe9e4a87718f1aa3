"""RetryLayer: re-sends a request under a manifest retry policy, the way the official SDK does.

Two policy kinds (``RetryPolicySpec.kind``):

* ``standard`` (the Stainless client): at most ``max_retries`` re-sends, delay
  ``min(initial * 2**n, max) * (1 - jitter * random())`` for the n-th retry, or the server's ``retry-after-ms`` /
  ``retry-after`` when it lies in (0, ``max_retry_after_s``].
* ``progress`` (``sampling`` before; the official sampling ``RetryHandler``): delay ``min(initial * 2**(attempt-1), max)`` with
  symmetric jitter ±``jitter``, clamped to [0, max]; usually unlimited re-sends (``max_retries`` null), bounded by a
  :class:`ProgressTracker` shared by every endpoint of the policy: when no request of the policy has made progress
  for ``progress_timeout_s``, requests fail with :class:`ProgressTimeoutError` (an ``httpx.TimeoutException``).

The request body is read once before the first attempt, so any body (an async generator too) is re-sent intact;
every attempt carries the re-send count and its read timeout in the headers the manifest's ``retry_headers`` names
(``x-stainless-retry-count`` / ``x-stainless-read-timeout`` by default), and its re-send
count in ``request.extensions[extensions.ATTEMPT]`` for the layers beneath. The first attempt is the request itself
(the stack's own: see :class:`~pristine_transport.stack.RouterTransport`); each re-send is a fresh copy with the
headers as they were before the layers beneath edited the first attempt.

Deadlines (:mod:`pristine_transport.deadlines`, table in docs/deadlines.md): each attempt, body included, ends at
its whole-attempt deadline (the request's timeout unless set), a failure retried like any timeout; the logical
request ends with :class:`~pristine_transport.deadlines.DeadlineExceededError` once it has made no progress for
``no_progress_s`` (backpressure waits included, local admission waits not). Within that, a ``standard`` policy whose
``max_retries`` are spent starts further rounds after ``min(2**n, 30)`` s (the official 300 s budget), an empty-body
400 is re-sent while the layer's budget of 16 tokens lasts, and a request of an unlimited policy that fails
``failed_attempts`` times in a row while other requests of the policy succeed is given up. Every verdict comes from
:func:`pristine_transport.policy.decide_retry`.

Retry rules (the policy's ``rules``, and a request's own under :data:`~pristine_transport.extensions.RETRY_RULES`)
come before all of that: an answer a rule matches (:func:`~pristine_transport.policy.matching_rule`) is waited out
as :func:`~pristine_transport.policy.decide_rule` says, warned about on the rule's terms; its wait is progress (the
no-progress deadline starts afresh), no failure, and not counted against ``max_retries``; when the rule gives up,
the answer is final. Rule episodes live in a :class:`RuleEpisodes`, the layer's own unless one is shared.

When it gives up on a failure, the layer leaves :func:`~pristine_transport.policy.write_outcome` over every attempt
(ran / did not run / may have run) under ``errors.WRITE_OUTCOME`` in the request's extensions and in the final
response's, or as ``write_outcome`` on the failure it raises, so the error built from them says what happened.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Literal

import anyio
import httpx
from opentelemetry import trace

from pristine_transport import extensions
from pristine_transport.deadlines import (
    CLOCK,
    AttemptDeadlineError,
    DeadlineExceededError,
    OperationClock,
    effective_deadlines,
)
from pristine_transport.errors import WRITE_OUTCOME, ProgressTimeoutError, body_excerpt, failure_name
from pristine_transport.layers.response_io import discard, read_or_close
from pristine_transport.policy import (
    CALL_DEADLINES,
    Attempt,
    Deadlines,
    GiveUp,
    RetryState,
    RuleEpisode,
    decide_retry,
    decide_rule,
    is_bare_400,
    matching_rule,
    may_have_run,
    write_outcome,
)
from pristine_transport.retry_quota import process_retry_quota

from ..manifest import RetryHeadersSpec, RetryPolicySpec, RetryRuleSpec
from .header_list import add_absent, copy_headers, copy_request

__all__ = [
    "ProgressTimeoutError",
    "ProgressTracker",
    "RetryLayer",
    "RuleEpisodes",
    "retry_after_s",
]


logger = logging.getLogger("pristine_transport.retry")


_SLACK_FRACTION = 0.01
"""A tracker pushes new deadlines to in-flight requests only when progress moved the deadline by more than this
fraction of the timeout: an attempt may be cancelled up to 1% late, and a burst of successes costs O(1) each."""


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
        self.successes = 0
        """Requests of the policy that succeeded so far (a request failing while this grows is a "poison" one)."""

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def stalled(self) -> bool:
        timeout = self.progress_timeout_s
        return timeout is not None and self._clock() > self._last_progress + timeout

    def record_success(self) -> None:
        self.successes += 1
        self.record_progress()

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

    def __init__(self, request: httpx.Request, count_name: str | None, read_timeout: tuple[str, bytes] | None) -> None:
        self._request = request
        self._headers = copy_headers(request.headers)  # as given, before the layers beneath edit
        self._count_name = count_name
        self._read_timeout = read_timeout

    def attempt(self, retries: int) -> httpx.Request:
        if retries == 0:
            request = self._request
        else:
            request = copy_request(self._request, copy_headers(self._headers))
        name = self._count_name
        added = [(name, b"%d" % retries)] if name is not None else []
        if self._read_timeout is not None:
            added.append(self._read_timeout)
        if added:  # every attempt starts from the caller's headers: one the caller set is kept
            add_absent(request.headers, added)
        request.extensions[extensions.ATTEMPT] = retries
        return request


class RetryLayer(httpx.AsyncBaseTransport):
    """Re-sends retryable failures of ``inner`` under ``policy``.

    Retried: ``x-should-retry: true`` (``false`` vetoes, checked first; the name is ``headers.should_retry``); statuses in ``retry_statuses``; >= 500
    with ``retry_server_errors``; ``httpx.TransportError`` (timeouts included) with ``retry_connection_errors``.
    A 2xx is never retried. Anything else is returned or raised as is; when re-sends run out, the last response
    is returned (or the last exception raised). Discarded responses are read and closed before the next attempt.

    Each retry logs at INFO on ``pristine_transport.retry`` and adds a ``retry.backoff`` event to the current
    span; the span gets ``pristine.retries`` (re-sends done, when there were any) at the end.

    The policy's ``rules`` (and the request's :data:`~pristine_transport.extensions.RETRY_RULES`) come first: an
    answer one of them matches is waited out as :func:`~pristine_transport.policy.decide_rule` says, warned about
    on the rule's terms, and is not counted as a failure; their episodes live in ``rule_episodes`` (the layer's own
    unless shared).
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
        deadlines: Deadlines = CALL_DEADLINES,
        clock: Callable[[], float] | None = None,
        rule_episodes: RuleEpisodes | None = None,
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
        self._read_timeout_cache: tuple[object, tuple[str, bytes]] | None = None
        self._count_name = headers.attempt.lower() if headers.attempt else None
        self._read_timeout_name = headers.read_timeout.lower() if headers.read_timeout else None
        self._should_retry = headers.should_retry
        self._deadlines = deadlines
        self._clock = clock
        self._bare_400 = _Tokens(deadlines.budget.bare_400_retries)
        self._rule_episodes = rule_episodes if rule_episodes is not None else RuleEpisodes()

    def handle_async_request(self, request: httpx.Request) -> Awaitable[httpx.Response]:  # type: ignore[override]
        # Not a coroutine function: a request whose body is in memory and whose policy has no progress tracker (the
        # common case) goes straight to _send_with_retries's coroutine, one frame less (httpx awaits what this
        # returns).
        try:
            request.content  # noqa: B018 - raises while a streamed body is unread
        except httpx.RequestNotRead:
            return self._read_then_send(request)
        if self._progress is None:
            return self._send_with_retries(request)
        return self._send_admitted(request)

    async def _read_then_send(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        if self._progress is None:
            return await self._send_with_retries(request)
        return await self._send_admitted(request)

    async def _send_admitted(self, request: httpx.Request) -> httpx.Response:
        progress = self._progress
        assert progress is not None
        async with progress.admit():
            with progress.deadline_scope():
                return await self._send_with_retries(request)
            # Only reachable when the scope swallowed its own deadline cancellation.
            raise ProgressTimeoutError(progress.progress_timeout_s or 0.0, request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def _send_with_retries(self, request: httpx.Request) -> httpx.Response:
        read_timeout, read_timeout_entry = self._read_timeout_of(request)
        attempts = _Attempts(request, self._count_name, read_timeout_entry)
        deadlines = effective_deadlines(request.extensions, self._deadlines)
        quota = process_retry_quota()  # opt-in: the process's share of re-sends, counted by every client
        if quota is not None:
            quota.record_request()
        progress = self._progress
        loop = asyncio.get_running_loop()
        now = self._clock or loop.time
        started = now()
        no_progress = deadlines.no_progress_s
        clock = OperationClock(
            deadlines.attempt_s if deadlines.attempt_s is not None else read_timeout,
            math.inf if no_progress is None else started + no_progress,
            now,
            on_loop_clock=self._clock is None,
            loop=loop,
        )
        state: _Operation | None = None  # made on the first failure: the common success needs none
        retries = 0
        try:
            while True:
                if progress is not None and progress.stalled():
                    # The deadline scope cancels in real time; this check also covers injected clocks.
                    raise ProgressTimeoutError(progress.progress_timeout_s or 0.0, request)
                sent = attempts.attempt(retries)
                sent.extensions[CLOCK] = clock
                attempt: Attempt
                try:
                    # One attempt timer per attempt, on the loop's shared watchdog (deadlines.AttemptTimer).
                    with clock.start_attempt(started if retries == 0 else None) as timer:
                        response = await self._inner.handle_async_request(sent)
                        if self._buffer_body and not response.is_closed:
                            # A connection that dies after the headers must count as a failed attempt, not reach
                            # the caller as a broken body (under HTTP/2 one dropped connection breaks every stream).
                            await read_or_close(response)
                except httpx.TransportError as exc:
                    if timer.expired() and clock.passed():  # an inner layer turned our cancellation into this
                        state = state or _Operation(0)
                        state.may_have_run = state.may_have_run or clock.in_exchange
                        raise self._deadline_error(request, state, clock, started, "no_progress") from None
                    failure: httpx.TransportError = exc
                    attempt = Attempt(failure=failure_name(exc))
                except TimeoutError:
                    if not timer.expired():
                        raise  # not ours
                    state = state or _Operation(progress.successes if progress is not None else 0)
                    state.may_have_run = state.may_have_run or clock.in_exchange
                    if clock.passed():
                        raise self._deadline_error(request, state, clock, started, "no_progress") from None
                    failure = AttemptDeadlineError(
                        f"the attempt outlived its whole-attempt deadline of {clock.attempt_s or 0:g} s", request=sent
                    )
                    attempt = Attempt(failure="AttemptDeadline")
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        tokens = self._bare_400
                        if tokens.tokens < tokens.limit:  # give_back(), inlined on the common path
                            tokens.tokens += 1
                        if progress is not None:
                            progress.record_success()
                        return response
                    attempt = self._attempt_of(response)
                    failure = None  # type: ignore[assignment]
                if state is None:
                    state = _Operation(progress.successes if progress is not None else 0)
                policy_rules = self._policy.rules or request.extensions.get(extensions.RETRY_RULES)
                if failure is None and policy_rules:
                    ruled = self._rule_wait(request, response, attempt, state, clock, policy_rules, retries + 1)
                    if ruled is not None:
                        await discard(response)
                        await self._sleep(ruled)
                        # A live server asked for the wait: it counts as progress, not against any deadline.
                        if no_progress is not None:
                            clock.deadline = max(clock.deadline, now() + no_progress)
                        if progress is not None:
                            progress.record_progress()
                        retries += 1
                        continue
                    if state.rule_final:
                        request.extensions[WRITE_OUTCOME] = response.extensions[WRITE_OUTCOME] = write_outcome(
                            state.attempts
                        )
                        return response
                state.saw(attempt, clock)
                verdict = decide_retry(
                    self._policy,
                    deadlines,
                    state.view(retries, clock, progress, self._bare_400.tokens),
                    attempt,
                    self._random(),
                )
                if quota is not None and not isinstance(verdict, GiveUp) and not quota.try_retry():
                    verdict = GiveUp(None)  # the process's retry quota is spent: the answer at hand is final
                if isinstance(verdict, GiveUp):
                    if verdict.deadline is not None:
                        if failure is None:
                            await discard(response)
                        raise self._deadline_error(request, state, clock, started, verdict.deadline, verdict.reason)
                    # What happened to the write, over every attempt: the error built from this says it.
                    request.extensions[WRITE_OUTCOME] = outcome = write_outcome(state.attempts)
                    if failure is not None:
                        failure.write_outcome = outcome  # type: ignore[attr-defined]  # read by errors
                        raise failure
                    response.extensions[WRITE_OUTCOME] = outcome
                    return response
                if failure is None:
                    await discard(response)
                if verdict.takes_bare_400_token:
                    self._bare_400.take()
                state.next(verdict.new_round)
                if retries == 0 and isinstance(failure, httpx.ConnectError):
                    _warn_cannot_connect(request, attempt.failure, deadlines.no_progress_s)
                self._announce(request, retries + 1, verdict.delay_s, verdict.reason)
                await self._sleep(verdict.delay_s)
                retries += 1
        finally:
            if retries:  # nothing to record on the common first-time success
                trace.get_current_span().set_attribute("pristine.retries", retries)
                telemetry = request.extensions.get(extensions.TELEMETRY)
                if telemetry is not None:
                    telemetry.retries = retries

    def _attempt_of(self, response: httpx.Response) -> Attempt:
        verdict = response.headers.get(self._should_retry) if self._should_retry else None
        status = response.status_code
        return Attempt(
            status=status,
            should_retry=verdict.strip().lower() if verdict else None,
            bare=status == 400 and is_bare_400(status, response.content if response.is_closed else b"x"),
            retry_after_s=retry_after_s(response.headers) if self._policy.respect_retry_after else None,
        )

    def _rule_wait(
        self,
        request: httpx.Request,
        response: httpx.Response,
        attempt: Attempt,
        state: _Operation,
        clock: OperationClock,
        policy_rules: Mapping[str, RetryRuleSpec],
        resend: int,
    ) -> float | None:
        """The wait a retry rule asks for this answer, announced; None when no rule matches, or when the matching
        rule gives up (then ``state.rule_final`` is set: the answer is final)."""
        rules = policy_rules
        extra = request.extensions.get(extensions.RETRY_RULES)
        if extra and extra is not policy_rules:
            rules = {**policy_rules, **extra}
        matched = matching_rule(rules, attempt.status or 0, response.content if response.is_closed else None)
        if matched is None:
            return None
        name, rule = matched
        state.attempts.append(attempt)  # for the write's outcome; not a failure
        clock.last_seen = f"HTTP {attempt.status}"
        matches = state.rule_matches[name] = state.rule_matches.get(name, 0) + 1
        now = clock.now()
        episode = self._rule_episodes.get(name)
        verdict = decide_rule(
            rule, self._policy, episode, now=now, matches=matches, retry_after_s=attempt.retry_after_s,
            random=self._random(),
        )
        self._rule_episodes.set(name, verdict.episode)
        where = f"{request.method} {request.url.path}"
        if verdict.wait_s is None:
            state.rule_final = True
            if rule.log is not None:
                began = verdict.episode.first_at
                lasted = f" for {now - began:.0f} s" if verdict.gave_up == "duration" and began is not None else ""
                logger.error(
                    "%s: %s still answered HTTP %d after %d request(s)%s, more than the rule %r allows; giving up: %s",
                    rule.log, where, attempt.status, matches, lasted, name, _answer_text(response),
                )
            return None
        if verdict.warn:
            of = f" of {rule.max_attempts}" if rule.max_attempts is not None else ""
            logger.warning(
                "%s: %s answered HTTP %d; sending it again in %.1f s (request %d%s): %s",
                rule.log, where, attempt.status, verdict.wait_s, matches, of, _answer_text(response),
            )
        self._announce(request, resend, verdict.wait_s, f"status {attempt.status} (rule {name})", hook=False)
        return verdict.wait_s

    def _deadline_error(
        self,
        request: httpx.Request,
        state: _Operation,
        clock: OperationClock,
        started: float,
        kind: Literal["no_progress", "failed_attempts"],
        detail: str | None = None,
    ) -> DeadlineExceededError:
        return DeadlineExceededError(
            request,
            waited_on=f"{request.method} {request.url.path}",
            waited_s=clock.now() - started,
            deadline=kind,
            last_seen=clock.last_seen or "no answer",
            may_have_run=state.may_have_run,
            detail=detail,
        )

    def _read_timeout_of(self, request: httpx.Request) -> tuple[float | None, tuple[str, bytes] | None]:
        """The request's read timeout (the whole-attempt deadline unless one is set) and its header (name, value)."""
        timeout = request.extensions.get("timeout")
        read_timeout = timeout.get("read") if type(timeout) is dict or isinstance(timeout, Mapping) else None
        if read_timeout is None:
            return None, None
        name = self._read_timeout_name
        if name is None:
            return float(read_timeout), None
        # Nearly every request of an endpoint has the same timeout: encode it once (5 and 5.0 print differently).
        cached = self._read_timeout_cache
        if cached is None or cached[0] != read_timeout or type(cached[0]) is not type(read_timeout):
            entry = (name, str(read_timeout).encode())
            cached = self._read_timeout_cache = (read_timeout, entry)
        return float(read_timeout), cached[1]  # type: ignore[arg-type]

    def _announce(self, request: httpx.Request, attempt: int, delay: float, reason: str, *, hook: bool = True) -> None:
        """Log and trace a re-send; ``hook``: tell ``on_retry`` too (a rule's wait is not a failure's retry)."""
        logger.info(
            "retrying %s %s: re-send %d in %.3fs after %s", request.method, request.url.path, attempt, delay, reason
        )
        trace.get_current_span().add_event(
            "retry.backoff", {"retry.attempt": attempt, "retry.delay_s": delay, "retry.reason": reason}
        )
        if hook and self._on_retry is not None:
            try:
                self._on_retry(RetryEvent(request.method, request.url.path, attempt, delay, reason))
            except Exception:  # a broken hook must not break the request
                logger.exception("retry hook failed")


_CONNECT_WARNING_INTERVAL_S = 10.0
"""At most one connection warning per origin this often: during an outage every poll of every future is a logical
request of its own, and one line says it all."""
_last_connect_warning: dict[str, float] = {}


def _warn_cannot_connect(request: httpx.Request, failure: str | None, no_progress_s: float | None) -> None:
    """The first failed connection of a logical request, at WARNING: a server that is down or a wrong base URL shows
    at once instead of after the whole retry budget (later re-sends stay at INFO)."""
    url = request.url
    origin = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"
    now = time.monotonic()
    if now - _last_connect_warning.get(origin, -math.inf) < _CONNECT_WARNING_INTERVAL_S:
        return
    _last_connect_warning[origin] = now
    budget = f"for up to {no_progress_s:g} s" if no_progress_s is not None else "without a time limit"
    logger.warning(
        "cannot connect to %s (%s) for %s %s; is the server running at %s? retrying %s",
        url.netloc.decode("ascii", "replace"), failure or "connection failed", request.method, url.path, origin, budget,
    )


class RuleEpisodes:
    """The current episode of each retry rule, by name (:class:`~pristine_transport.policy.RuleEpisode`): when its
    matching answers began and when it last warned. Every retry layer given the same object shares them, so one
    outage is one episode however many endpoints see it; a layer makes its own when given none. Use from one
    event loop (or several, for plain reads and writes of one dict)."""

    __slots__ = ("_episodes",)

    def __init__(self) -> None:
        self._episodes: dict[str, RuleEpisode] = {}

    def get(self, rule: str) -> RuleEpisode:
        return self._episodes.get(rule, _NO_EPISODE)

    def set(self, rule: str, episode: RuleEpisode) -> None:
        self._episodes[rule] = episode


_NO_EPISODE = RuleEpisode()


def _answer_text(response: httpx.Response) -> str:
    """What an answer said, for a log line: its body's start (secrets already masked by the boundary)."""
    if not response.is_closed:
        return "(body not read)"
    return body_excerpt(response.text) if response.content else "(empty body)"


class _Tokens:
    """The empty-body-400 budget of one layer: one token per such re-send, one given back per success."""

    __slots__ = ("limit", "tokens")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tokens = limit

    def take(self) -> None:
        self.tokens -= 1

    def give_back(self) -> None:
        if self.tokens < self.limit:
            self.tokens += 1


class _Operation:
    """Counters of one logical request between decisions, and its failed attempts (for the write's outcome)."""

    __slots__ = (
        "attempts",
        "may_have_run",
        "failures",
        "round_retries",
        "rounds",
        "rule_final",
        "rule_matches",
        "successes_at_first_failure",
    )

    def __init__(self, successes: int) -> None:
        self.attempts: list[Attempt] = []
        self.may_have_run = False
        self.failures = 0
        self.round_retries = 0
        self.rounds = 0
        self.successes_at_first_failure = successes
        self.rule_matches: dict[str, int] = {}
        """Answers of this request each retry rule matched."""
        self.rule_final = False
        """A retry rule gave up on the last answer: it is final."""

    def saw(self, attempt: Attempt, clock: OperationClock) -> None:
        self.failures += 1
        self.attempts.append(attempt)
        self.may_have_run = self.may_have_run or may_have_run(attempt)
        clock.last_seen = f"HTTP {attempt.status}" if attempt.status is not None else attempt.failure

    def view(self, retries: int, clock: OperationClock, progress: ProgressTracker | None, tokens: int) -> RetryState:
        return RetryState(
            retries=retries,
            round_retries=self.round_retries,
            rounds=self.rounds,
            failures_in_a_row=self.failures,
            others_succeeded=progress is not None and progress.successes > self.successes_at_first_failure,
            remaining_s=None if math.isinf(clock.deadline) else clock.deadline - clock.now(),
            bare_400_tokens=tokens,
        )

    def next(self, new_round: bool) -> None:
        if new_round:
            self.rounds += 1
            self.round_retries = 0
        self.round_retries += 1


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
