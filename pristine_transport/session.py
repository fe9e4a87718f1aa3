"""Session lifecycle: create a session, keep it alive with heartbeats, end it. Driven by a manifest's ``session``
block; knows no endpoint by name.

The heartbeat runs either as a task on the caller's loop (:meth:`SessionLifecycle.start_heartbeat`) or in a
thread of its own with its own loop and client (:class:`BackgroundHeartbeat`). The thread variant exists because
CPU-heavy user code, or a user event loop blocked by synchronous work, starves any task on that loop: the session
would stop beating and expire while the user's own code is the only thing running (docs/design.md, "What users ran
into" #4).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

from pristine_transport.client import ManifestClient
from pristine_transport.errors import APIStatusError
from pristine_transport.logs import get_logger
from pristine_transport.manifest import SessionSpec
from pristine_transport.request import NOT_GIVEN

__all__ = ["BackgroundHeartbeat", "SessionLifecycle", "run_heartbeat"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


async def run_heartbeat(
    client: ManifestClient,
    spec: SessionSpec,
    session_id: str,
    *,
    logger: logging.Logger,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Beat every ``interval_s`` until cancelled, or until the server answers ``stop_on_status``.

    A failed beat never ends the loop. Once ``warning_after_s`` have passed since the last success, every failed
    beat logs a WARNING.
    """
    last_success = clock()
    while True:
        await sleep(spec.interval_s)
        try:
            await client.call(spec.heartbeat_endpoint, json={spec.id_field: session_id})
        except APIStatusError as exc:
            if spec.stop_on_status is not None and exc.status_code == spec.stop_on_status:
                logger.info("Session %s has finished; stopping its heartbeat loop.", session_id)
                return
            failure: Exception = exc
        except Exception as exc:  # noqa: BLE001 - a heartbeat must outlive any single failure
            failure = exc
        else:
            last_success = clock()
            continue
        since_success_s = clock() - last_success
        detail = client.redactor.text(str(failure) or type(failure).__name__)
        if since_success_s < spec.warning_after_s:
            logger.debug("Session %s heartbeat failed: %s", session_id, detail)
            continue
        logger.warning(
            "Session heartbeat failed for %.0f seconds for session %s. Last exception: %s.\n"
            "Your connection may be unreliable or the server is down. If this persists, the session will be "
            "terminated.",
            since_success_s,
            session_id,
            detail,
        )


