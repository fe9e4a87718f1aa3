"""The process-wide background event loop that runs the sync API.

Async methods run on the caller's own loop; sync wrappers submit the same coroutines here. One daemon thread per
process (re-created after a fork), safe to call from any thread except its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["BackgroundLoop", "chain_task", "get_runtime", "running_loop", "wait_result"]

T = TypeVar("T")
F = TypeVar("F", bound="concurrent.futures.Future[Any]")


class BackgroundLoop:
    def __init__(self, name: str = "tinkex-runtime") -> None:
        self._ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return self.submit_into(coro, concurrent.futures.Future())

    def submit_into(self, coro: Coroutine[Any, Any, Any], future: F) -> F:
        """Run ``coro`` on the background loop; its outcome settles ``future`` (so callers pick the future's class),
        and cancelling ``future`` cancels the coroutine: ``asyncio.run_coroutine_threadsafe`` with a chosen future."""
        loop = self.loop

        def start() -> None:
            if future.cancelled():
                coro.close()
                return
            chain_task(loop.create_task(coro), future, loop)

        loop.call_soon_threadsafe(start)
        return future

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the background loop and wait for it from a user thread."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                "A blocking tinkex call was made from tinkex's own event loop; use the *_async method and await it."
            )
        return wait_result(self.submit(coro), timeout, cancel=True)


def chain_task(task: asyncio.Future[T], future: concurrent.futures.Future[T], loop: asyncio.AbstractEventLoop) -> None:
    """``future`` (thread-safe) takes ``task``'s outcome; cancelling ``future`` cancels ``task`` on ``loop``.
    Call on ``loop``'s thread."""

    def settle(done: asyncio.Future[T]) -> None:
        if done.cancelled():
            future.cancel()
        if not future.set_running_or_notify_cancel():
            return
        error = done.exception()
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result())

    def cancel_task(settled: concurrent.futures.Future[T]) -> None:
        if settled.cancelled() and not task.done():
            loop.call_soon_threadsafe(task.cancel)

    task.add_done_callback(settle)
    future.add_done_callback(cancel_task)


def wait_result(future: concurrent.futures.Future[T], timeout: float | None, *, cancel: bool) -> T:
    """Block for ``future``'s result; after ``timeout`` seconds give up (and ``cancel`` it, if asked).

    Since Python 3.11 a coroutine's own ``TimeoutError`` (e.g. a sample's deadline) and this wait's are the same
    class: a future that is done raised it itself, and keeps its message.
    """
    try:
        return future.result(timeout)
    except TimeoutError:
        if future.done():
            raise
        if cancel:
            future.cancel()
        raise TimeoutError(f"not resolved within {timeout} s") from None


_runtime: BackgroundLoop | None = None
_runtime_pid: int | None = None
_lock = threading.Lock()


def get_runtime() -> BackgroundLoop:
    global _runtime, _runtime_pid
    with _lock:
        if _runtime is None or _runtime_pid != os.getpid():
            _runtime, _runtime_pid = BackgroundLoop(), os.getpid()
        return _runtime


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The calling thread's running event loop, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
