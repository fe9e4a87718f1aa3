"""``APIFuture``: what training calls return, awaitable or ``.result()``-able, as in the official SDK.

Two kinds: a future resolved on the caller's own loop (the ``*_async`` methods), and a future computed on the
background runtime loop (the sync methods), whose ``result()`` blocks the calling thread. Both take a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

from .runtime import get_runtime, running_loop, wait_result

__all__ = ["APIFuture", "AwaitableFuture", "ConcurrentFuture", "completed_future"]

T = TypeVar("T")
U = TypeVar("U")


class APIFuture(ABC, Generic[T]):
    @abstractmethod
    def result(self, timeout: float | None = None) -> T:
        """Block until the result is ready (raises ``TimeoutError`` after ``timeout`` seconds)."""

    @abstractmethod
    async def result_async(self, timeout: float | None = None) -> T:
        """Await the result (raises ``TimeoutError`` after ``timeout`` seconds)."""

    @abstractmethod
    def done(self) -> bool: ...

    def __await__(self) -> Generator[Any, None, T]:
        return self.result_async().__await__()


class AwaitableFuture(APIFuture[T]):
    """Wraps an awaitable (a pristine FutureHandle or combined handle) bound to the caller's loop.

    ``on_error`` sees the failure once, when the work fails (not once per awaiter): telemetry reports it there.
    """

    def __init__(
        self,
        awaitable: Awaitable[Any],
        transform: Callable[[Any], T] | None = None,
        *,
        on_error: Callable[[Exception], object] | None = None,
    ) -> None:
        self._task: asyncio.Future[Any] = asyncio.ensure_future(_transformed(awaitable, transform, on_error))
        self._loop = asyncio.get_running_loop()

    def result(self, timeout: float | None = None) -> T:
        if running_loop() is self._loop:
            raise RuntimeError("result() would block the event loop this future runs on; use `await future` instead")
        # Only the waiter is cancelled on timeout: result_async shields the work.
        return wait_result(asyncio.run_coroutine_threadsafe(self.result_async(), self._loop), timeout, cancel=True)

    async def result_async(self, timeout: float | None = None) -> T:
        return await _wait(self._task, timeout)

    def done(self) -> bool:
        return self._task.done()


class ConcurrentFuture(APIFuture[T]):
    """A result computed on the background runtime loop."""

    def __init__(self, future: concurrent.futures.Future[T]) -> None:
        self._future = future

    def result(self, timeout: float | None = None) -> T:
        if get_runtime().in_loop_thread():
            raise RuntimeError("result() called on tinkex's own event loop; use `await future` instead")
        return wait_result(self._future, timeout, cancel=False)

    async def result_async(self, timeout: float | None = None) -> T:
        return await _wait(asyncio.wrap_future(self._future), timeout)

    def done(self) -> bool:
        return self._future.done()


def completed_future(value: T) -> ConcurrentFuture[T]:
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    future.set_result(value)
    return ConcurrentFuture(future)


async def _wait(work: asyncio.Future[T], timeout: float | None) -> T:
    """``work``'s result; only this wait gives up after ``timeout`` (the work goes on). The async twin of
    :func:`~tinkex.runtime.wait_result`: a TimeoutError the work raised itself keeps its message."""
    try:
        return await asyncio.wait_for(asyncio.shield(work), timeout)
    except TimeoutError:
        if work.done():
            raise
        raise TimeoutError(f"not resolved within {timeout} s") from None


async def _transformed(
    awaitable: Awaitable[Any], transform: Callable[[Any], T] | None, on_error: Callable[[Exception], object] | None
) -> T:
    try:
        value = await awaitable
        return transform(value) if transform is not None else value  # type: ignore[no-any-return]
    except Exception as exc:
        if on_error is not None:
            on_error(exc)
        raise
