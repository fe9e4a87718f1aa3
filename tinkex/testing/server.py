"""LocalServer: the local Tinker-compatible server on 127.0.0.1, running in a background thread.

    with LocalServer(future_latency=0.05, faults=[FaultRule(endpoint="asample", status=503)]) as server:
        client = tinkex.Client(base_url=server.base_url, api_key="tml-local")
        ...
        assert not server.ledger.duplicates_executed()

The server has its own thread and event loop, so it keeps answering while the caller blocks, and it works the
same under ``async with`` from any async framework. Tests read the ledger and add fault rules from their own
thread; anything that touches model state goes through :meth:`LocalServer.call`, which runs on the server loop.

With ``state_dir`` a server restarted on the same directory (this object again, or a new process) carries on where
the last one stopped or was killed: the same runs and checkpoints, futures issued before answer their results, a
re-sent write is answered from the replay cache, the ledger lists what ran before, and no id repeats
(:mod:`tinkex.testing.write_journal`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import dataclasses
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import anyio.to_thread

from ..runtime import after_fork_in_child, release_inherited_fds, release_inherited_loop
from .app import TinkerApp
from .config import ServerConfig
from .dedup import ReplayCache
from .faults import FaultRule, Faults
from .futures_store import FutureStore
from .handlers import TinkerApi
from .hosting import Connections, bind_socket, hypercorn_config, serve_asgi
from .ledger import Ledger
from .registry import Registry
from .tiny_lm import ModelState
from .write_journal import Restored, WriteJournal, next_generation

__all__ = ["LocalServer"]

T = TypeVar("T")
_START_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class _State:
    """What one start serves from: read from the state directory, if any, before the server thread starts."""

    registry: Registry
    generation: int = 0
    journal: WriteJournal | None = None
    restored: Restored | None = None


class LocalServer:
    """A running (after :meth:`start` or ``with``) local Tinker server. Options are :class:`ServerConfig` fields."""

    def __init__(self, config: ServerConfig | None = None, *, faults: Iterable[FaultRule] = (), **options: Any) -> None:
        base = config if config is not None else ServerConfig()
        self.config = dataclasses.replace(base, **options) if options else base
        self.faults = Faults(faults, seed=self.config.seed)
        self.ledger = Ledger()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._api: TinkerApi | None = None
        self._port: int | None = None
        self._listening_fd: int | None = None
        after_fork_in_child(self, self._release_after_fork)

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"LocalServer({where})"

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("LocalServer is not started; use `with LocalServer() as server` or start()")
        scheme = "https" if self.config.tls else "http"
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{scheme}://{host}:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("LocalServer is not started")
        return self._port

    # lifecycle

    def start(self) -> LocalServer:
        if self._thread is not None:
            raise RuntimeError("LocalServer is already started")
        sock = bind_socket(self.config.host, self.config.port)
        try:
            state = self._load_state()
        except BaseException:
            sock.close()
            raise
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._port = sock.getsockname()[1]
        self._listening_fd = sock.fileno()
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(sock, state, started),
            name=f"tinkex-local-server-{self._port}",
            daemon=True,
        )
        self._thread.start()
        try:
            started.result(timeout=_START_TIMEOUT)
        except BaseException:
            self._thread.join(timeout=_START_TIMEOUT)
            self._thread, self._port = None, None
            raise
        return self

    def stop(self) -> None:
        """Stop serving; requests still running get ``graceful_timeout`` seconds, then their connections are cut."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=self.config.graceful_timeout + _START_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"LocalServer thread {thread.name} did not stop")
        self._thread = self._loop = self._stop = self._api = None
        self._port = self._listening_fd = None

    def _release_after_fork(self) -> None:
        """In a forked child (a worker process started while this server runs): the server goes on in the
        parent only. The child lets go of its copies of the listening socket and of every connection, which would
        otherwise keep the port taken after the parent stops the server and keep closed connections half-open
        (CLOSE-WAIT) for as long as the child lives; and it never touches the server loop's epoll instance."""
        if self._loop is not None:
            release_inherited_loop(self._loop)
        if self._listening_fd is not None:
            release_inherited_fds([self._listening_fd])

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> LocalServer:
        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)

    def _load_state(self) -> _State:
        """The registry, and with a state directory what the earlier runs on it did (see ``write_journal``)."""
        state_dir = self.config.state_dir
        if state_dir is None:
            return _State(Registry(tuple(self.config.base_models), self.config.seed))
        generation = next_generation(state_dir)
        registry = Registry(tuple(self.config.base_models), self.config.seed, state_dir, generation)
        restored = WriteJournal.read(state_dir, registry.journal_position)
        journal = WriteJournal(state_dir, restored.position)
        if restored.newly_undone:
            journal.record_undone(min(restored.newly_undone), max(restored.newly_undone))
        self.ledger.restore_executions(restored.executions)
        return _State(registry, generation, journal, restored)

    def _thread_main(self, sock: Any, state: _State, started: concurrent.futures.Future[None]) -> None:
        try:
            asyncio.run(self._serve(sock, state, started))
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread, or it would be lost
            if not started.done():
                started.set_exception(exc)
            else:
                raise
        finally:
            sock.close()
            if state.journal is not None:
                state.journal.close()

    async def _serve(self, sock: Any, state: _State, started: concurrent.futures.Future[None]) -> None:
        id_prefix = f"req-{state.generation}." if state.generation else "req-"
        futures = FutureStore(ttl=self.config.future_ttl, id_prefix=id_prefix)
        replay = ReplayCache()
        api = TinkerApi(
            self.config, state.registry, futures, self.faults, self.ledger, replay, state.journal, state.generation
        )
        if state.restored is not None:
            state.restored.install(futures, replay, api.admin_endpoints.journal)
        if state.journal is not None:
            api.admin_endpoints.journal.listener = state.journal.record_account
        connections = Connections()
        app = TinkerApp(api, connections)
        options = hypercorn_config(self.config.certfile, self.config.keyfile, self.config.graceful_timeout)
        self._loop, self._stop, self._api = asyncio.get_running_loop(), asyncio.Event(), api
        serving = asyncio.ensure_future(serve_asgi(app, sock, options, connections, self._stop, futures.close))
        await asyncio.sleep(0)  # let serve_asgi start, so a bad TLS setup fails start() rather than later
        if serving.done():
            serving.result()
        started.set_result(None)
        await serving

    # access to server state from the test's thread

    def call(self, function: Callable[[TinkerApi], T]) -> T:
        """Run ``function(api)`` on the server loop and return its result (state is only touched there)."""
        loop, api = self._loop, self._api
        if loop is None or api is None:
            raise RuntimeError("LocalServer is not running")
        if threading.current_thread() is self._thread:
            return function(api)
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(function(api))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                result.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return result.result(timeout=_START_TIMEOUT)

    def set_corrupted(self, training_run_id: str, corrupted: bool = True) -> None:
        """Mark a training run corrupted: REST reports it and its training futures fail (category server)
        until a checkpoint is loaded into it."""

        def mark(api: TinkerApi) -> None:
            api.registry.run(training_run_id).corrupted = corrupted

        self.call(mark)

    def model_state(self, model_id: str) -> ModelState:
        """A copy of a training model's adapter and optimizer state (``step``, ``pending_backward``, ``params``)."""
        return self.call(lambda api: copy.deepcopy(api.registry.run(model_id).state))

    def telemetry_batches(self) -> list[Any]:
        """Every ``TelemetrySendRequest`` received, decoded."""
        return self.call(lambda api: list(api.telemetry_batches))
