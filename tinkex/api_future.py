"""``APIFuture``: what tinkex calls return, awaitable or ``.result()``-able, as in the official SDK.

Two kinds: a future resolved on the caller's own loop (the ``*_async`` training methods), and a future computed on
the background runtime loop (the sync methods), whose ``result()`` blocks the calling thread. Both take a deadline,
both give a ``concurrent.futures.Future`` through ``future()`` (0.38) and a coroutine through ``coroutine()`` (for
``asyncio.create_task``). The background kind *is* a ``concurrent.futures.Future`` as well, so 0.16-era code that
passes ``sample()``'s result to ``concurrent.futures.wait`` / ``as_completed`` keeps working.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

from .runtime import chain_task, get_runtime, running_loop, wait_result

__all__ = ["APIFuture", "AwaitableFuture", "ConcurrentFuture", "completed_future", "in_background"]

T = TypeVar("T")


class APIFuture(ABC, Generic[T]):
    @abstractmethod
    def result(self, timeout: float | None = None) -> T:
        """Block until the result is ready (raises ``TimeoutError`` after ``timeout`` seconds)."""

    @abstractmethod
    async def result_async(self, timeout: float | None = None) -> T:
        """Await the result (raises ``TimeoutError`` after ``timeout`` seconds)."""

    @abstractmethod
    def done(self) -> bool: ...

    @abstractmethod
    def future(self) -> concurrent.futures.Future[T]:
        """This operation as a ``concurrent.futures.Future`` (for ``wait``, ``as_completed``, done callbacks).
        Cancelling it cancels the local work (the wait for the server's result), not work the server accepted."""

    async def coroutine(self) -> T:
        """This future as a coroutine, for APIs that take one rather than an awaitable (``asyncio.create_task``)."""
        return await self

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
        self._concurrent: concurrent.futures.Future[T] | None = None

    def result(self, timeout: float | None = None) -> T:
        if running_loop() is self._loop:
            raise RuntimeError("result() would block the event loop this future runs on; use `await future` instead")
        # Only the waiter is cancelled on timeout: result_async shields the work.
        return wait_result(asyncio.run_coroutine_threadsafe(self.result_async(), self._loop), timeout, cancel=True)

    async def result_async(self, timeout: float | None = None) -> T:
        return await _wait(self._task, timeout)

    def done(self) -> bool:
        return self._task.done()

    def future(self) -> concurrent.futures.Future[T]:
        if self._concurrent is None:  # made on first use: most futures are only awaited
            mirror: concurrent.futures.Future[T] = concurrent.futures.Future()
            self._concurrent = mirror
            if running_loop() is self._loop:
                chain_task(self._task, mirror, self._loop)
            else:
                self._loop.call_soon_threadsafe(chain_task, self._task, mirror, self._loop)
        return self._concurrent


class ConcurrentFuture(concurrent.futures.Future, APIFuture[T]):  # type: ignore[type-arg]
    """A result computed on the background runtime loop (made by :func:`in_background`); a
    ``concurrent.futures.Future`` itself, mirroring the runtime's future of the work, whose ``result()`` refuses to
    block tinkex's own loop. Cancelling it cancels the work."""

    def __init__(self, work: concurrent.futures.Future[T] | None = None) -> None:
        super().__init__()
        self._work = work
        if work is not None:
            work.add_done_callback(self._mirror)

    def _mirror(self, work: concurrent.futures.Future[T]) -> None:
        if work.cancelled():
            concurrent.futures.Future.cancel(self)
            self.set_running_or_notify_cancel()  # wakes concurrent.futures.wait / as_completed
        elif not self.set_running_or_notify_cancel():
            return
        elif (error := work.exception()) is not None:
            self.set_exception(error)
        else:
            self.set_result(work.result())

    def cancel(self) -> bool:
        if self._work is not None:
            return self._work.cancel()  # the mirror follows
        return super().cancel()

    def result(self, timeout: float | None = None) -> T:
        if not self.done() and get_runtime().in_loop_thread():
            raise RuntimeError("result() called on tinkex's own event loop; use `await future` instead")
        try:
            return super().result(timeout)  # type: ignore[no-any-return]
        except TimeoutError:
            if self.done():
                raise  # the work's own TimeoutError keeps its message
            raise TimeoutError(f"not resolved within {timeout} s") from None

    async def result_async(self, timeout: float | None = None) -> T:
        return await _wait(asyncio.wrap_future(self), timeout)

    def future(self) -> concurrent.futures.Future[T]:
        return self


def in_background(work: Coroutine[Any, Any, T]) -> ConcurrentFuture[T]:
    """Run ``work`` on the background runtime loop; its future at once."""
    return ConcurrentFuture(get_runtime().submit(work))


def completed_future(value: T) -> ConcurrentFuture[T]:
    future: ConcurrentFuture[T] = ConcurrentFuture()
    future.set_result(value)
    return future


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
