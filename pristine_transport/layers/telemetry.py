"""OpenTelemetry spans and HTTP client metrics, by the stable HTTP semantic conventions.

Span model (https://opentelemetry.io/docs/specs/semconv/http/http-spans/):

- :class:`ClientSpanLayer`, the innermost layer above the boundary, makes one **CLIENT** span per HTTP exchange:
  every attempt the retry layer makes and every re-send after a backpressure window is its own span, named after
  the method, with ``http.request.method``, ``url.full`` (credentials masked by the
  :class:`~pristine_transport.redaction.Redactor`), ``server.address``, ``server.port``,
  ``http.response.status_code``, ``error.type`` (the status for >= 400, else the failure's class) and, from the
  second exchange of a logical request on, ``http.request.resend_count``. The W3C ``traceparent`` of that span (and
  whatever else the configured propagator writes) is put on each exchange.
- :class:`TelemetryLayer`, the outermost layer, makes one **INTERNAL** span per logical request, named after the
  endpoint, that groups its exchanges and carries what happened between them as events: ``retry.backoff`` (retry
  layer), ``backpressure.backoff``, ``pool.wait``, ``queue_state``. Attributes: ``pristine.endpoint``,
  ``pristine.response.status_code`` (the answer the caller got), ``error.type``, ``pristine.retries`` (when > 0),
  ``{namespace}.idempotency_key`` (namespace: the manifest's name, e.g. ``tinker.idempotency_key``) and whatever the
  caller put in ``request.extensions[extensions.SPAN_ATTRIBUTES]``. No CLIENT span ever encloses another.
- A future's polls (``extensions.NOT_READY_POLLS``): a poll answered "not ready yet" (a try-again body, a 408)
  makes no span at all but one ``poll.not_ready`` event and a count (``pristine.future.not_ready_polls``) on the
  future's span, so a future polled for an hour does not flood the exporter. The poll that ends the wait gets its
  INTERNAL and CLIENT spans as any request, recorded when its answer is known (their start times are the real
  ones; the ``traceparent`` such a poll sent names the future's span). Events beyond the SDK's span limit (128 by
  default) are dropped by the SDK; the count stays exact. ``FutureResolver(not_ready_polls="spans")`` turns this off.

Deprecated, kept for one release: the INTERNAL span also carries ``http.response.status_code`` (read
``pristine.response.status_code``); before, the logical request was a CLIENT span with every HTTP attribute.

Cost: with neither a tracer nor a meter provider the layers pass requests through and create nothing (no span, no
attribute dict, no extra coroutine). Whether one is configured is looked up per request, so a provider installed
after the stack was built is used; once found it is kept (OpenTelemetry's global providers are set once).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Final

import httpx
from opentelemetry import baggage, context, metrics, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import NoOpTracer, NoOpTracerProvider, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .. import extensions
from ..errors import failure_name
from ..http_metrics import HttpClientInstruments
from .header_list import find_header, set_header

if TYPE_CHECKING:
    from pristine_transport.redaction import Redactor

__all__ = [
    "AttemptTelemetryLayer",
    "ClientSpanLayer",
    "NotReadyPolls",
    "RequestTelemetry",
    "Telemetry",
    "TelemetryLayer",
    "namespaced",
]

TRACER_NAME: Final = "pristine_transport"
METER_NAME: Final = "pristine_transport"
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
_ATTRIBUTE_CACHE_SIZE: Final = 256

Attributes = dict[str, Any]


def namespaced(namespace: str | None, name: str) -> str:
    """``namespace.name``, or ``pristine.name`` without a namespace."""
    return f"{namespace or 'pristine'}.{name}"


# The global providers by a module attribute read instead of trace.get_tracer_provider(), which looks at os.environ
# on every call while no provider is set (about 1.5 us per request). Telemetry.__init__ calls the public functions
# once, which load a provider named by OTEL_PYTHON_TRACER_PROVIDER / OTEL_PYTHON_METER_PROVIDER. Should a release
# of the API rename the attribute, the public functions are used.
_METRICS_INTERNAL: Any = getattr(metrics, "_internal", None)
_TRACE_STATE: dict[str, Any] = vars(trace) if hasattr(trace, "_TRACER_PROVIDER") else {"_TRACER_PROVIDER": True}
_METRICS_STATE: dict[str, Any] = (
    vars(_METRICS_INTERNAL) if hasattr(_METRICS_INTERNAL, "_METER_PROVIDER") else {"_METER_PROVIDER": True}
)
"""The API modules' namespaces, for :meth:`Telemetry.off` (a dict read each); with another API release whose
attributes differ, ``True`` stands in, so ``off()`` says no and the public lookups decide."""
if hasattr(trace, "_TRACER_PROVIDER"):

    def _global_tracer_provider() -> trace.TracerProvider | None:
        return trace._TRACER_PROVIDER

else:  # pragma: no cover - another API release

    def _global_tracer_provider() -> trace.TracerProvider | None:
        provider = trace.get_tracer_provider()
        return None if isinstance(provider, trace.ProxyTracerProvider) else provider


if hasattr(_METRICS_INTERNAL, "_METER_PROVIDER"):

    def _global_meter_provider() -> metrics.MeterProvider | None:
        return _METRICS_INTERNAL._METER_PROVIDER  # type: ignore[no-any-return]

else:  # pragma: no cover - another API release

    def _global_meter_provider() -> metrics.MeterProvider | None:
        provider = metrics.get_meter_provider()
        return None if type(provider).__name__.startswith("_Proxy") else provider


class Telemetry:
    """The tracer and the metric instruments of one transport, shared by every endpoint stack it builds.

    Explicit ones win; otherwise the global providers', looked up per request until one is configured.
    ``namespace`` prefixes the API's own ids on spans (``{namespace}.idempotency_key``); the stack passes the
    manifest's name. ``tracer_name`` is the instrumentation scope of a tracer taken from the global provider."""

    __slots__ = ("_explicit_meter", "_instruments", "_tracer", "_tracer_name", "namespace")

    def __init__(
        self,
        *,
        tracer: trace.Tracer | None = None,
        meter: metrics.Meter | None = None,
        namespace: str | None = None,
        tracer_name: str = TRACER_NAME,
    ) -> None:
        self.namespace = namespace
        self._tracer = None if isinstance(tracer, NoOpTracer) else tracer
        self._tracer_name = tracer_name
        self._explicit_meter = meter
        self._instruments = HttpClientInstruments(meter) if meter is not None else None
        if tracer is None:
            trace.get_tracer_provider()  # loads an environment-configured provider, once
        if meter is None:
            metrics.get_meter_provider()

    def off(self) -> bool:
        """Neither a tracer nor a meter, and no global provider of either yet: the common case, decided with no
        call beyond this one."""
        return (
            self._tracer is None
            and self._instruments is None
            and self._explicit_meter is None
            and _TRACE_STATE.get("_TRACER_PROVIDER") is None
            and _METRICS_STATE.get("_METER_PROVIDER") is None
        )

    def tracer(self) -> trace.Tracer | None:
        tracer = self._tracer
        if tracer is not None:
            return tracer
        provider = _global_tracer_provider()
        if provider is None or isinstance(provider, NoOpTracerProvider):
            return None
        self._tracer = provider.get_tracer(self._tracer_name)
        return self._tracer

    def instruments(self) -> HttpClientInstruments | None:
        found = self._instruments
        if found is not None:
            return found
        provider = _global_meter_provider()
        if provider is None or isinstance(provider, metrics.NoOpMeterProvider):
            return None
        self._instruments = HttpClientInstruments(provider.get_meter(METER_NAME))
        return self._instruments


