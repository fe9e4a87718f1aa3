"""Assembly: a manifest becomes one prebuilt layer stack per endpoint behind one :class:`RouterTransport`.

Layer order, outermost first (each included only when the endpoint's manifest entry asks for it):

1. ``TelemetryLayer`` (always: the logical request's INTERNAL span, when tracing is on)
2. ``IdempotencyLayer`` (``idempotency`` true, or null and the method is not GET/HEAD/OPTIONS)
3. ``RetryLayer`` (the endpoint has an effective retry policy)
4. ``PoolLimiterLayer`` (the endpoint names a pool)
5. ``BackpressureLayer`` (``backpressure`` set)
6. ``QueueStateLayer`` (``queue_state`` true)
7. ``HeadersLayer`` (always: manifest default headers, then the endpoint's own)
8. ``ClientSpanLayer`` (always: one CLIENT span and one duration record per HTTP exchange, ``traceparent``; it sits
   beneath every layer that re-sends, so each exchange is exactly one CLIENT span)
9. ``BoundaryTransport`` (always: backend failures typed and masked, the endpoint's response size limits, echoed
   secrets masked; see ``pristine_transport.boundary``)
10. the base transport, shared by every stack

Stacks are built once, when the transport is built. Shared state lives on the router, never in globals: one
``PoolLimiter`` and one ``BackoffWindow`` per pool, one ``ProgressTracker`` per sampling-kind retry policy, one
``Telemetry`` (tracer and metric instruments, resolved on first use). An
endpoint with backpressure but no pool gets a backoff window of its own.

Routing: ``request.extensions[extensions.ENDPOINT]`` names the stack (a dict lookup). Without it, the method and
the URL path pick the endpoint whose path template matches the *end* of the path, so a base URL with a path
prefix (``https://host/services/prod``) routes the same as a bare host. A ``{param}`` first matches one path
segment; only when no template matches that way may a parameter span several segments (``weights/ckpt-1``).
When several templates match, the one that covers more of the path wins, then the one with more literal text.
Requests that match nothing go through a default stack of headers and telemetry only.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import httpx
from opentelemetry import metrics, trace

from pristine_transport import extensions
from pristine_transport.boundary import BoundaryTransport, ResponseLimits
from pristine_transport.errors import ConfigurationError
from pristine_transport.layers.backoff_window import BackoffWindow
from pristine_transport.layers.backpressure import BackpressureLayer
from pristine_transport.layers.header_list import copy_request
from pristine_transport.layers.headers import HeadersLayer, resolve_headers
from pristine_transport.layers.idempotency import IdempotencyLayer
from pristine_transport.layers.notices import ResponseNoticeLayer, ResponseNotices
from pristine_transport.layers.pool_limiter import PoolLimiter, PoolLimiterLayer
from pristine_transport.layers.queue_state import QueueStateLayer
from pristine_transport.layers.retry import ProgressTracker, RetryHook, RetryLayer, RuleEpisodes
from pristine_transport.layers.telemetry import ClientSpanLayer, Telemetry, TelemetryLayer
from pristine_transport.layers.token_auth import TokenAuth, TokenAuthLayer
from pristine_transport.manifest import (
    EndpointSpec,
    Manifest,
    RetryPolicySpec,
    TransportSpec,
    load_manifest,
)
from pristine_transport.policy import CALL_DEADLINES, Deadlines
from pristine_transport.redaction import Redactor
from pristine_transport.request import merge_headers

__all__ = ["DEFAULT_STACK", "RouterTransport", "SizeEstimator", "build_transport"]

SizeEstimator = Callable[[httpx.Request], int]

DEFAULT_STACK: Final = "default"
"""Endpoint name the default stack's spans carry."""

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PATH_PARAM = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
_ROUTE_CACHE_SIZE = 1024


