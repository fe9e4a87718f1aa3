"""Deadlines as mechanism: where the effective :class:`~pristine_transport.policy.Deadlines` of a call come from,
the clock one logical request shares with the layers of its stack, and the error raised when one passes.

Precedence, most specific first: ``request.extensions[DEADLINES]`` (per call, also how a client passes its own
default), then the innermost ``with deadlines(...)`` scope, then the layer's default (a retry layer's: ``CALL_DEADLINES``).
A scope is a context variable, so it follows the call into the tasks it creates; tinkex's background loop copies
the caller's context into each sync call, so a scope works around sync calls too.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import httpx

from pristine_transport.errors import APITimeoutError
from pristine_transport.policy import DEFAULT_DEADLINES, Deadlines, RetryBudget, WriteOutcome, write_outcome_advice

__all__ = [
    "CLOCK",
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

DeadlineKind = Literal["no_progress", "failed_attempts", "attempt"]


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


class AttemptDeadlineError(httpx.TimeoutException):
    """One attempt (headers and body) outlived its whole-attempt deadline; retried like any timeout."""


class DeadlineExceededError(APITimeoutError, TimeoutError):
    """A deadline passed. Says what was waited on, for how long, the last answer seen, and whether the work may
    have run (``may_have_run``); for a future, ``request_id`` retrieves it later."""

    def __init__(
        self,
        request: httpx.Request,
        *,
        waited_on: str,
        waited_s: float,
        deadline: DeadlineKind,
        last_seen: str,
        may_have_run: bool,
        request_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        what = {
            "no_progress": "made no progress",
            "failed_attempts": "kept failing while others succeed",
            "attempt": "did not finish its attempt",
        }[deadline]
        # A future id means the server accepted the work: it has run or will run, whatever the wait saw.
        outcome: WriteOutcome = "ran" if request_id is not None else "may_have_run" if may_have_run else "did_not_run"
        if outcome == "ran":
            ran = "the server accepted the work (it runs or has run): do not submit it again"
        else:
            ran = write_outcome_advice(outcome, what="the work")
        message = f"{waited_on} {what} for {waited_s:.1f} s; last answer: {last_seen}; {ran}"
        if request_id is not None:
            message += f"; its result may still be retrieved with request_id={request_id!r}"
        if detail:
            message += f" ({detail})"
        super().__init__(request, message)
        self.waited_on = waited_on
        self.waited_s = waited_s
        self.deadline: DeadlineKind = deadline
        self.last_seen = last_seen
        self.outcome: WriteOutcome = outcome
        self.request_id = request_id

    @property
    def may_have_run(self) -> bool:
        """False only when the work surely did not run (``outcome == "did_not_run"``)."""
        return self.outcome != "did_not_run"

    def __reduce__(self) -> Any:
        return (_rebuild, (self.request.method, str(self.request.url), self.__dict__.copy()))


def _rebuild(method: str, url: str, state: dict[str, Any]) -> DeadlineExceededError:
    error = DeadlineExceededError.__new__(DeadlineExceededError)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    error.request = httpx.Request(method, url)
    return error


class OperationClock:
    """The deadlines of one logical request and what it last saw, shared by the layers of its stack.

    The retry layer arms one ``asyncio.Timeout`` per attempt at ``min(now + attempt_s, no-progress deadline)``.
    Inner layers talk to it through ``request.extensions[CLOCK]``: the pool limiter :meth:`pause` s it while the
    request waits for a local permit (that wait is neither the server's nor the attempt's), the backpressure layer
    calls :meth:`waiting` before a backoff window (bounded only by the no-progress deadline) and :meth:`sending`
    before the next send (a fresh whole-attempt deadline). Times are on ``now``'s clock (injectable for tests);
    timers are converted to the loop's clock."""

    __slots__ = ("attempt_s", "deadline", "in_exchange", "last_seen", "now", "_paused_at", "_timer")

    def __init__(self, attempt_s: float | None, deadline: float, now: Callable[[], float]) -> None:
        self.attempt_s = attempt_s
        self.deadline = deadline
        """When the no-progress deadline passes, on ``now``'s clock (``math.inf`` for never)."""
        self.now = now
        self.last_seen: str | None = None
        self.in_exchange = False
        """True while an HTTP exchange is under way (the server may be running the request)."""
        self._timer: asyncio.Timeout | None = None
        self._paused_at: float | None = None

    def first_deadline(self) -> float | None:
        """Loop time at which a new attempt ends (None: never); marks an exchange under way."""
        self.in_exchange = True
        now = self.now()
        when = self.deadline if self.attempt_s is None else min(now + self.attempt_s, self.deadline)
        return None if math.isinf(when) else asyncio.get_running_loop().time() + (when - now)

    def arm(self, timer: asyncio.Timeout) -> None:
        """The attempt's timer, already set to :meth:`first_deadline`."""
        self._timer = timer

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

    def _reschedule(self, when: float, now: float) -> None:
        timer = self._timer
        if timer is None or timer.expired():
            return  # it fired: the cancellation is on its way out, nothing may replace it
        timer.reschedule(None if math.isinf(when) else asyncio.get_running_loop().time() + (when - now))
