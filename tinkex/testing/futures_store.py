"""Server-side futures: ids, readiness after a latency, long polling, expiry.

An operation executes when it is submitted; its encoded result is revealed once ``ready_at`` has passed. A poll
that arrives earlier is held open until the result is ready or the long-poll bound elapses.
Used only from the server's event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Literal

__all__ = ["Category", "Failure", "FutureRecord", "FutureStore"]

Category = Literal["user", "server", "unknown"]


@dataclass(frozen=True)
class Failure:
    message: str
    category: Category


@dataclass
class FutureRecord:
    request_id: str
    endpoint: str
    model_id: str | None
    ready_at: float
    result: bytes | None = None
    """The encoded JSON result; ``None`` when the operation failed or the future expired."""
    failure: Failure | None = None
    expired: bool = False


class FutureStore:
    def __init__(self, ttl: float | None = None, id_prefix: str = "req-") -> None:
        """``id_prefix`` makes ids unique across restarts on one state directory (``req-<generation>.``)."""
        self._ttl = ttl
        self._id_prefix = id_prefix
        self._ids = itertools.count(1)
        self._records: dict[str, FutureRecord] = {}
        self._closing = asyncio.Event()

    def create(
        self,
        endpoint: str,
        model_id: str | None,
        latency: float,
        result: bytes | None = None,
        failure: Failure | None = None,
    ) -> FutureRecord:
        if (result is None) == (failure is None):
            raise ValueError("a future holds exactly one of result or failure")
        record = FutureRecord(
            request_id=f"{self._id_prefix}{next(self._ids)}",
            endpoint=endpoint,
            model_id=model_id,
            ready_at=time.monotonic() + latency,
            result=result,
            failure=failure,
        )
        self._records[record.request_id] = record
        return record

    def restore(self, record: FutureRecord) -> None:
        """Install a future issued before a restart (read back from the state directory)."""
        self._records[record.request_id] = record

    def get(self, request_id: str) -> FutureRecord | None:
        return self._records.get(request_id)

    def expire(self, record: FutureRecord) -> None:
        record.expired = True
        record.result = None
        record.failure = None

    def cancel(self, record: FutureRecord, failure: Failure) -> None:
        """The client abandoned the work: the future resolves now, to ``failure``, whatever it held."""
        record.result = None
        record.failure = failure
        record.ready_at = min(record.ready_at, time.monotonic())

    def is_ready(self, record: FutureRecord) -> bool:
        return time.monotonic() >= record.ready_at

    def unfinished(self, endpoint: str) -> int:
        now = time.monotonic()
        return sum(1 for r in self._records.values() if r.endpoint == endpoint and not r.expired and r.ready_at > now)

    async def wait_ready(self, record: FutureRecord, timeout: float) -> bool:
        """Hold until ``record`` is ready (True) or ``timeout`` elapses or the server closes (False)."""
        deadline = time.monotonic() + timeout
        # A loop, because event-loop timers may fire up to the clock resolution early.
        while not self.is_ready(record) and not self._closing.is_set():
            wait = min(record.ready_at, deadline) - time.monotonic()
            if wait <= 0:
                break
            try:
                await asyncio.wait_for(self._closing.wait(), wait)
            except asyncio.TimeoutError:
                pass
        return self.is_ready(record)

    def close(self) -> None:
        """Release every held poll (server shutdown)."""
        self._closing.set()

    def past_ttl(self, record: FutureRecord) -> bool:
        """The result has been ready for longer than the TTL (the caller then expires the record)."""
        return self._ttl is not None and time.monotonic() > record.ready_at + self._ttl
