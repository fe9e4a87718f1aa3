"""Queue-state reporting: pauses reach the user's callback as they happen, and a debounced warning in the log.

Tinker's queue states are :class:`QueueState` (the manifest lists their wire values; pristine_transport reports
them as plain strings and gives them no meaning).

The official SDK logs a pause at most once a minute (0.16) and only after 15 minutes of pause (0.38), so users
saw nothing while their job sat paused. Here the callback sees every change at once; the log line keeps the
official wording and its 60 s debounce.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from enum import StrEnum

__all__ = ["QueueState", "QueueStateCallback", "QueueStateLogger"]

logger = logging.getLogger("tinkex.queue_state")



class QueueState(StrEnum):
    """Where Tinker's queue holds a model's or sampler's requests."""

    ACTIVE = "active"
    PAUSED_RATE_LIMIT = "paused_rate_limit"
    """Too many concurrent clients (training) or sampler weights (sampling)."""
    PAUSED_CAPACITY = "paused_capacity"
    """The service is short on capacity."""
    UNKNOWN = "unknown"
    """The server named no state, or one this SDK does not know."""

    @classmethod
    def of(cls, reported: str) -> QueueState:
        """The state a poll reported (any case); one this SDK does not know is ``UNKNOWN``."""
        try:
            return cls(reported.lower())
        except ValueError:
            return cls.UNKNOWN


QueueStateCallback = Callable[[QueueState, "str | None"], None]

QUEUE_STATE_LOG_INTERVAL_S = 60.0

TRAINING_REASONS: Mapping[QueueState, str] = {
    QueueState.PAUSED_RATE_LIMIT: "concurrent training clients rate limit hit",
    QueueState.PAUSED_CAPACITY: "Tinker backend is running short on capacity, please wait",
}
SAMPLING_REASONS: Mapping[QueueState, str] = {
    QueueState.PAUSED_RATE_LIMIT: "concurrent sampler weights limit hit",
    QueueState.PAUSED_CAPACITY: "Tinker backend is running short on capacity, please wait",
}


class QueueStateLogger:
    """Observer for futures of one model or sampler. ``message`` is formatted with ``reason``."""

    def __init__(
        self,
        message: str,
        default_reasons: Mapping[QueueState, str],
        callback: QueueStateCallback | None = None,
        *,
        interval_s: float = QUEUE_STATE_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._message = message
        self._default_reasons = default_reasons
        self._callback = callback
        self._interval_s = interval_s
        self._clock = clock
        self._last_logged: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_training(cls, prefix: str, identifier: str, callback: QueueStateCallback | None = None) -> QueueStateLogger:
        return cls(f"{prefix} for {identifier} is paused. Reason: {{reason}}.", TRAINING_REASONS, callback)

    @classmethod
    def for_sampling(cls, sampler_id: str, callback: QueueStateCallback | None = None) -> QueueStateLogger:
        return cls(f"Sampling is paused for sampler {sampler_id}. Reason: {{reason}}", SAMPLING_REASONS, callback)

    def on_queue_state_change(self, reported: str, reason: str | None) -> None:
        state = QueueState.of(reported)
        if self._callback is not None:
            self._callback(state, reason)
        if state is QueueState.ACTIVE:
            return
        with self._lock:
            now = self._clock()
            if self._last_logged is not None and now - self._last_logged < self._interval_s:
                return
            self._last_logged = now
        logger.warning(self._message.format(reason=reason or self._default_reasons.get(state, "unknown")))
