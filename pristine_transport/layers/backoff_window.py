"""BackoffWindow: the "the server asked us to back off" state shared by every endpoint stack of one pool.

A backpressure response opens the window until a deadline. While it is open, requests of the pool wait it out;
for ``recent_s`` after the deadline it still counts as *recent*, and the pool limiter admits fewer and smaller
requests, so the burst that follows a backoff stays bounded (the official SDK's ``_sample_backoff_until``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["BackoffWindow"]


class BackoffWindow:
    def __init__(self, recent_s: float = 10.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        if recent_s < 0:
            raise ValueError(f"recent_s must be >= 0, got {recent_s}")
        self._recent_s = recent_s
        self._clock = clock
        self._deadline: float | None = None
        self.opened = False
        """Whether the window was ever opened (read on every request: a plain attribute, not a call)."""

    def open(self, duration_s: float) -> None:
        """Back off for ``duration_s`` from now; a later deadline already set is kept."""
        candidate = self._clock() + duration_s
        if self._deadline is None or candidate > self._deadline:
            self._deadline = candidate
        self.opened = True

    def is_open(self) -> bool:
        return self._deadline is not None and self._clock() < self._deadline

    def remaining(self) -> float:
        """Seconds until the deadline; 0 when the window is closed."""
        if self._deadline is None:
            return 0.0
        return max(0.0, self._deadline - self._clock())

    def is_recent(self) -> bool:
        """True from the opening of the window until ``recent_s`` after its deadline."""
        return self._deadline is not None and self._clock() - self._deadline < self._recent_s

    async def wait(self, *, sleep: Callable[[float], Awaitable[object]] = anyio.sleep) -> None:
        """Return once the window is closed. Another backoff may push the deadline while we sleep: re-check."""
        while (remaining := self.remaining()) > 0:
            await sleep(remaining)

    def __repr__(self) -> str:
        return f"BackoffWindow(recent_s={self._recent_s}, remaining={self.remaining():.3f})"