class NotReadyPolls:
    """A future's "not ready yet" polls, as events and a count on the future's span (see the module docstring)."""

    __slots__ = ("count", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.count = 0

    def record(self, endpoint: str, status: int, duration_s: float, queue_state: Mapping[str, str] | None) -> None:
        self.count += 1
        attributes: Attributes = {
            "pristine.endpoint": endpoint,
            "http.response.status_code": status,
            "pristine.poll.duration_s": duration_s,
        }
        if queue_state:
            attributes.update(queue_state)
        self.span.add_event("poll.not_ready", attributes)
        self.span.set_attribute("pristine.future.not_ready_polls", self.count)


class _Exchange:
    """One exchange of a poll whose spans wait for its answer."""

    __slots__ = ("attributes", "end_ns", "error_type", "name", "start_ns", "status", "status_code")

    def __init__(self, name: str, attributes: Attributes, start_ns: int) -> None:
        self.name = name
        self.attributes = attributes
        self.start_ns = start_ns
        self.end_ns = start_ns
        self.status_code: int | None = None
        self.error_type: str | None = None
        self.status: str | None = None


class RequestTelemetry:
    """Per logical request, in ``request.extensions[extensions.TELEMETRY]``: what the layers beneath need."""

    __slots__ = (
        "context",
        "endpoint",
        "exchanges",
        "instruments",
        "not_ready",
        "queue_state",
        "retries",
        "sends",
        "tracer",
    )

    def __init__(
        self,
        endpoint: str,
        tracer: trace.Tracer | None,
        instruments: HttpClientInstruments | None,
        parent: context.Context | None,
    ) -> None:
        self.endpoint = endpoint
        self.tracer = tracer
        self.instruments = instruments
        self.context = parent
        """The context CLIENT spans start in: the request's INTERNAL span's."""
        self.sends = 0
        self.retries = 0
        self.exchanges: list[_Exchange] | None = None
        """Set for a poll whose spans wait for its answer (``NOT_READY_POLLS``)."""
        self.not_ready = False
        self.queue_state: dict[str, str] | None = None


def telemetry_of(request: httpx.Request) -> RequestTelemetry | None:
    """The request's telemetry, None while tracing and metrics are off."""
    return request.extensions.get(extensions.TELEMETRY)


class TelemetryLayer(httpx.AsyncBaseTransport):
    """The INTERNAL span of a logical request, named after the endpoint (outermost layer).

    ``telemetry`` is shared by every stack of a transport (else one is made from ``tracer``); ``redactor`` is
    accepted for the signature of earlier releases and unused (URLs become attributes in :class:`ClientSpanLayer`).
    ``idempotency_header`` names the header whose value becomes ``{namespace}.idempotency_key``."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        endpoint: str,
        redactor: Redactor | None = None,
        tracer: trace.Tracer | None = None,
        telemetry: Telemetry | None = None,
        idempotency_header: str | None = None,
    ) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._telemetry = telemetry if telemetry is not None else Telemetry(tracer=tracer)
        self._start_attributes: Attributes = {"pristine.endpoint": endpoint}
        self._metric_attributes: Attributes = {"pristine.endpoint": endpoint}
        self._idempotency = idempotency_header or None
        self._idempotency_attribute = namespaced(self._telemetry.namespace, "idempotency_key")

    def handle_async_request(self, request: httpx.Request) -> Awaitable[httpx.Response]:  # type: ignore[override]
        # Not a coroutine function: with tracing and metrics off it hands back the inner layer's coroutine, so the
        # layer adds no frame to the request's path (httpx awaits whatever this returns).
        telemetry = self._telemetry
        if telemetry.off():
            return self._inner.handle_async_request(request)
        tracer = telemetry.tracer()
        instruments = telemetry.instruments()
        if tracer is None and instruments is None:
            return self._inner.handle_async_request(request)
        polls: NotReadyPolls | None = request.extensions.get(extensions.NOT_READY_POLLS)
        if tracer is None or polls is not None:
            return self._send_untraced(request, tracer, instruments, polls)
        return self._send_traced(request, tracer, instruments)

    async def _send_traced(
        self, request: httpx.Request, tracer: trace.Tracer, instruments: HttpClientInstruments | None
    ) -> httpx.Response:
        attributes = self._start_attributes
        extra = request.extensions.get(extensions.SPAN_ATTRIBUTES)
        if extra:
            attributes = {**attributes, **extra}
        span = tracer.start_span(self._endpoint, kind=SpanKind.INTERNAL, attributes=attributes)
        state = RequestTelemetry(self._endpoint, tracer, instruments, trace.set_span_in_context(span))
        request.extensions[extensions.TELEMETRY] = state
        # attach/detach rather than ``trace.use_span``: the same effect without a generator-based context manager.
        token = context.attach(state.context)  # type: ignore[arg-type]
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            if span.is_recording():
                _record_failure(span, exc)
                span.set_attributes(self._ids(request))
            raise
        else:
            if span.is_recording():
                _record_status(span, response.status_code, self._ids(request))
            return response
        finally:
            context.detach(token)
            span.end()
            if instruments is not None and state.retries:
                instruments.retries.add(state.retries, self._metric_attributes)

    async def _send_untraced(
        self,
        request: httpx.Request,
        tracer: trace.Tracer | None,
        instruments: HttpClientInstruments | None,
        polls: NotReadyPolls | None,
    ) -> httpx.Response:
        """Metrics only, or a poll whose spans wait for its answer."""
        state = RequestTelemetry(self._endpoint, tracer, instruments, None)
        deferred = tracer is not None and polls is not None
        if deferred:
            state.exchanges = []
        request.extensions[extensions.TELEMETRY] = state
        started_ns = time.time_ns()
        status: int | None = None
        failure: BaseException | None = None
        try:
            response = await self._inner.handle_async_request(request)
            status = response.status_code
            return response
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if instruments is not None and state.retries:
                instruments.retries.add(state.retries, self._metric_attributes)
            if deferred:
                assert tracer is not None and polls is not None
                if state.not_ready and failure is None and status is not None:
                    polls.record(self._endpoint, status, (time.time_ns() - started_ns) / 1e9, state.queue_state)
                else:
                    self._replay(tracer, request, state, started_ns, status, failure)

    def _replay(
        self,
        tracer: trace.Tracer,
        request: httpx.Request,
        state: RequestTelemetry,
        started_ns: int,
        status: int | None,
        failure: BaseException | None,
    ) -> None:
        """The spans of a poll that ended the wait, made now with the times they had."""
        attributes = self._start_attributes
        extra = request.extensions.get(extensions.SPAN_ATTRIBUTES)
        if extra:
            attributes = {**attributes, **extra}
        span = tracer.start_span(self._endpoint, kind=SpanKind.INTERNAL, attributes=attributes, start_time=started_ns)
        parent = trace.set_span_in_context(span)
        for exchange in state.exchanges or ():
            child = tracer.start_span(
                exchange.name,
                context=parent,
                kind=SpanKind.CLIENT,
                attributes=exchange.attributes,
                start_time=exchange.start_ns,
            )
            if exchange.status_code is not None:
                child.set_attribute("http.response.status_code", exchange.status_code)
            if exchange.error_type is not None:
                child.set_attribute("error.type", exchange.error_type)
                child.set_status(Status(StatusCode.ERROR, exchange.status))
            child.end(end_time=exchange.end_ns)
        if span.is_recording():
            if failure is not None:
                _record_failure(span, failure)
                span.set_attributes(self._ids(request))
            elif status is not None:
                _record_status(span, status, self._ids(request))
        span.end()

    def _ids(self, request: httpx.Request) -> Attributes:
        """The API's ids known only once the request went through the layers (the idempotency key)."""
        if self._idempotency is not None:
            key = find_header(request.headers, self._idempotency)
            if key is not None:
                return {self._idempotency_attribute: key.decode("latin-1")}
        return {}

    async def aclose(self) -> None:
        await self._inner.aclose()


def _record_status(span: trace.Span, status: int, attributes: Attributes) -> None:
    attributes["pristine.response.status_code"] = status
    attributes["http.response.status_code"] = status  # deprecated on this span; one release
    if status >= 400:
        attributes["error.type"] = str(status)
        span.set_status(Status(StatusCode.ERROR))
    span.set_attributes(attributes)  # one call: each set_attribute takes the span's lock


def _record_failure(span: trace.Span, exc: BaseException) -> None:
    name = _error_type(exc)
    span.set_attribute("error.type", name)
    # The class, not the message: the boundary masks messages, but a caller's exception may carry anything.
    span.set_status(Status(StatusCode.ERROR, name))


def _error_type(exc: BaseException) -> str:
    return failure_name(exc) if isinstance(exc, Exception) else type(exc).__name__


class _Target:
    """What the attributes of one URL are, worked out once (redacting a URL is not free)."""

    __slots__ = ("metric_attributes", "span_attributes")

    def __init__(self, request: httpx.Request, redactor: Redactor | None) -> None:
        url = request.url
        port = url.port or _DEFAULT_PORTS.get(url.scheme)
        self.metric_attributes: Attributes = {"http.request.method": request.method, "server.address": url.host}
        if port is not None:
            self.metric_attributes["server.port"] = port
        full = redactor.url(url) if redactor is not None else str(url.copy_with(username=None, password=None))
        self.span_attributes: Attributes = {**self.metric_attributes, "url.full": full}


class ClientSpanLayer(httpx.AsyncBaseTransport):
    """One CLIENT span and one ``http.client.request.duration`` record per HTTP exchange, ``traceparent`` injected
    (the innermost layer above the boundary, so that every re-send, backpressure ones included, is its own)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, redactor: Redactor | None = None) -> None:
        self._inner = inner
        self._redactor = redactor
        self._targets: dict[tuple[str, str], _Target] = {}

    def handle_async_request(self, request: httpx.Request) -> Awaitable[httpx.Response]:  # type: ignore[override]
        # Not a coroutine function, like TelemetryLayer's: no frame of its own while telemetry is off.
        state: RequestTelemetry | None = request.extensions.get(extensions.TELEMETRY)
        if state is None:
            return self._inner.handle_async_request(request)
        return self._send(request, state)

    async def _send(self, request: httpx.Request, state: RequestTelemetry) -> httpx.Response:
        target = self._target(request)
        resends = state.sends
        state.sends = resends + 1
        tracer = state.tracer
        span: trace.Span | None = None
        exchange: _Exchange | None = None
        if tracer is not None:
            attributes = target.span_attributes
            if resends:
                attributes = {**attributes, "http.request.resend_count": resends}
            if state.exchanges is not None:  # a poll: its spans wait for the answer
                exchange = _Exchange(request.method, attributes, time.time_ns())
                state.exchanges.append(exchange)
                _inject(request, None)
            else:
                span = tracer.start_span(
                    request.method, context=state.context, kind=SpanKind.CLIENT, attributes=attributes
                )
                _inject_span(request, span, state.context)
        instruments = state.instruments
        if instruments is not None:
            instruments.active_requests.add(1, target.metric_attributes)
            started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            error_type = _error_type(exc)
            if span is not None:
                span.set_attribute("error.type", error_type)
                span.set_status(Status(StatusCode.ERROR, error_type))
                span.end()
            elif exchange is not None:
                exchange.error_type = exchange.status = error_type
                exchange.end_ns = time.time_ns()
            if instruments is not None:
                instruments.active_requests.add(-1, target.metric_attributes)
                instruments.request_duration.record(
                    time.perf_counter() - started, {**target.metric_attributes, "error.type": error_type}
                )
            raise
        status = response.status_code
        if span is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        elif exchange is not None:
            exchange.status_code = status
            if status >= 400:
                exchange.error_type = str(status)
            exchange.end_ns = time.time_ns()
        if instruments is not None:
            instruments.active_requests.add(-1, target.metric_attributes)
            recorded = {**target.metric_attributes, "http.response.status_code": status}
            if status >= 400:
                recorded["error.type"] = str(status)
            instruments.request_duration.record(time.perf_counter() - started, recorded)
        return response

    def _target(self, request: httpx.Request) -> _Target:
        url = request.url
        # httpx's parsed form of the URL (a named tuple) hashes in a tenth of the time str(url) takes to build.
        key = (request.method, getattr(url, "_uri_reference", None) or str(url))
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= _ATTRIBUTE_CACHE_SIZE:
                self._targets.clear()
            target = self._targets[key] = _Target(request, self._redactor)
        return target

    async def aclose(self) -> None:
        await self._inner.aclose()


def _inject(request: httpx.Request, ctx: context.Context | None) -> None:
    """The configured propagator's headers (W3C ``traceparent`` by default) for ``ctx`` (None: the current one),
    replacing any a previous exchange of the same request carried."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    headers = request.headers
    for name, value in carrier.items():
        set_header(headers, name, value.encode("utf-8"))


_default_textmap_seen: object = None
"""The global propagator last found to be OpenTelemetry's default (W3C trace context, then W3C baggage)."""


def _is_default_textmap(textmap: object) -> bool:
    global _default_textmap_seen
    if textmap is _default_textmap_seen:
        return True
    found = [type(p) for p in getattr(textmap, "_propagators", ())] if type(textmap) is CompositePropagator else []
    if found != [TraceContextTextMapPropagator, W3CBaggagePropagator]:
        return False
    _default_textmap_seen = textmap
    return True


def _inject_span(request: httpx.Request, span: trace.Span, parent: context.Context | None) -> None:
    """:func:`_inject` for a CLIENT span. With the default propagator and no baggage, the headers it would write
    are written directly (``traceparent``, and ``tracestate`` when the span has one): the same bytes, without a
    carrier dict, a context for the span and the propagators' lookups, per exchange."""
    span_context = span.get_span_context()
    if not (
        span_context.is_valid
        and _is_default_textmap(propagate.get_global_textmap())
        and not baggage.get_all(parent)
    ):
        _inject(request, trace.set_span_in_context(span, parent))
        return
    headers = request.headers
    traceparent = b"00-%032x-%016x-%02x" % (span_context.trace_id, span_context.span_id, span_context.trace_flags)
    set_header(headers, "traceparent", traceparent)
    if span_context.trace_state:
        set_header(headers, "tracestate", span_context.trace_state.to_header().encode("utf-8"))


AttemptTelemetryLayer = ClientSpanLayer
"""Deprecated name of :class:`ClientSpanLayer` (one release)."""
