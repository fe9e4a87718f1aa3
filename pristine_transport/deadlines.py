"""Deadlines as mechanism: where the effective :class:`~pristine_transport.policy.Deadlines` of a call come from,
the clock one logical request shares with the layers of its stack. The errors raised when one passes
(:class:`DeadlineExceededError`, :class:`AttemptDeadlineError`) are :mod:`pristine_transport.errors`'s, re-exported
here.

Precedence, most specific first: ``request.extensions[DEADLINES]`` (per call, also how a client passes its own
default), then the innermost ``with deadlines(...)`` scope, then the layer's default (a retry layer's: ``CALL_DEADLINES``).
A scope is a context variable, so it follows the call into the tasks it creates; an SDK whose background loop runs
each sync call in the caller's context keeps a scope around its sync calls too.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import heapq
import itertools
import math
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pristine_transport.errors import AttemptDeadlineError, DeadlineExceededError
from pristine_transport.policy import DEFAULT_DEADLINES, Deadlines, RetryBudget

__all__ = [
    "CLOCK",
    "AttemptTimer",
    "DEADLINES",
    "AttemptDeadlineError",
    "DeadlineExceededError",
    "OperationClock",
    "deadlines",
    "effective_deadlines",
]

DEADLINES = "pristine.deadlines"
"""``request.extensions`` key: the :class:`Deadlines` of this call (wins over scopes and defaults)."""

CLOCK = "pristine.operation_clock"
"""``request.extensions`` key set by ``RetryLayer`` on every attempt: the :class:`OperationClock` that inner layers
pause while waiting for local admission and re-arm around backpressure waits."""

_scope: contextvars.ContextVar[Deadlines | None] = contextvars.ContextVar("pristine_deadlines", default=None)


@contextmanager
def deadlines(
    *,
    attempt_s: float | None | Any = dataclasses.MISSING,
    no_progress_s: float | None | Any = dataclasses.MISSING,
    failed_attempts: int | None | Any = dataclasses.MISSING,
    budget: RetryBudget | Any = dataclasses.MISSING,
) -> Iterator[Deadlines]:
    """Within the block, calls use these deadlines (fields not given keep the enclosing scope's, else the
    defaults): ``with deadlines(no_progress_s=30): ...``."""
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("attempt_s", attempt_s),
            ("no_progress_s", no_progress_s),
            ("failed_attempts", failed_attempts),
            ("budget", budget),
        )
        if value is not dataclasses.MISSING
    }
    enclosing = _scope.get() or DEFAULT_DEADLINES
    scoped = dataclasses.replace(enclosing, **changes)
    token = _scope.set(scoped)
    try:
        yield scoped
    finally:
        _scope.reset(token)


def effective_deadlines(extensions: Mapping[str, Any], default: Deadlines = DEFAULT_DEADLINES) -> Deadlines:
    """The deadlines of a request: its extension, else the current scope, else ``default``."""
    return extensions.get(DEADLINES) or _scope.get() or default


def current_scope() -> Deadlines | None:
    """The deadlines set by the innermost ``with deadlines(...)``, if any."""
    return _scope.get()


class OperationClock:
    """The deadlines of one logical request and what it last saw, shared by the layers of its stack.

    The retry layer starts one :class:`AttemptTimer` per attempt (:meth:`start_attempt`) at
    ``min(now + attempt_s, no-progress deadline)``. Inner layers talk to it through ``request.extensions[CLOCK]``:
    the pool limiter :meth:`pause` s it while the request waits for a local permit (that wait is neither the
    server's nor the attempt's), the backpressure layer calls :meth:`waiting` before a backoff window (bounded only
    by the no-progress deadline) and :meth:`sending` before the next send (a fresh whole-attempt deadline). Times
    are on ``now``'s clock (injectable for tests); timers are converted to the loop's clock, unless ``now`` is the
    running loop's own ``time`` (``on_loop_clock``), when no conversion is needed."""

    __slots__ = (
        "attempt_s",
        "deadline",
        "in_exchange",
        "last_seen",
        "now",
        "_loop",
        "_on_loop_clock",
        "_paused_at",
        "_timer",
    )

    def __init__(
        self,
        attempt_s: float | None,
        deadline: float,
        now: Callable[[], float],
        *,
        on_loop_clock: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.attempt_s = attempt_s
        self.deadline = deadline
        """When the no-progress deadline passes, on ``now``'s clock (``math.inf`` for never)."""
        self.now = now
        self.last_seen: str | None = None
        self.in_exchange = False
        """True while an HTTP exchange is under way (the server may be running the request)."""
        self._on_loop_clock = on_loop_clock
        self._loop = loop
        """The running loop, when the caller has it at hand (saves looking it up per attempt)."""
        self._timer: AttemptTimer | None = None
        self._paused_at: float | None = None

    def start_attempt(self, now: float | None = None) -> AttemptTimer:
        """The timer of a new attempt, set to its deadline (enter it around the attempt); marks an exchange under
        way. ``now``: the clock's reading, when the caller just took it. Call inside a running loop."""
        self.in_exchange = True
        if now is None:
            now = self.now()
        attempt_s = self.attempt_s
        when = self.deadline if attempt_s is None else min(now + attempt_s, self.deadline)
        if when == math.inf:
            loop_when: float | None = None
        elif self._on_loop_clock:
            loop_when = when  # _loop_time(), inlined: once per attempt
        else:
            loop_when = self._loop_time(when, now)
        timer = self._timer = AttemptTimer(loop_when, self._loop)
        return timer

    def first_deadline(self) -> float | None:
        """Loop time at which a new attempt ends (None: never); marks an exchange under way."""
        self.in_exchange = True
        now = self.now()
        when = self.deadline if self.attempt_s is None else min(now + self.attempt_s, self.deadline)
        return self._loop_time(when, now)

    def arm(self, timer: AttemptTimer | asyncio.Timeout) -> None:
        """Follow ``timer`` (already set to :meth:`first_deadline`) instead of one made by :meth:`start_attempt`."""
        self._timer = timer  # type: ignore[assignment]  # the same expired()/reschedule() surface

    def sending(self) -> None:
        """A new HTTP exchange starts: the whole-attempt deadline counts from now."""
        self.in_exchange = True
        now = self.now()
        when = self.deadline if self.attempt_s is None else min(now + self.attempt_s, self.deadline)
        self._reschedule(when, now)

    def waiting(self) -> None:
        """A wait the server asked for: only the no-progress deadline bounds it."""
        self.in_exchange = False
        self._reschedule(self.deadline, self.now())

    def pause(self) -> None:
        """A local wait (an admission permit): no deadline runs; the no-progress one moves out by its length."""
        self.in_exchange = False
        self._paused_at = self.now()
        self._reschedule(math.inf, self._paused_at)

    def resume(self) -> None:
        if self._paused_at is None:
            return
        self.deadline += self.now() - self._paused_at
        self._paused_at = None
        self.sending()

    def passed(self) -> bool:
        return self.now() >= self.deadline

    def _loop_time(self, when: float, now: float) -> float | None:
        if when == math.inf:
            return None
        if self._on_loop_clock:
            return when
        return (self._loop or asyncio.get_running_loop()).time() + (when - now)

    def _reschedule(self, when: float, now: float) -> None:
        timer = self._timer
        if timer is None or timer.expired():
            return  # it fired: the cancellation is on its way out, nothing may replace it
        timer.reschedule(self._loop_time(when, now))


# --- attempt timers ---------------------------------------------------------------------------------------------
#
# Every attempt of every request has a deadline, and nearly every attempt ends long before it. One
# ``asyncio.timeout_at`` per attempt schedules a loop timer, cancels it, and leaves the cancelled handle in the
# loop's heap until the loop sweeps it (measured: about 7 µs of a request's 100 µs on the bench). Instead, all the
# attempt timers of a loop share one loop timer (a :class:`_Watchdog`), armed at the earliest deadline: starting
# and ending an attempt is a heap push and a state change, and the loop timer moves only when a deadline earlier
# than the armed one arrives. When it fires, every timer whose deadline has passed cancels its task, exactly as
# ``asyncio.Timeout`` does (same cancel/uncancel bookkeeping, ``TimeoutError`` out of a cancellation it caused).

_ENTERED, _EXITED, _EXPIRING, _EXPIRED = 1, 2, 3, 4
_MIN_SWEEP = 256
"""The watchdog's heap is swept of ended timers' entries once it holds this many, and then twice as many as were
left after the last sweep: amortised O(1) per attempt, memory bounded by the attempts in flight."""


class AttemptTimer:
    """``asyncio.Timeout``'s contract for one attempt (a sync context manager, entered in the attempt's task):
    ``expired()``, ``reschedule(when)`` (loop time, None for never), and the task's cancellation turned into
    ``TimeoutError`` on exit when the deadline caused it. Only on an asyncio loop (the stack's retry layer is
    asyncio-only)."""

    __slots__ = ("_cancelling", "_loop", "_state", "_task", "_watchdog", "when")

    def __init__(self, when: float | None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """``loop``: the running loop, if the caller has it (else it is looked up on entry)."""
        self.when = when
        self._loop = loop
        self._state = 0
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._watchdog: _Watchdog | None = None

    def __enter__(self) -> AttemptTimer:
        if self._state:
            raise RuntimeError("an attempt timer is entered once")
        loop = self._loop or asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("an attempt timer is used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._state = _ENTERED
        last = _last_watchdog  # _watchdog_of(), its common case inlined
        self._watchdog = last if last is not None and last._loop() is loop else _watchdog_of(loop)
        if self.when is not None:
            self._watchdog.watch(self, self.when)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        task, self._task = self._task, None  # an ended timer's heap entry must not keep the task (and its result)
        if self._state == _EXPIRING:
            self._state = _EXPIRED
            assert task is not None
            if task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc  # no newer cancellation: this one was ours
        else:
            self._state = _EXITED

    def expired(self) -> bool:
        return self._state >= _EXPIRING

    def reschedule(self, when: float | None) -> None:
        if self._state != _ENTERED:
            raise RuntimeError("only an entered, unexpired attempt timer can be rescheduled")
        self.when = when
        if when is not None:
            self._watchdog.watch(self, when)  # type: ignore[union-attr]

    def _expire(self) -> None:
        self._state = _EXPIRING
        self._task.cancel()  # type: ignore[union-attr]


class _Watchdog:
    """The one loop timer behind every :class:`AttemptTimer` of a loop.

    A heap of ``(deadline, sequence, timer)`` entries; an entry is stale once its timer ended or moved to another
    deadline (it then has a newer entry). The loop timer is armed at or before the earliest live deadline."""

    __slots__ = ("__weakref__", "_armed_at", "_handle", "_heap", "_loop", "_sequence", "_sweep_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            # The loop holds the watchdog through its timer, not the other way round.
            self._loop: Callable[[], asyncio.AbstractEventLoop | None] = weakref.ref(loop)
        except TypeError:  # a loop type without weak references: held for the life of the watchdog
            self._loop = lambda: loop
        self._heap: list[tuple[float, int, AttemptTimer]] = []
        self._sequence = itertools.count()
        self._armed_at = math.inf
        self._handle: asyncio.TimerHandle | None = None
        self._sweep_at = _MIN_SWEEP

    def watch(self, timer: AttemptTimer, when: float) -> None:
        heap = self._heap
        heapq.heappush(heap, (when, next(self._sequence), timer))
        if when < self._armed_at:
            self._arm(when)
        if len(heap) >= self._sweep_at:
            self._sweep()

    def _arm(self, when: float) -> None:
        loop = self._loop()
        if loop is None:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = when
        self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        loop = self._loop()
        fired_for, self._armed_at, self._handle = self._armed_at, math.inf, None
        # The loop runs a timer up to its clock resolution early: a deadline it was armed for counts as passed.
        limit = max(loop.time() if loop is not None else math.inf, fired_for)
        heap = self._heap
        while heap:
            when, _, timer = heap[0]
            if timer._state != _ENTERED or timer.when != when:
                heapq.heappop(heap)  # stale
            elif when <= limit:
                heapq.heappop(heap)
                timer._expire()
            else:
                self._arm(when)
                return

    def _sweep(self) -> None:
        heap = self._heap
        heap[:] = [entry for entry in heap if entry[2]._state == _ENTERED and entry[2].when == entry[0]]
        heapq.heapify(heap)
        self._sweep_at = max(_MIN_SWEEP, 2 * len(heap))


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = weakref.WeakKeyDictionary()
_strong_watchdogs: dict[asyncio.AbstractEventLoop, _Watchdog] = {}
_last_watchdog: _Watchdog | None = None
"""The watchdog used last: nearly always the one asked for next (one loop per process), found without hashing."""


def _watchdog_of(loop: asyncio.AbstractEventLoop) -> _Watchdog:
    global _last_watchdog
    last = _last_watchdog  # one read: a thread running another loop may replace it meanwhile
    if last is not None and last._loop() is loop:
        return last
    try:
        watchdog = _watchdogs.get(loop)
        if watchdog is None:
            watchdog = _watchdogs[loop] = _Watchdog(loop)
    except TypeError:  # not weakly referenceable: one watchdog per such loop, kept
        watchdog = _strong_watchdogs.get(loop)
        if watchdog is None:
            watchdog = _strong_watchdogs[loop] = _Watchdog(loop)
    _last_watchdog = watchdog
    return watchdog