def build_transport(
    manifest: Manifest | str | Path | Mapping[str, Any],
    *,
    base: httpx.AsyncBaseTransport | None = None,
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] = os.environ,
    redactor: Redactor | None = None,
    tracer: trace.Tracer | None = None,
    meter: metrics.Meter | None = None,
    attribute_namespace: str | None = None,
    size_estimators: Mapping[str, SizeEstimator] | None = None,
    on_retry: RetryHook | None = None,
    deadlines: Deadlines = CALL_DEADLINES,
    token_auth: TokenAuth | None = None,
    notices: ResponseNotices | None = None,
    rule_episodes: RuleEpisodes | None = None,
) -> RouterTransport:
    """Build every endpoint's stack over ``base`` (default: an ``httpx.AsyncHTTPTransport`` as the manifest's
    ``transport`` block says). ``on_retry`` is told of every re-send any retry layer makes. ``deadlines`` bound
    every request that declares none (neither a ``DEADLINES`` extension nor a ``with deadlines(...)`` scope).
    ``tracer`` / ``meter``: spans and HTTP client metrics (default: the global providers', when configured);
    ``attribute_namespace`` prefixes the API's own ids on spans (default: the manifest's name).
    ``token_auth`` sets each endpoint's token (``layers.token_auth``) and ``notices`` surfaces the server's notices
    once (``layers.notices``); both sit just above the headers layer, inside every retry.

    Header values are resolved now (``config`` > ``env`` > manifest default) and their secrets registered with
    ``redactor``; a missing required header or an unknown size estimator raises ``ConfigurationError``.
    """
    spec = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    redactor = redactor if redactor is not None else Redactor()
    estimators = _resolve_size_estimators(spec, size_estimators or {})
    default_headers = resolve_headers(spec.headers, config=config or {}, env=env, redactor=redactor)
    base = base if base is not None else _base_transport(spec.transport, env)

    windows = {name: BackoffWindow(recent_s=pool.recent_backoff_s) for name, pool in spec.pools.items()}
    limiters = {name: PoolLimiter(pool, windows[name], name=name) for name, pool in spec.pools.items()}
    trackers: dict[str, ProgressTracker] = {}
    episodes = rule_episodes if rule_episodes is not None else RuleEpisodes()  # one outage is one episode
    telemetry = Telemetry(
        tracer=tracer, meter=meter, namespace=attribute_namespace if attribute_namespace is not None else spec.name
    )

    def tracker_for(name: str, policy: RetryPolicySpec) -> ProgressTracker | None:
        if policy.kind == "standard":
            return None
        key = _tracker_key(spec, name, policy)
        if key not in trackers:
            trackers[key] = ProgressTracker(policy.progress_timeout_s, policy.max_in_flight)
        return trackers[key]

    def assemble(name: str, endpoint: EndpointSpec) -> httpx.AsyncBaseTransport:
        """The endpoint's stack, listed outermost first, then wrapped around the base from the inside out."""
        size_of = estimators.get(name)
        policy = spec.retry_policy_for(name)
        pool, backpressure = endpoint.pool, endpoint.backpressure
        idempotent = _wants_idempotency(endpoint)
        layers: list[Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]] = [
            lambda inner: TelemetryLayer(
                inner,
                endpoint=name,
                telemetry=telemetry,
                idempotency_header=spec.idempotency.header if idempotent else None,
            )
        ]
        if idempotent:
            layers.append(
                lambda inner: IdempotencyLayer(inner, header=spec.idempotency.header, prefix=spec.idempotency.prefix)
            )
        if policy is not None:
            progress = tracker_for(name, policy)
            buffer_body = endpoint.response != "stream"
            layers.append(
                lambda inner: RetryLayer(
                    inner,
                    policy,
                    progress=progress,
                    headers=spec.retry_headers,
                    buffer_body=buffer_body,
                    on_retry=on_retry,
                    deadlines=deadlines,
                    rule_episodes=episodes,
                )
            )
        if pool is not None:
            layers.append(lambda inner: PoolLimiterLayer(inner, limiters[pool], size_of=size_of))
        if backpressure is not None:
            window = windows[pool] if pool is not None else BackoffWindow()
            layers.append(lambda inner: BackpressureLayer(inner, backpressure, window, size_of=size_of))
        if endpoint.queue_state:
            layers.append(lambda inner: _queue_state_layer(inner, spec))
        if notices is not None:  # the server's notices, once per client (pristine_transport.layers.notices)
            layers.append(lambda inner: ResponseNoticeLayer(inner, notices))
        if token_auth is not None:  # the endpoint's token, and the one replay when the server refuses it
            layers.append(lambda inner: TokenAuthLayer(inner, token_auth, endpoint=name))
        layers.append(
            lambda inner: HeadersLayer(inner, merge_headers(default_headers, endpoint.headers), redactor=redactor)
        )
        layers.append(lambda inner: ClientSpanLayer(inner, redactor=redactor))
        limits = ResponseLimits(
            endpoint=name,
            max_body_bytes=endpoint.max_response_bytes,
            max_header_bytes=endpoint.max_response_header_bytes,
        )
        stack: httpx.AsyncBaseTransport = BoundaryTransport(base, limits=limits, redactor=redactor)
        for layer in reversed(layers):
            stack = layer(stack)
        return stack

    stacks = {name: assemble(name, endpoint) for name, endpoint in spec.endpoints.items()}
    default_boundary = BoundaryTransport(base, limits=ResponseLimits(endpoint=DEFAULT_STACK), redactor=redactor)
    default = TelemetryLayer(
        HeadersLayer(ClientSpanLayer(default_boundary, redactor=redactor), default_headers, redactor=redactor),
        endpoint=DEFAULT_STACK,
        telemetry=telemetry,
    )
    return RouterTransport(
        manifest=spec,
        stacks=stacks,
        default=default,
        base=base,
        redactor=redactor,
        pool_limiters=limiters,
        backoff_windows=windows,
        progress_trackers=trackers,
    )