class SessionLifecycle:
    """``create()`` a session, ``start_heartbeat()`` on the current loop, ``stop()`` to cancel it and end the
    session on the server (when the manifest names an end endpoint)."""

    def __init__(
        self,
        client: ManifestClient,
        spec: SessionSpec | None = None,
        *,
        logger: logging.Logger | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        spec = spec if spec is not None else client.manifest.session
        if spec is None:
            raise ValueError(f"manifest {client.manifest.name!r} has no session block")
        self.client = client
        self.spec = spec
        self._logger = logger if logger is not None else get_logger("session")
        self._clock = clock
        self._sleep = sleep
        self._session_id: str | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def session_id(self) -> str:
        if self._session_id is None:
            raise RuntimeError("no session yet: call `await create(...)` first")
        return self._session_id

    async def create(self, body: Any) -> str:
        """POST the create endpoint (its own retries apply) and keep the session id it answers."""
        answer = await self.client.call(self.spec.create_endpoint, json=body)
        session_id = answer.get(self.spec.id_field) if isinstance(answer, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(
                f"{self.spec.create_endpoint} answered without a session id in field {self.spec.id_field!r}"
            )
        self._session_id = session_id
        return session_id

    def start_heartbeat(self) -> None:
        """Start beating on the current event loop (once; later calls do nothing while it runs)."""
        if self._heartbeat is not None and not self._heartbeat.done():
            return
        self._heartbeat = asyncio.get_running_loop().create_task(
            run_heartbeat(
                self.client, self.spec, self.session_id, logger=self._logger, clock=self._clock, sleep=self._sleep
            ),
            name=f"pristine heartbeat {self.session_id}",
        )

    @property
    def heartbeat_running(self) -> bool:
        return self._heartbeat is not None and not self._heartbeat.done()

    async def stop(self, body: Any = None) -> None:
        """Cancel the heartbeat and wait for it, then POST the end endpoint if the manifest has one. The session
        id goes into the path when the endpoint's path has ``{id_field}``, else into the JSON body."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        end = self.spec.end_endpoint
        if end is None or self._session_id is None:
            return
        id_field = self.spec.id_field
        if "{" + id_field + "}" in self.client.manifest.endpoint(end).path:
            json = body if body is not None else NOT_GIVEN
            await self.client.call(end, path_params={id_field: self._session_id}, json=json)
        else:
            await self.client.call(end, json={**(body or {}), id_field: self._session_id})


class BackgroundHeartbeat:
    """The heartbeat loop in a daemon thread with its own event loop and its own client.

    ``client_factory`` is called in that thread, so the client's connections belong to the thread's loop; the
    factory is dropped once called, so the thread keeps nothing of its owner but that client (an owner that wants
    to be garbage-collected while its session beats must give a factory, and a client, that do not refer to it).
    The beat keeps going while the user's loop is blocked or busy; CPU-bound Python code in other threads only
    delays it by the interpreter's switch interval.

    A factory that is a bound method makes its object the heartbeat's owner: when the owner is garbage-collected
    while the beat runs (an SDK client dropped without ``close()``), the heartbeat warns (``ResourceWarning``, as an
    unclosed file does) and stops, instead of beating for a session nobody can use any more.
    """

    def __init__(
        self,
        client_factory: Callable[[], ManifestClient],
        spec: SessionSpec,
        session_id: str,
        *,
        logger: logging.Logger | None = None,
    ) -> None:
        self._client_factory: Callable[[], ManifestClient] | None = client_factory
        self.spec = spec
        self.session_id = session_id
        self._logger = logger if logger is not None else get_logger("session")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._cancelled = threading.Event()
        self._startup_error: BaseException | None = None
        owner = getattr(client_factory, "__self__", None)
        if owner is not None:
            with suppress(TypeError):  # an owner without weak-reference support cannot be watched
                weakref.finalize(owner, _owner_collected, weakref.ref(self))

    def start(self, *, wait: bool = True) -> None:
        """Start the thread. With ``wait``, return once its loop runs the heartbeat (or raise what stopped it
        starting); without, return at once (a failure to start is logged): the caller, often an event loop, is
        never held up by building the thread's client."""
        if self._thread is not None:
            raise RuntimeError("BackgroundHeartbeat.start() called twice")
        self._thread = threading.Thread(target=self._run, name=f"pristine-heartbeat-{self.session_id}", daemon=True)
        self._thread.start()
        if not wait:
            return
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def cancel(self) -> None:
        """Ask the heartbeat to stop, without waiting (safe from any thread, a finalizer included); the thread
        closes its client and ends by itself."""
        self._cancelled.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with suppress(RuntimeError):  # the loop already finished (e.g. stop_on_status ended the beat)
                loop.call_soon_threadsafe(task.cancel)

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Cancel the heartbeat, close the thread's client and join the thread. True if the thread ended."""
        if self._thread is None:
            return True
        self.cancel()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _owner_collected(self) -> None:
        if self._thread is None or self._cancelled.is_set() or not self._thread.is_alive():
            return
        warnings.warn(
            f"the owner of session {self.session_id}'s heartbeat was garbage-collected without being closed; "
            "stopping the heartbeat",
            ResourceWarning,
            stacklevel=2,
        )
        self.cancel()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start() or logged; a thread must not die silently
            if not self._ready.is_set():
                self._startup_error = exc
                self._ready.set()
            self._logger.error(
                "background heartbeat of session %s stopped: %s", self.session_id, type(exc).__name__, exc_info=exc
            )

    async def _main(self) -> None:
        factory, self._client_factory = self._client_factory, None
        assert factory is not None
        client = factory()
        del factory  # this coroutine lives as long as the beat: it must not keep the factory's owner alive
        try:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(run_heartbeat(client, self.spec, self.session_id, logger=self._logger))
            self._ready.set()
            if self._cancelled.is_set():  # cancelled before the task existed
                self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        finally:
            await client.aclose()


def _owner_collected(heartbeat: weakref.ref[BackgroundHeartbeat]) -> None:
    found = heartbeat()
    if found is not None:
        found._owner_collected()
