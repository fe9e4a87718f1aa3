"""The process's retry quota: one window of recent requests and re-sends that every client of the process counts in,
so that together they re-send no more than :class:`~pristine_transport.policy.RetryQuota` allows (tower's retry
budget). Off until :func:`enable_retry_quota` is called; the decision is
:func:`~pristine_transport.policy.retry_quota_allows`, this module only counts.

A retry layer records each logical request it sends (:meth:`RetryQuotaWindow.record_request`) and asks before each
re-send (:meth:`RetryQuotaWindow.try_retry`); when the quota is spent it hands back the answer it has, as when its
policy's re-sends are spent. The window is guarded by a lock, since the clients of a process may run on several
threads and event loops; a forked child starts with an empty window of its own.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable

from pristine_transport.policy import RetryQuota, retry_quota_allows

__all__ = [
    "RetryQuotaWindow",
    "disable_retry_quota",
    "enable_retry_quota",
    "process_retry_quota",
]

_SLOTS = 10
"""The window is counted in this many slots: a request leaves the count at most ``window_s / _SLOTS`` late."""


class RetryQuotaWindow:
    """Requests and re-sends over the last ``quota.window_s`` seconds, in slots of a tenth of it."""

    __slots__ = ("quota", "_clock", "_lock", "_requests", "_retries", "_slot_s", "_slots")

    def __init__(self, quota: RetryQuota, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.quota = quota
        self._clock = clock
        self._slot_s = quota.window_s / _SLOTS
        self._slots: deque[list[int]] = deque()
        """``[slot number, requests, re-sends]`` of each slot that counted any, oldest first."""
        self._requests = 0
        self._retries = 0
        self._lock = threading.Lock()

    @property
    def counts(self) -> tuple[int, int]:
        """Requests and re-sends in the window now."""
        with self._lock:
            self._current_slot()
            return self._requests, self._retries

    def record_request(self) -> None:
        """A logical request's first attempt."""
        with self._lock:
            self._current_slot()[1] += 1
            self._requests += 1

    def try_retry(self) -> bool:
        """Take one re-send from the quota; False (nothing taken) when it is spent."""
        with self._lock:
            slot = self._current_slot()
            if not retry_quota_allows(self.quota, requests=self._requests, retries=self._retries):
                return False
            slot[2] += 1
            self._retries += 1
            return True

    def _current_slot(self) -> list[int]:
        """The slot of now, after dropping the slots that fell out of the window."""
        number = int(self._clock() // self._slot_s)
        slots = self._slots
        while slots and slots[0][0] <= number - _SLOTS:
            _, requests, retries = slots.popleft()
            self._requests -= requests
            self._retries -= retries
        if not slots or slots[-1][0] != number:
            slots.append([number, 0, 0])
        return slots[-1]


_process_window: RetryQuotaWindow | None = None


def enable_retry_quota(quota: RetryQuota | None = None) -> RetryQuotaWindow:
    """Cap the re-sends of every client of this process, from now on, at ``quota`` (default: ``RetryQuota()``,
    one re-send per five requests plus 10 per second, over 10 s). Replaces a quota enabled before."""
    global _process_window
    _process_window = RetryQuotaWindow(quota if quota is not None else RetryQuota())
    return _process_window


def disable_retry_quota() -> None:
    """Re-sends are again bounded only by each request's own policy and deadlines."""
    global _process_window
    _process_window = None


def process_retry_quota() -> RetryQuotaWindow | None:
    """The window every retry layer of the process counts in, or None when no quota is enabled."""
    return _process_window


def _after_fork_in_child() -> None:
    # The parent's counts (and a lock another thread may have held at the fork) are not the child's.
    global _process_window
    if _process_window is not None:
        _process_window = RetryQuotaWindow(_process_window.quota, clock=_process_window._clock)


os.register_at_fork(after_in_child=_after_fork_in_child)