def _base_transport(spec: TransportSpec, env: Mapping[str, str]) -> httpx.AsyncBaseTransport:
    backend = (env.get(spec.backend_env) if spec.backend_env else None) or spec.backend
    if backend not in ("httpx", "aiohttp", "pyqwest"):
        raise ConfigurationError(
            f"{spec.backend_env}={backend!r}: the HTTP backend must be 'httpx', 'aiohttp' or 'pyqwest'"
        )
    if backend == "pyqwest":
        return _pyqwest_transport(spec)
    limits = httpx.Limits(
        max_connections=spec.max_connections,
        max_keepalive_connections=spec.max_keepalive_connections,
        keepalive_expiry=spec.keepalive_expiry_s,
    )
    if backend == "aiohttp":
        try:
            from httpx_aiohttp import AiohttpTransport
        except ImportError:
            raise ConfigurationError(
                "transport.backend: 'aiohttp' needs the httpx-aiohttp package (pip install httpx-aiohttp)"
            ) from None
        return AiohttpTransport(limits=limits, verify=_shared_ssl_context())
    return httpx.AsyncHTTPTransport(http2=spec.http2, limits=limits, verify=_shared_ssl_context())


def _pyqwest_transport(spec: TransportSpec) -> httpx.AsyncBaseTransport:
    try:
        import pyqwest
        from pyqwest.httpx import AsyncPyqwestTransport
    except ImportError:
        raise ConfigurationError("transport.backend: 'pyqwest' needs the pyqwest package (pip install pyqwest)") from None
    # As with the other backends: httpx decides about redirects, the boundary decodes compressed bodies (under its
    # size limits), our telemetry layer makes the spans and the pool follows the manifest's limits. Corporate
    # proxies' CAs in the system store are trusted (pyqwest's default trusts only its bundled roots). HTTP/1.1 only
    # when the manifest turns HTTP/2 off; else ALPN decides.
    base = pyqwest.HTTPTransport(
        tls_include_system_certs=True,
        http_version=None if spec.http2 else pyqwest.HTTPVersion.HTTP1,
        follow_redirects=False,
        enable_gzip=False,
        enable_brotli=False,
        enable_zstd=False,
        enable_otel=False,
        pool_idle_timeout=spec.keepalive_expiry_s,
        pool_max_idle_per_host=spec.max_keepalive_connections,
        max_connections_per_address=spec.max_connections,
    )
    return AsyncPyqwestTransport(transport=base)


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs about 2 MiB per context; every default transport of the process shares one.
    return httpx.create_ssl_context()


