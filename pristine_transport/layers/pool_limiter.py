"""Admission control for one pool: a count limit, a tighter count limit while a backoff is recent, a byte budget.

One :class:`PoolLimiter` is shared by every endpoint stack of a pool. :class:`PoolLimiterLayer` takes the pool's
permits before a request is sent and gives them back when its response is closed, so a streamed response keeps
holding them while it is being read.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Literal, cast

import anyio
import httpx
from opentelemetry import trace

from pristine_transport import extensions
from pristine_transport.deadlines import CLOCK, OperationClock
from pristine_transport.layers.backoff_window import BackoffWindow
from pristine_transport.manifest import PoolSpec

__all__ = ["BytesSemaphore", "PoolLimiter", "PoolLimiterLayer", "PoolPermit", "request_size"]

SizeOf = Callable[[httpx.Request], int]
LimitName = Literal["count", "throttled", "bytes"]


class _ByteWaiter:
    __slots__ = ("granted", "n")

    def __init__(self, n: int) -> None:
        self.n = n
        self.granted = anyio.Event()


class BytesSemaphore:
    """A byte budget that a request may overshoot once: ``acquire(n)`` waits only while the remaining budget is
    negative, then takes ``n``. So one request larger than the whole budget still passes, and the ones after it
    wait until enough has been released. Waiters are served first come, first served."""

    def __init__(self, budget: int) -> None:
        if budget <= 0:
            raise ValueError(f"budget must be positive, got {budget}")
        self.budget = budget
        self._available = budget
        self._waiters: deque[_ByteWaiter] = deque()

    @property
    def available(self) -> int:
        """Remaining budget; negative after an overshoot."""
        return self._available

    def try_acquire(self, n: int) -> bool:
        """Take ``n`` without waiting if nobody is queued and the budget is not negative."""
        if self._waiters or self._available < 0:
            return False
        self._available -= n
        return True

    async def acquire(self, n: int) -> None:
        if self.try_acquire(n):
            return
        waiter = _ByteWaiter(n)
        self._waiters.append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:
            # Cancelled: a grant that raced the cancellation is given back; otherwise leave the queue untouched.
            if waiter.granted.is_set():
                self.release(n)
            else:
                self._waiters.remove(waiter)
            raise

    def release(self, n: int) -> None:
        self._available += n
        # The bytes of the head waiter are taken on its behalf, so FIFO order holds even before it runs again.
        while self._waiters and self._available >= 0:
            waiter = self._waiters.popleft()
            self._available -= waiter.n
            waiter.granted.set()

    def __repr__(self) -> str:
        return f"BytesSemaphore(budget={self.budget}, available={self._available}, waiting={len(self._waiters)})"


class PoolPermit:
    """The permits one request holds. ``release()`` is idempotent, synchronous and safe on every path."""

    __slots__ = ("_byte_count", "_bytes", "_count", "_throttled")

    def __init__(self) -> None:
        self._count: anyio.Semaphore | None = None
        self._throttled: anyio.Semaphore | None = None
        self._bytes: BytesSemaphore | None = None
        self._byte_count = 0

    def release(self) -> None:
        if self._bytes is not None:
            self._bytes.release(self._byte_count)
            self._bytes = None
        if self._throttled is not None:
            self._throttled.release()
            self._throttled = None
        if self._count is not None:
            self._count.release()
            self._count = None


class PoolLimiter:
    """Count semaphore -> throttled count semaphore (only while ``window.is_recent()``) -> byte budget (bytes
    multiplied by ``spec.backoff_byte_multiplier`` while recent). A ``None`` limit in the spec is no limit."""

    def __init__(self, spec: PoolSpec, window: BackoffWindow, *, name: str | None = None) -> None:
        self.spec = spec
        self.name = name
        self._window = window
        self._count = anyio.Semaphore(spec.max_concurrency) if spec.max_concurrency is not None else None
        self._throttled = (
            anyio.Semaphore(spec.throttled_concurrency) if spec.throttled_concurrency is not None else None
        )
        self._bytes = BytesSemaphore(spec.max_bytes) if spec.max_bytes is not None else None

    @property
    def available_count(self) -> int | None:
        return self._count.value if self._count is not None else None

    @property
    def available_throttled(self) -> int | None:
        return self._throttled.value if self._throttled is not None else None

    @property
    def available_bytes(self) -> int | None:
        return self._bytes.available if self._bytes is not None else None

    def try_acquire(self, size_bytes: int) -> PoolPermit | None:
        """Every permit a request of ``size_bytes`` needs if all are free right now, else None (nothing held)."""
        permit = PoolPermit()
        window = self._window
        recent = window.opened and window.is_recent()  # ``opened`` first: no call while it never opened
        try:
            if self._count is not None:
                self._count.acquire_nowait()
                permit._count = self._count
            if self._throttled is not None and recent:
                self._throttled.acquire_nowait()
                permit._throttled = self._throttled
        except anyio.WouldBlock:
            permit.release()
            return None
        if self._bytes is not None:
            count = size_bytes * self.spec.backoff_byte_multiplier if recent else size_bytes
            if not self._bytes.try_acquire(count):
                permit.release()
                return None
            permit._bytes, permit._byte_count = self._bytes, count
        return permit

    async def acquire(self, size_bytes: int) -> PoolPermit:
        """Take every permit a request of ``size_bytes`` needs. On any exception (cancellation included) the
        permits taken so far are given back before it propagates."""
        permit = PoolPermit()
        try:
            if self._count is not None:
                await self._take(self._count, "count")
                permit._count = self._count
            if self._throttled is not None and self._window.is_recent():
                await self._take(self._throttled, "throttled")
                permit._throttled = self._throttled
            if self._bytes is not None:
                count = size_bytes * self.spec.backoff_byte_multiplier if self._window.is_recent() else size_bytes
                if not self._bytes.try_acquire(count):
                    started = time.monotonic()
                    await self._bytes.acquire(count)
                    self._waited("bytes", started)
                permit._bytes, permit._byte_count = self._bytes, count
        except BaseException:
            permit.release()
            raise
        return permit

    @asynccontextmanager
    async def admit(self, size_bytes: int) -> AsyncIterator[None]:
        permit = await self.acquire(size_bytes)
        try:
            yield
        finally:
            permit.release()

    async def _take(self, semaphore: anyio.Semaphore, limit: LimitName) -> None:
        try:
            semaphore.acquire_nowait()
        except anyio.WouldBlock:
            started = time.monotonic()
            await semaphore.acquire()
            self._waited(limit, started)

    def _waited(self, limit: LimitName, started: float) -> None:
        attributes: dict[str, str | float] = {"pool.limit": limit, "pool.wait_s": time.monotonic() - started}
        if self.name is not None:
            attributes["pool.name"] = self.name
        trace.get_current_span().add_event("pool.wait", attributes)

    def __repr__(self) -> str:
        return (
            f"PoolLimiter(name={self.name!r}, count={self.available_count}, "
            f"throttled={self.available_throttled}, bytes={self.available_bytes})"
        )


def request_size(request: httpx.Request, size_of: SizeOf | None = None) -> int:
    """Estimated bytes of a request: the caller's ``SIZE_BYTES`` extension, else ``size_of``, else the body length
    (Content-Length for a streamed body that has not been read)."""
    explicit = request.extensions.get(extensions.SIZE_BYTES)
    if explicit is not None:
        return int(explicit)
    if size_of is not None:
        return size_of(request)
    try:
        return len(request.content)
    except httpx.RequestNotRead:
        return int(request.headers.get("content-length", 0))


class _PermitReleasingStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, permit: PoolPermit) -> None:
        self._inner = inner
        self._permit = permit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._permit.release()


class PoolLimiterLayer(httpx.AsyncBaseTransport):
    """Holds the pool's permits from before the send until the response is closed."""

    def __init__(self, inner: httpx.AsyncBaseTransport, limiter: PoolLimiter, *, size_of: SizeOf | None = None) -> None:
        self._inner = inner
        self._limiter = limiter
        self._size_of = size_of

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        size = request_size(request, self._size_of)
        permit = self._limiter.try_acquire(size)
        if permit is None:
            # A local wait: the request's deadlines stop while it queues for a permit.
            clock: OperationClock | None = request.extensions.get(CLOCK)
            if clock is not None:
                clock.pause()
            permit = await self._limiter.acquire(size)
            if clock is not None:
                clock.resume()
            telemetry = request.extensions.get(extensions.TELEMETRY)
            if telemetry is not None and telemetry.instruments is not None:
                attributes = {"pristine.endpoint": telemetry.endpoint, "pristine.pool.name": self._limiter.name or ""}
                telemetry.instruments.pool_waits.add(1, attributes)
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            permit.release()
            raise
        if response.is_closed:
            # Already read into memory (e.g. by an inner layer): no connection is held any more.
            permit.release()
        else:
            response.stream = _PermitReleasingStream(cast(httpx.AsyncByteStream, response.stream), permit)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
