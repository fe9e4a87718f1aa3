"""What a caller awaits for a future result: :class:`FutureHandle` (one request), :class:`CombinedHandle` (several
reduced to one) and the :class:`ResultHandle` behaviour they share.

Delivery rules (docs/design.md, "exactly once"): every awaiter shares one task, and awaiting twice gives the same
result object. A wait's own ``timeout``, a ``result()`` call from another thread giving up, or cancelling one of
several awaiters abandons only that wait; cancelling the last awaiter or ``cancel()`` stops the work behind the
handle (never the server's).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import types
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from pristine_transport.errors import FutureTimeoutError

__all__ = ["CombinedHandle", "FutureHandle", "ResultHandle", "combine"]

T = TypeVar("T")
R = TypeVar("R")


class ResultHandle(Generic[T]):
    """What :class:`FutureHandle` and :class:`CombinedHandle` share: awaiting, waiting from another thread and
    cancelling one task that lives on one event loop."""

    _loop: asyncio.AbstractEventLoop
    _description: str
    _task: asyncio.Task[T] | None
    """The task every awaiter shares (a combined handle creates it on the first wait)."""
    _awaiters: int = 0

    def _shared_task(self) -> asyncio.Task[T]:
        """The task every awaiter shares; called on the loop thread only."""
        assert self._task is not None
        return self._task

    def _cancel_work(self) -> None:
        """Stop the work behind the handle; called on the loop thread only."""
        if self._task is not None:
            self._task.cancel()

    def done(self) -> bool:
        """True once the handle has a result, a failure, or was cancelled."""
        return self._task is not None and self._task.done()

    def __await__(self) -> Generator[Any, None, T]:
        return self.result_async().__await__()

    async def result_async(self, timeout: float | None = None) -> T:
        """The result. ``timeout`` bounds this wait only (:class:`FutureTimeoutError`); polling goes on. Cancelling
        the last awaiter stops the polling (the server's work is not cancelled); other awaiters keep it alive."""
        if _running_loop() is not self._loop:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.result_async(timeout), self._loop))
        return await self._wait(timeout, awaiter=True)

    async def _wait(self, timeout: float | None, *, awaiter: bool) -> T:
        task = self._shared_task()
        self._awaiters += awaiter
        try:
            async with asyncio.timeout(timeout):
                # shield: cancelling this awaiter must not cancel the task the other awaiters share.
                return await asyncio.shield(task)
        except FutureTimeoutError:
            raise
        except TimeoutError:
            if task.done():
                raise
            raise FutureTimeoutError(self._description, timeout or 0.0, polling_stopped=False) from None
        except asyncio.CancelledError:
            if awaiter and self._awaiters == 1 and not task.done():
                self._cancel_work()
            raise
        finally:
            self._awaiters -= awaiter

    def result(self, timeout: float | None = None) -> T:
        """Block the calling thread until the result is there. Not allowed on the handle's own loop thread,
        where it would deadlock: there, ``await`` the handle or use ``result_async()``. A cancelled handle raises
        ``concurrent.futures.CancelledError``, as a ``concurrent.futures.Future`` would."""
        if _running_loop() is self._loop:
            raise RuntimeError(
                f"{type(self).__name__}.result() called on the event loop that resolves it, which would deadlock; "
                "use `await handle` or `await handle.result_async()` instead."
            )
        task = self._task
        if task is not None and task.done():
            if task.cancelled():
                raise concurrent.futures.CancelledError(f"{self._description} was cancelled")
            return task.result()
        if self._loop.is_closed():
            raise RuntimeError(f"the event loop of {self._description} is closed")
        # Not an awaiter: giving up after ``timeout`` here leaves the polling running, as a concurrent future would.
        waiting = asyncio.run_coroutine_threadsafe(self._wait(None, awaiter=False), self._loop)
        try:
            return waiting.result(timeout)
        except FutureTimeoutError:
            raise  # the handle's own deadline, raised by the task
        except concurrent.futures.TimeoutError:
            waiting.cancel()
            raise FutureTimeoutError(self._description, timeout or 0.0, polling_stopped=False) from None

    def cancel(self) -> None:
        """Stop resolving (polling ends, held budget is released). The server's work is not cancelled."""
        if _running_loop() is self._loop:
            self._cancel_work()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._cancel_work)


class FutureHandle(ResultHandle[T]):
    """One submitted request's future result: ``await handle``, ``handle.result()`` from another thread."""

    def __init__(
        self,
        request_id: str,
        task: asyncio.Task[T],
        loop: asyncio.AbstractEventLoop,
        submit_reply: Mapping[str, Any] | None = None,
    ) -> None:
        self.request_id = request_id
        self._task = task
        self._loop = loop
        self._description = request_id
        self.submit_reply: Mapping[str, Any] = submit_reply if submit_reply is not None else _NO_REPLY
        """The submit's decoded JSON reply (the request id and whatever else the server said when it accepted the
        request, e.g. ids it assigned up front); empty for a handle made by :meth:`~pristine_transport.futures.FutureResolver.handle`."""

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"FutureHandle(request_id={self.request_id!r}, {state})"


_NO_REPLY: Mapping[str, Any] = types.MappingProxyType({})


class CombinedHandle(ResultHandle[R]):
    """Several handles reduced by ``transform`` into one result, with the handle API. The first failure among
    the parts propagates. ``transform`` runs once, on the first await; later awaits get the same object.
    ``cancel()`` cancels every part."""

    def __init__(self, parts: Sequence[ResultHandle[Any]], transform: Callable[[list[Any]], R]) -> None:
        if not parts:
            raise ValueError("combine() needs at least one handle")
        loops = {id(part._loop) for part in parts}
        if len(loops) != 1:
            raise ValueError("combine() needs handles of one event loop")
        self.parts = list(parts)
        self._transform = transform
        self._loop = parts[0]._loop
        self._task: asyncio.Task[R] | None = None
        self._description = "combined(" + ", ".join(part._description for part in parts) + ")"

    @property
    def request_ids(self) -> list[str]:
        return [part._description for part in self.parts]

    def _shared_task(self) -> asyncio.Task[R]:
        # Called on the loop thread only (result_async hops there first), so creating it once needs no lock.
        if self._task is None:
            self._task = self._loop.create_task(self._reduce(), name=f"pristine {self._description}")
            self._task.add_done_callback(_retrieve_outcome)
        return self._task

    async def _reduce(self) -> R:
        tasks = [part._shared_task() for part in self.parts]
        # asyncio.wait never cancels what it waits on, so a cancelled combined wait leaves the parts running.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and (task.cancelled() or task.exception() is not None):
                return task.result()  # raises the part's failure
        return self._transform([task.result() for task in tasks])

    def _cancel_work(self) -> None:
        for part in self.parts:
            part._cancel_work()
        super()._cancel_work()

    def done(self) -> bool:
        if self._task is not None:
            return self._task.done()
        return all(part.done() for part in self.parts)

    def __repr__(self) -> str:
        return f"CombinedHandle({self._description})"


def combine(handles: Sequence[ResultHandle[Any]], transform: Callable[[list[Any]], R]) -> CombinedHandle[R]:
    """One handle whose result is ``transform([result of each handle, in order])``."""
    return CombinedHandle(handles, transform)


def _retrieve_outcome(task: asyncio.Task[Any]) -> None:
    # A future nobody awaits may still fail; mark its exception retrieved so asyncio does not log it at GC.
    if not task.cancelled():
        task.exception()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
