"""The process-wide background event loop that runs the sync API, and what happens to it across ``os.fork()``.

Async methods run on the caller's own loop; sync wrappers submit the same coroutines here. One daemon thread per
process, safe to call from any thread except its own. A submitted coroutine runs in a copy of the caller's
``contextvars`` context, so scopes such as ``pristine_transport.deadlines.deadlines(...)`` apply to sync calls.

Fork (Linux's default start method for ``multiprocessing``, data-loader workers): only the forking thread exists
in the child, so the loop thread, and everything that was running on it, is gone. In the child, each
:class:`BackgroundLoop` starts a fresh loop and thread on first use; the parent's loop is *abandoned*: kept
referenced (so nothing of it is finalised into the parent's sockets), cut off from the kernel state it shares with
the parent (its epoll instance and its sockets, so a connection the parent closes really closes), and marked not
running. Calls that were in flight in the parent fail at once in
the child with :class:`InFlightAtForkError`. Other objects register their own reset with :func:`after_fork_in_child`
and take :class:`ForkSafeLock` for locks that another thread may hold at the moment of the fork.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import select
import sys
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pristine_transport.errors import PristineError

__all__ = [
    "BackgroundLoop",
    "ForkSafeLock",
    "InFlightAtForkError",
    "after_fork_in_child",
    "chain_task",
    "fail_inherited_future",
    "get_runtime",
    "loop_is_usable",
    "release_inherited_fds",
    "release_inherited_loop",
    "running_loop",
    "wait_result",
]

T = TypeVar("T")
F = TypeVar("F", bound="concurrent.futures.Future[Any]")


class InFlightAtForkError(PristineError, RuntimeError):
    """The call was in flight in the parent process when it forked; its answer belongs to the parent. Make the
    call again from this process (the client itself works here)."""

    def __init__(self, parent_pid: int) -> None:
        super().__init__(
            f"this call was in flight in process {parent_pid} when it forked; its result belongs to that process. "
            f"Call again from this process (pid {os.getpid()}): the client works here."
        )
        self.parent_pid = parent_pid


class BackgroundLoop:
    def __init__(self, name: str = "tinkex-runtime") -> None:
        self._name = name
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._in_flight: set[concurrent.futures.Future[Any]] = set()
        _LIVE.add(self)
        self._start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running background loop (started again on first use in a forked child)."""
        loop = self._loop
        return loop if loop is not None else self._start()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(target=self._run, args=(loop, ready), name=self._name, daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
            return loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return self.submit_into(coro, concurrent.futures.Future())

    def submit_into(self, coro: Coroutine[Any, Any, Any], future: F) -> F:
        """Run ``coro`` on the background loop; its outcome settles ``future`` (so callers pick the future's class),
        and cancelling ``future`` cancels the coroutine: ``asyncio.run_coroutine_threadsafe`` with a chosen future.
        The coroutine runs in a copy of the caller's context (``call_soon_threadsafe`` takes one)."""
        loop = self.loop
        in_flight = self._in_flight
        in_flight.add(future)
        future.add_done_callback(in_flight.discard)

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

    def _reset_in_child(self, parent_pid: int) -> None:
        """In a forked child: abandon the parent's loop, fail what was in flight, start anew on first use."""
        self._start_lock = threading.Lock()
        if self._loop is not None:
            _abandon(self._loop)
        self._loop, self._thread = None, None
        orphans, self._in_flight = self._in_flight, set()
        for future in list(orphans):  # failing one removes it from the set
            fail_inherited_future(future, parent_pid)


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


class ForkSafeLock:
    """A ``threading.Lock`` that is fresh (unlocked) in a forked child, where the thread that may have held it at
    the fork does not exist."""

    __slots__ = ("_lock", "__weakref__")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _LOCKS.add(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    def _reinit(self) -> None:
        self._lock = threading.Lock()


def after_fork_in_child(owner: object, reset: Callable[[], object]) -> None:
    """Call ``reset`` in a forked child while ``owner`` is alive (e.g. a holder dropping its parent's per-loop
    clients). ``reset`` must be a bound method of ``owner`` or hold no reference to it."""
    method = weakref.WeakMethod(reset) if hasattr(reset, "__self__") else (lambda: reset)
    _CALLBACKS[:] = [(alive, call) for alive, call in _CALLBACKS if alive() is not None]  # forget dead owners
    _CALLBACKS.append((weakref.ref(owner), method))  # type: ignore[arg-type]


def loop_is_usable(loop: asyncio.AbstractEventLoop) -> bool:
    """True if work can be handed to ``loop`` from this process: it runs, is not closed, and is not a loop
    inherited from a parent process."""
    return loop not in _ABANDONED and loop.is_running() and not loop.is_closed()


_LIVE: weakref.WeakSet[BackgroundLoop] = weakref.WeakSet()
_LOCKS: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()
_CALLBACKS: list[tuple[weakref.ref[object], Callable[[], Callable[[], object] | None]]] = []
_ABANDONED: list[asyncio.AbstractEventLoop] = []
"""Loops inherited from a parent: referenced for the life of the process, so that no finaliser of theirs (a
connector closing its transports, a TLS close_notify) ever acts on sockets the parent still uses."""

_runtime: BackgroundLoop | None = None
_lock = threading.Lock()
_forking_loop: asyncio.AbstractEventLoop | None = None


def get_runtime() -> BackgroundLoop:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = BackgroundLoop()
        return _runtime


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The calling thread's running event loop, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _abandon(loop: asyncio.AbstractEventLoop) -> None:
    """Cut an inherited loop off from the parent's kernel state and mark it not running (in this process)."""
    if loop in _ABANDONED:
        return
    _ABANDONED.append(loop)
    selector = getattr(loop, "_selector", None)
    fileno = getattr(selector, "fileno", None)
    if callable(fileno) and hasattr(select, "epoll"):
        try:
            # The epoll instance is shared with the parent: any unregister from here would remove the parent's
            # sockets from it. Point this fd number at a private, empty epoll instead.
            private = select.epoll()
            os.dup2(private.fileno(), fileno())
            private.close()
        except (OSError, ValueError):
            pass
    get_map = getattr(selector, "get_map", None)
    if callable(get_map):
        release_inherited_fds(list(get_map()))
    # BaseEventLoop.is_running() reads _thread_id; the thread it names does not exist in this process.
    if getattr(loop, "_thread_id", None) is not None:
        loop._thread_id = None  # type: ignore[attr-defined]


def release_inherited_fds(fds: list[int]) -> None:
    """In a forked child: drop this process's references to the parent's sockets (connections, a listening
    socket) without closing anything of the parent's.

    A socket is shut only when its last descriptor closes, and a child holds a copy of every one the parent had:
    while the child lives, a connection the parent closes sends no FIN (its peer sees it open), one its peer
    closed stays in CLOSE-WAIT, and a listening socket keeps its port taken after the parent's server stopped,
    queueing connections nobody will ever accept. Each fd number is pointed at ``/dev/null`` rather than closed:
    the inherited Python objects still name these numbers, and a number closed here could be reused by a new
    socket that a late finaliser of theirs would then close."""
    if not fds:
        return
    try:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        for fd in fds:
            if fd != null:
                try:
                    os.dup2(null, fd, inheritable=False)
                except OSError:
                    pass
    finally:
        os.close(null)


def release_inherited_loop(loop: asyncio.AbstractEventLoop) -> None:
    """In a forked child: make a loop that ran in a thread of the parent inert here (its epoll instance made
    private, its sockets released with :func:`release_inherited_fds`, marked not running). For objects outside
    this module that own such a loop, e.g. ``tinkex.testing.LocalServer``, from an :func:`after_fork_in_child`
    reset."""
    _abandon(loop)


def fail_inherited_future(future: concurrent.futures.Future[Any], parent_pid: int) -> None:
    """In a forked child: fail a future that belonged to work of the parent (unless it is done)."""
    # The future's condition may have been held by a thread of the parent at the fork: give it a fresh one.
    future._condition = threading.Condition()  # type: ignore[attr-defined]
    if not future.done():
        try:
            future.set_exception(InFlightAtForkError(parent_pid))
        except concurrent.futures.InvalidStateError:
            pass


FORK_WAIT_LIMIT_S = 2.0
"""How long a fork waits for the background loops to finish the step they are running (see ``_before_fork``)."""


def _before_fork() -> None:
    global _forking_loop
    _forking_loop = running_loop()
    _wait_for_loops_between_steps(FORK_WAIT_LIMIT_S)


def _wait_for_loops_between_steps(limit_s: float) -> None:
    """Let each background loop thread finish the step it is in (up to ``limit_s``) before another thread forks.

    The child gets a copy of the process as it is at the fork, mid-step included: a module the loop thread was
    importing stays half-initialised there (later imports of it fail), and a subprocess it was starting (``platform``
    runs ``uname`` for the first request's headers) has its error pipe copied into the child, which then holds it
    open as long as it lives while the loop thread waits on that pipe for good. Between steps, blocked in the
    selector, the loop holds nothing of the kind. A ``ProcessPoolExecutor`` forks its workers right while the first
    request is being prepared, so this is the usual case, not a rare one."""
    me = threading.get_ident()
    loops = [
        (thread, loop)
        for runtime in list(_LIVE)
        if (thread := runtime._thread) is not None
        and (loop := runtime._loop) is not None
        and thread.ident not in (None, me)
        and thread.is_alive()
    ]
    if not loops:
        return
    deadline = time.monotonic() + limit_s
    while True:
        frames = sys._current_frames()
        if all(_between_steps(frames.get(thread.ident), loop) for thread, loop in loops):
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(0.001)


def _between_steps(frame: Any, loop: asyncio.AbstractEventLoop) -> bool:
    """The loop thread waits for I/O in its selector (or is gone) with no callback due: it runs nothing now, and
    work just handed to it (a request submitted right before the fork) has gone as far as it can without I/O."""
    if frame is None:
        return True
    waiting = frame.f_code.co_name == "select" and frame.f_code.co_filename.endswith("selectors.py")
    return waiting and not getattr(loop, "_ready", ())


def _after_fork_in_parent() -> None:
    global _forking_loop
    _forking_loop = None


def _after_fork_in_child() -> None:
    global _lock, _forking_loop
    parent_pid = os.getppid()
    _lock = threading.Lock()
    for lock in list(_LOCKS):
        lock._reinit()
    if _forking_loop is not None:  # forked from inside a running loop: that loop does not run here
        _abandon(_forking_loop)
        _forking_loop = None
    for runtime in list(_LIVE):
        runtime._reset_in_child(parent_pid)
    alive = []
    for owner, method in _CALLBACKS:
        reset = method()
        if owner() is None or reset is None:
            continue
        alive.append((owner, method))
        try:
            reset()
        except Exception:  # noqa: BLE001 - one broken reset must not stop the others (fork hooks cannot raise)
            logging.getLogger("tinkex").exception("a reset after fork failed")
    _CALLBACKS[:] = alive


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