def _resolve_size_estimators(manifest: Manifest, available: Mapping[str, SizeEstimator]) -> dict[str, SizeEstimator]:
    resolved: dict[str, SizeEstimator] = {}
    problems: list[str] = []
    for name, endpoint in manifest.endpoints.items():
        if endpoint.size_estimator is None:
            continue
        estimator = available.get(endpoint.size_estimator)
        if estimator is None:
            known = ", ".join(sorted(available)) or "none"
            problems.append(
                f"endpoints.{name}.size_estimator: unknown size estimator {endpoint.size_estimator!r} "
                f"(pass it in size_estimators; given: {known})"
            )
        else:
            resolved[name] = estimator
    if problems:
        raise ConfigurationError("\n".join(problems))
    return resolved


def _queue_state_layer(inner: httpx.AsyncBaseTransport, manifest: Manifest) -> QueueStateLayer:
    futures = manifest.futures
    if futures is None:
        return QueueStateLayer(inner)
    return QueueStateLayer(
        inner,
        try_again=futures.try_again,
        state_field=futures.queue_state_field,
        reason_field=futures.queue_state_reason_field,
        states=futures.queue_states,
    )


def _tracker_key(manifest: Manifest, endpoint: str, policy: RetryPolicySpec) -> str:
    """Endpoints of one named policy share its tracker, unless an override changes the tracker's own settings
    (progress timeout, in-flight limit): then the endpoint gets a tracker of its own."""
    name = manifest.retry_policy_name_for(endpoint)
    assert name is not None  # only called for endpoints with a policy
    named = manifest.retry_policies[name]
    if (named.progress_timeout_s, named.max_in_flight) == (policy.progress_timeout_s, policy.max_in_flight):
        return name
    return f"endpoints.{endpoint}.retry"


def _wants_idempotency(endpoint: EndpointSpec) -> bool:
    if endpoint.idempotency is not None:
        return endpoint.idempotency
    return endpoint.method not in _SAFE_METHODS


class RouterTransport(httpx.AsyncBaseTransport):
    """Sends each request through its endpoint's prebuilt stack. Usable under any ``httpx.AsyncClient``.

    The stack receives a copy of the request (same URL and body, its own headers and extensions) and owns it: its
    layers add headers to it in place, and the caller's request is left as it was built. A request with an unread
    streamed body goes through as is, so that reading the stream leaves the caller's request replayable."""

    def __init__(
        self,
        *,
        manifest: Manifest,
        stacks: Mapping[str, httpx.AsyncBaseTransport],
        default: httpx.AsyncBaseTransport,
        base: httpx.AsyncBaseTransport,
        redactor: Redactor,
        pool_limiters: Mapping[str, PoolLimiter],
        backoff_windows: Mapping[str, BackoffWindow],
        progress_trackers: Mapping[str, ProgressTracker],
    ) -> None:
        self.manifest = manifest
        self.stacks: Mapping[str, httpx.AsyncBaseTransport] = dict(stacks)
        self.default_stack = default
        self.base = base
        self.redactor = redactor
        self.pool_limiters: Mapping[str, PoolLimiter] = dict(pool_limiters)
        self.backoff_windows: Mapping[str, BackoffWindow] = dict(backoff_windows)
        self.progress_trackers: Mapping[str, ProgressTracker] = dict(progress_trackers)
        self._templates = _TemplateMatcher(
            (endpoint.method, endpoint.path, self.stacks[name]) for name, endpoint in manifest.endpoints.items()
        )

    def route(self, request: httpx.Request) -> httpx.AsyncBaseTransport:
        """The stack ``request`` goes through."""
        name = request.extensions.get(extensions.ENDPOINT)
        if name is None:
            return self._templates.match_url(request.method, request.url) or self.default_stack
        stack = self.stacks.get(name)
        if stack is None:
            known = ", ".join(sorted(self.stacks)) or "none"
            raise ConfigurationError(
                f"request.extensions[{extensions.ENDPOINT!r}] names endpoint {name!r}, which manifest "
                f"{self.manifest.name!r} does not have (known: {known})"
            )
        return stack

    def handle_async_request(self, request: httpx.Request) -> Awaitable[httpx.Response]:  # type: ignore[override]
        # Not a coroutine function: it hands back the stack's coroutine, one frame less per request.
        stack = self.route(request)
        try:
            request.content  # noqa: B018 - raises while a streamed body is unread
        except httpx.RequestNotRead:
            # A copy would read the stream away from the caller's request, which httpx may replay (a 307 redirect).
            return stack.handle_async_request(request)
        # The layers' headers stay off the request httpx's client keeps (pristine_transport.layers.header_list
        # says what that saves).
        return stack.handle_async_request(copy_request(request))

    async def aclose(self) -> None:
        await self.base.aclose()

    def __repr__(self) -> str:
        return f"RouterTransport(manifest={self.manifest.name!r}, endpoints={len(self.stacks)})"


