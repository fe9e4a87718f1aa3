"""What one ``tinkex.Client`` and the clients it creates share.

The config, the manifest, the session, the id counters, and one :class:`ManifestClient` (with its
:class:`FutureResolver`) per event loop: async methods run on the caller's loop, sync ones on the background
runtime loop, and httpx connection pools and anyio primitives belong to the loop that made them.

Per-client deadlines (``tinkex.Client(deadlines=...)``, the config's ``deadlines``) apply to every request of the
per-loop clients: the futures (through the :class:`FutureResolver`) and the plain calls alike (session and sampler
creation, REST calls), so each write gets the official retry budget, not only inside a ``deadlines(...)`` scope.

The wire dialect is settled before the session: forced by the config, or asked of the server with the
``client/config`` handshake (the official 0.38 SDK's first request; a 404 or 405 means the JSON dialect of 0.16,
silently), once per holder. A 0.38 server's ``client/dynamic_config`` is read next and refreshed in the background
(:mod:`tinkex.wire.dynamic_config`); every request sent after a refresh follows its flags.

The session is created on first use (as the newest official SDK does), once, whichever loop asks first. Its
heartbeat runs in a thread of its own with its own loop and connection, so user code that holds the CPU or
blocks its event loop for minutes cannot cost the session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.trace import TracerProvider

from pristine_transport.client import ManifestClient
from pristine_transport.errors import APIStatusError
from pristine_transport.futures import FutureResolver
from pristine_transport.layers.pool_limiter import BytesSemaphore
from pristine_transport.layers.retry import RuleEpisodes
from pristine_transport.layers.telemetry import Telemetry as TracerLookup
from pristine_transport.manifest import Manifest
from pristine_transport.redaction import Redactor
from pristine_transport.session import BackgroundHeartbeat

from .call_spans import TRACER_NAME as CALL_TRACER_NAME
from .config import ClientConfig
from .credentials import holder_auth
from .deprecation import deprecation_notices
from .request_size import SIZE_ESTIMATORS
from .runtime import BackgroundLoop, ForkSafeLock, after_fork_in_child, get_runtime, loop_is_usable, running_loop
from .sdk_method import detached
from .telemetry import Telemetry
from .types import ClientConfigResponse, ClientDynamicConfigResponse, CreateSessionRequest, CreateSessionResponse
from .wire import dynamic_config, sampling_flags, server_limits
from .wire.dialect import (
    HANDSHAKE_SDK_VERSION,
    RESULT_CODECS,
    SDK_VERSIONS,
    WireDialect,
    dialect_of_handshake,
    json_encoder,
)

__all__ = ["Holder", "LoopClients", "ServerWire", "fresh_seq_id_base"]

logger = logging.getLogger("tinkex")

TransportFactory = Callable[[], httpx.AsyncBaseTransport]


@dataclass(frozen=True)
class ServerWire:
    """What the handshake settled: the dialect, and the server's flags (``None`` when the dialect was forced or
    the server has no ``client/config``, where the official defaults apply)."""

    dialect: WireDialect
    config: ClientConfigResponse | None


@dataclass
class LoopClients:
    http: ManifestClient
    futures: FutureResolver
    closer: asyncio.Task[None] | None = None
    """On a user loop: the task that closes these clients once cancelled (by ``close`` or at the loop's end)."""

    async def aclose(self) -> None:
        if self.closer is not None and self.closer is not asyncio.current_task():
            self.closer.cancel()
            await asyncio.gather(self.closer, return_exceptions=True)
            return
        # Polling first: a poll the server holds open would otherwise outlive the client by up to its timeout.
        await self.futures.aclose()
        await self.http.aclose()


def fresh_seq_id_base() -> int:
    """The first id of a random block of a billion: a copy of a client (unpickled, or inherited through fork)
    numbers its requests from one, so copies never collide with one another or with the original."""
    return 1_000_000_000 * (uuid.uuid4().int % 1_000_000_000 + 1)


class Holder:
    def __init__(
        self,
        config: ClientConfig,
        manifest: Manifest,
        *,
        transport_factory: TransportFactory | None = None,
        session_id: str | None = None,
        env: Mapping[str, str] | None = None,
        tracer_provider: TracerProvider | None = None,
        display_name: str | None = None,
    ) -> None:
        self.config = config
        self.display_name = display_name
        self.manifest = manifest
        self.runtime: BackgroundLoop = get_runtime()
        self.redactor = Redactor(secret_values=[config.api_key] if config.api_key else [])
        self.auth = holder_auth(self)  # the credential each request carries (tinkex.credentials)
        self.notices = deprecation_notices()  # the server's deprecation notes, once per client
        # The retry rules' episodes every client of this holder shares: one billing incident, warned once a minute.
        self.rule_episodes = RuleEpisodes()
        self._transport_factory = transport_factory
        self._tracer = tracer_provider.get_tracer("pristine_transport") if tracer_provider is not None else None
        # The spans of public calls (tinkex.call_spans): this client's provider, else a configured global one.
        self.tracing = TracerLookup(
            tracer=tracer_provider.get_tracer(CALL_TRACER_NAME) if tracer_provider is not None else None,
            tracer_name=CALL_TRACER_NAME,
        )
        self._env = os.environ if env is None else env
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopClients] = weakref.WeakKeyDictionary()
        self._lock = ForkSafeLock()  # a thread of the parent may hold it at a fork
        self._session: concurrent.futures.Future[str] | None = None
        self._wire: concurrent.futures.Future[ServerWire] | None = None
        if config.dialect == "0.16":  # 0.16 never asked for flags; a forced 0.38 still does (JWT, limits)
            forced: concurrent.futures.Future[ServerWire] = concurrent.futures.Future()
            forced.set_result(ServerWire(config.dialect, None))
            self._wire = forced
        self._heartbeat: BackgroundHeartbeat | None = None
        # The floor is read here, not bound at import, so a test can shorten it for one client. The refresh task
        # must not keep a dropped client alive (its heartbeat would beat on): it reaches the holder through a weak
        # reference, and the holder's finalizer stops it.
        self.dynamic = dynamic_config.DynamicConfig(
            _weak_fetch(weakref.ref(self)), floor_s=dynamic_config.MIN_REFRESH_INTERVAL_S
        )
        weakref.finalize(self, _stop_refreshing, self.runtime.loop, self.dynamic)
        self.telemetry = Telemetry(self)
        self._model_seq = itertools.count()
        self._sampling_seq = itertools.count()
        after_fork_in_child(self, self._renumber_after_fork)
        self._closed = False
        if session_id is not None:  # a shadow holder (an unpickled SamplingClient) joins an existing session
            done: concurrent.futures.Future[str] = concurrent.futures.Future()
            done.set_result(session_id)
            self._session = done
            self.runtime.run(self._start_background(session_id))

    # ids -------------------------------------------------------------------------------------------------
    def next_model_seq_id(self) -> int:
        with self._lock:
            return next(self._model_seq)

    def next_sampling_session_seq_id(self) -> int:
        with self._lock:
            return next(self._sampling_seq)

    def _renumber_after_fork(self) -> None:
        """In a forked child: new models and samplers are numbered from fresh random blocks. The child inherits the
        parent's counters, and the server answers a creation whose seq_id it has seen from its replay cache: the
        parent's next training or sampling client would silently be the child's."""
        self._model_seq = itertools.count(fresh_seq_id_base())
        self._sampling_seq = itertools.count(fresh_seq_id_base())

    # per-loop clients ------------------------------------------------------------------------------------
    def new_manifest_client(self) -> ManifestClient:
        """A plain client of this holder's config (the heartbeat's: its single-attempt policy needs no deadlines)."""
        return ManifestClient(**self._manifest_client_arguments())

    def new_deadlined_client(self) -> ManifestClient:
        """A client bounding every request that declares no deadlines by this holder's (the per-loop clients)."""
        return ManifestClient(deadlines=self.config.deadlines, **self._manifest_client_arguments())

    def _manifest_client_arguments(self) -> dict[str, Any]:
        return dict(
            # The server's dispatch byte budgets as pool limits and its stuck-detection switch, for clients made once
            # the handshake answered.
            manifest=sampling_flags.manifest_with_stuck_detection(
                flags := self.known_server_flags(), server_limits.manifest_with_server_limits(flags, self.manifest)
            ),
            rule_episodes=self.rule_episodes,
            base_url=self.config.base_url,
            config=self.config.transport_config(),
            env=self._env,
            redactor=self.redactor,
            tracer=self._tracer,
            base_transport=self._transport_factory() if self._transport_factory else None,
            size_estimators=SIZE_ESTIMATORS,
            on_retry=self.telemetry.on_retry,
            http_client_kwargs={"headers": dict(self.config.default_headers)} if self.config.default_headers else None,
            token_auth=self.auth.token_auth,
            notices=self.notices,
            # Each body in the shapes of the server's dialect. Weakly: the heartbeat's client outlives a dropped
            # client's last reference, and must not keep it alive.
            json_encoder=json_encoder(_weak_dialect(weakref.ref(self))),
        )

    def clients(self) -> LoopClients:
        """The HTTP client and future resolver of the running event loop."""
        if self._closed:
            raise RuntimeError("this tinkex client is closed")
        loop = asyncio.get_running_loop()
        found = self._per_loop.get(loop)
        if found is None:
            http = self.new_deadlined_client()
            futures = FutureResolver(
                http,
                tracer=self._tracer,
                deadlines=self.config.deadlines,
                result_codecs=RESULT_CODECS,
                response_budget=self._response_budget(),
            )
            found = LoopClients(http=http, futures=futures)
            self._per_loop[loop] = found
            if loop is not self.runtime.loop:
                found.closer = loop.create_task(
                    self._close_when_cancelled(loop, found), name="tinkex: close this loop's connections"
                )
        return found

    async def _close_when_cancelled(self, loop: asyncio.AbstractEventLoop, clients: LoopClients) -> None:
        """Waits until cancelled, then closes ``clients``: ``asyncio.run`` cancels leftover tasks when it ends, so a
        user loop that finishes before ``close()`` still closes its connections."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if self._per_loop.get(loop) is clients:
                del self._per_loop[loop]
            await clients.aclose()
            raise

    # session ---------------------------------------------------------------------------------------------
    async def session_id(self) -> str:
        with self._lock:
            if self._session is None or (self._session.done() and self._session.exception() is not None):
                self._session = detached(self.runtime.submit, self._create_session())  # not the caller's x-sdk-method
            pending = self._session
        return await asyncio.wrap_future(pending)

    # wire dialect ----------------------------------------------------------------------------------------
    async def server_wire(self) -> ServerWire:
        """The dialect this client speaks and the server's flags: the handshake's answer (asked once; a failed
        handshake is asked again by the next caller), its dialect replaced by a forced one; forced 0.16: no
        handshake, no flags."""
        settled = self._settled_wire()
        if settled is not None:  # every request after the first: no lock, no wrapped future
            return settled
        with self._lock:
            if self._wire is None or (self._wire.done() and self._wire.exception() is not None):
                self._wire = detached(self.runtime.submit, self._handshake())
            pending = self._wire
        return await asyncio.wrap_future(pending)

    async def wire_dialect(self) -> WireDialect:
        return (await self.server_wire()).dialect

    async def _handshake(self) -> ServerWire:
        """``POST client/config``, retried like any request (timeouts, 5xx); its answer names the dialect."""
        try:
            # A one-off client, as the official SDK's (its own pool): this loop's clients are then made after the
            # answer, with the pool limits the server sets (see server_limits.manifest_with_dispatch_budgets).
            async with self.new_deadlined_client() as once:
                flags = await once.call(
                    "client_config", json={"sdk_version": HANDSHAKE_SDK_VERSION}, result_type=ClientConfigResponse
                )
        except APIStatusError as exc:
            if exc.status_code in (404, 405):
                return ServerWire(self.config.dialect or dialect_of_handshake(exc.status_code), None)
            raise
        return ServerWire(self.config.dialect or dialect_of_handshake(200), flags)

    def _response_budget(self) -> BytesSemaphore | None:
        """The response-bytes budget of a new resolver: the server's flag once the handshake gave it, else the
        manifest's (None here lets the resolver take the manifest's)."""
        found = self._wire
        settled = found is not None and found.done() and not found.cancelled() and found.exception() is None
        flags = found.result().config if settled and found is not None else None
        if flags is None:
            return None
        size = server_limits.response_budget_bytes(flags, self.manifest)
        return BytesSemaphore(size) if size is not None else None

    def _apply_server_limits(self) -> None:
        """The resolvers made before the handshake answered (its own loop's, at least) take the server's budget;
        none of them holds any bytes yet, since no future exists before the session."""
        budget_of = self._response_budget
        for clients in list(self._per_loop.values()):
            current = clients.futures.response_budget
            if current is None or current.available == current.budget:
                fresh = budget_of()
                if fresh is not None:
                    clients.futures.response_budget = fresh

    async def _fetch_dynamic_config(self) -> ClientDynamicConfigResponse:
        return await self.clients().http.call(
            "client_dynamic_config", json={"sdk_version": HANDSHAKE_SDK_VERSION}, result_type=ClientDynamicConfigResponse
        )

    def dynamic_config(self) -> ClientDynamicConfigResponse:
        """The server's latest ``client/dynamic_config`` (the official defaults for a 0.16 server, or before the
        session exists); read it when acting, so a refresh applies to what is sent after it."""
        return self.dynamic.current

    def _settled_wire(self) -> ServerWire | None:
        found = self._wire
        if found is None or not found.done() or found.cancelled() or found.exception() is not None:
            return None
        return found.result()

    def known_wire_dialect(self) -> WireDialect | None:
        """The dialect if it is settled (never asks the server)."""
        settled = self._settled_wire()
        return None if settled is None else settled.dialect

    def known_server_flags(self) -> ClientConfigResponse | None:
        """The server's ``client/config`` flags if the handshake settled with them (never asks the server). Settled
        before any training or sampling client exists, since their creation needs the session."""
        settled = self._settled_wire()
        return None if settled is None else settled.config

    async def _create_session(self) -> str:
        assert self.manifest.session is not None, "the manifest has no session block"
        dialect = await self.wire_dialect()  # the handshake is a client's first request, as the official SDK's is
        self._apply_server_limits()
        if dialect == "0.38":
            # Then the dynamic flags, refreshed on this (the runtime's) loop. Not inside the handshake: a request
            # sent there would wait for the handshake's own answer (the credential layer asks it for the flags).
            await self.dynamic.start()
        request = CreateSessionRequest(
            tags=list(self.config.tags),
            user_metadata=dict(self.config.user_metadata or {}),
            sdk_version=SDK_VERSIONS[dialect],
            project_id=self.config.project_id,
            **({"display_name": self.display_name} if self.display_name is not None else {}),  # [0.38] only when set
        )
        response = await self.clients().http.call(
            self.manifest.session.create_endpoint, json=request, result_type=CreateSessionResponse
        )
        for level, message in (
            (logging.INFO, response.info_message),
            (logging.WARNING, response.warning_message),
            (logging.ERROR, response.error_message),
        ):
            if message:
                logger.log(level, message)
        await self._start_background(response.session_id)
        return response.session_id

    async def _start_background(self, session_id: str) -> None:
        assert self.manifest.session is not None
        heartbeat = BackgroundHeartbeat(self.new_manifest_client, self.manifest.session, session_id)
        with self._lock:  # a close() racing a session creation (still under way in the background) wins
            if self._closed:
                return
            self._heartbeat = heartbeat
            heartbeat.start(wait=False)  # never hold up the caller (often an event loop)
        await self.telemetry.start(session_id)

    def known_session_id(self) -> str | None:
        """The session's id if it was created (never creates one)."""
        session = self._session
        if session is None or not session.done() or session.cancelled() or session.exception() is not None:
            return None
        return session.result()

    @property
    def closed(self) -> bool:
        return self._closed

    # shutdown --------------------------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Stop the heartbeat, drain telemetry, close every loop's connections. Safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            heartbeat = self._heartbeat
        if heartbeat is not None:
            heartbeat.stop(timeout)
        _stop_refreshing(self.runtime.loop, self.dynamic)
        self.telemetry.close(timeout)
        self.auth.close()  # stops renewing; the last token is still served
        for loop, clients in list(self._per_loop.items()):
            if loop_is_usable(loop):  # not an inherited parent's loop in a forked child
                closing = asyncio.run_coroutine_threadsafe(clients.aclose(), loop)
                if loop is not running_loop():
                    closing.result(timeout)
        self._per_loop.clear()

    async def aclose(self, timeout: float = 5.0) -> None:
        own = self._per_loop.pop(asyncio.get_running_loop(), None)
        if own is not None:
            await own.aclose()
        await asyncio.to_thread(self.close, timeout)


def _weak_fetch(holder: weakref.ref[Holder]) -> Callable[[], Awaitable[ClientDynamicConfigResponse]]:
    async def fetch() -> ClientDynamicConfigResponse:
        alive = holder()
        if alive is None:
            raise RuntimeError("the tinkex client was dropped")
        return await alive._fetch_dynamic_config()

    return fetch


def _stop_refreshing(loop: asyncio.AbstractEventLoop, dynamic: dynamic_config.DynamicConfig) -> None:
    if loop_is_usable(loop):
        loop.call_soon_threadsafe(dynamic.stop)


def _weak_dialect(holder: weakref.ref[Holder]) -> Callable[[], WireDialect | None]:
    def dialect_now() -> WireDialect | None:
        alive = holder()
        return alive.known_wire_dialect() if alive is not None else None

    return dialect_now