class _TemplateMatcher:
    """Method + URL path -> stack, by path templates anchored at the end of the path.

    Per method, all templates are one alternation searched left to right: the leftmost match is the one that
    covers the most of the path; at equal start, alternatives are ordered by literal length (``/sessions/list``
    before ``/sessions/{id}``). A bounded cache makes repeated paths a dict lookup.
    """

    def __init__(self, entries: Iterable[tuple[str, str, httpx.AsyncBaseTransport]]) -> None:
        by_method: dict[str, list[tuple[str, httpx.AsyncBaseTransport]]] = {}
        for method, template, stack in entries:
            by_method.setdefault(method, []).append((template, stack))
        self._strict: dict[str, tuple[re.Pattern[str], list[httpx.AsyncBaseTransport]]] = {}
        self._loose: dict[str, tuple[re.Pattern[str], list[httpx.AsyncBaseTransport]]] = {}
        for method, templates in by_method.items():
            ordered = sorted(templates, key=lambda t: -len(_PATH_PARAM.sub("", t[0])))
            stacks = [stack for _, stack in ordered]
            self._strict[method] = (_alternation([t for t, _ in ordered], "[^/]+"), stacks)
            self._loose[method] = (_alternation([t for t, _ in ordered], ".+"), stacks)
        self._cache: dict[tuple[str, str], httpx.AsyncBaseTransport | None] = {}
        self._raw_cache: dict[tuple[str, str], httpx.AsyncBaseTransport | None] = {}

    def match_url(self, method: str, url: httpx.URL) -> httpx.AsyncBaseTransport | None:
        """:meth:`match` for ``url.path``, cached by the path as sent: decoding it (``url.path``) costs more than
        the match, and a path as sent always decodes to the same one."""
        reference = getattr(url, "_uri_reference", None)  # httpx's parsed URL; absent in another release
        if reference is None:
            return self.match(method, url.path)
        key = (method, reference.path)
        try:
            return self._raw_cache[key]
        except KeyError:
            pass
        found = self.match(method, url.path)
        if len(self._raw_cache) >= _ROUTE_CACHE_SIZE:
            self._raw_cache.clear()
        self._raw_cache[key] = found
        return found

    def match(self, method: str, path: str) -> httpx.AsyncBaseTransport | None:
        key = (method, path)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._search(self._strict, method, path) or self._search(self._loose, method, path)
        if len(self._cache) >= _ROUTE_CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = found
        return found

    @staticmethod
    def _search(
        table: dict[str, tuple[re.Pattern[str], list[httpx.AsyncBaseTransport]]], method: str, path: str
    ) -> httpx.AsyncBaseTransport | None:
        entry = table.get(method)
        if entry is None:
            return None
        pattern, stacks = entry
        found = pattern.search(path)
        if found is None or found.lastgroup is None:
            return None
        return stacks[int(found.lastgroup[1:])]


def _alternation(templates: list[str], param: str) -> re.Pattern[str]:
    alternatives = []
    for index, template in enumerate(templates):
        literals = _PATH_PARAM.split(template)
        body = param.join(re.escape(literal) for literal in literals)
        alternatives.append(f"(?P<t{index}>{body}\\Z)")
    return re.compile("|".join(alternatives))
