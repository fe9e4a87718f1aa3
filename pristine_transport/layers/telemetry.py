"""OpenTelemetry spans: one per logical request (:class:`TelemetryLayer`) and one per attempt under it
(:class:`AttemptTelemetryLayer`), with the stable HTTP client semantic-convention attributes.

Each span is made the current span while the request runs, so inner layers add their events with
``trace.get_current_span().add_event(...)`` without knowing who created it. URLs go through the
:class:`~pristine_transport.redaction.Redactor` before they become attributes.

With no TracerProvider configured the layers pass requests straight through: no span, no context switch, no
attribute is computed. The attempt layer reuses what the logical-request layer above it already worked out in the
same task (the global tracer lookup, the redacted request attributes) instead of repeating it per attempt.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import httpx
from opentelemetry import context, trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanKind, Status, StatusCode

from .. import extensions
from ..errors import failure_name

if TYPE_CHECKING:
    from pristine_transport.redaction import Redactor

__all__ = ["AttemptTelemetryLayer", "TelemetryLayer"]

TRACER_NAME = "pristine_transport"
_DEFAULT_PORTS = {"https": 443, "http": 80}

Attributes = dict[str, Any]


class _TracerSource:
    """The explicit tracer, else the global provider's, looked up per request so that a provider installed after
    the stack was built is used. ``None`` while no real provider is installed."""

    __slots__ = ("explicit", "_provider", "_tracer")

    def __init__(self, explicit: trace.Tracer | None) -> None:
        self.explicit = explicit
        self._provider: trace.TracerProvider | None = None
        self._tracer: trace.Tracer | None = None

    def global_tracer(self) -> trace.Tracer | None:
        provider = trace.get_tracer_provider()
        if provider is not self._provider:
            no_op = isinstance(provider, (ProxyTracerProvider, NoOpTracerProvider))
            self._tracer = None if no_op else provider.get_tracer(TRACER_NAME)
            self._provider = provider
        return self._tracer


class _LogicalRequest:
    """What the logical-request layer already worked out, for the attempt layer beneath it in the same task: the
    global tracer lookup (``global_resolved``) and the request attributes (redacting a URL is not free)."""

    __slots__ = ("attributes", "global_resolved", "global_tracer", "url")

    def __init__(
        self, global_resolved: bool, global_tracer: trace.Tracer | None, url: httpx.URL, attributes: Attributes | None
    ) -> None:
        self.global_resolved = global_resolved
        self.global_tracer = global_tracer
        self.url = url
        self.attributes = attributes


_LOGICAL: ContextVar[_LogicalRequest | None] = ContextVar("pristine_transport.logical_request", default=None)


def _request_attributes(request: httpx.Request, redactor: Redactor) -> Attributes:
    url = request.url
    attributes: Attributes = {
        "http.request.method": request.method,
        "url.full": redactor.url(url),
        "server.address": url.host,
    }
    port = url.port or _DEFAULT_PORTS.get(url.scheme)
    if port is not None:
        attributes["server.port"] = port
    return attributes


def _record_response(span: trace.Span, response: httpx.Response) -> None:
    status = response.status_code
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))


def _record_exception(span: trace.Span, exc: Exception, redactor: Redactor) -> None:
    name = failure_name(exc)
    span.set_attribute("error.type", name)
    # The message, not the traceback: a traceback's locals and the URL in some messages may carry secrets.
    span.set_status(Status(StatusCode.ERROR, redactor.text(str(exc)) or name))


async def _send_in_span(
    inner: httpx.AsyncBaseTransport, request: httpx.Request, span: trace.Span, redactor: Redactor
) -> httpx.Response:
    # attach/detach rather than ``trace.use_span``: the same effect without a generator-based context manager.
    token = context.attach(trace.set_span_in_context(span))
    try:
        response = await inner.handle_async_request(request)
    except Exception as exc:
        if span.is_recording():
            _record_exception(span, exc, redactor)
        raise
    else:
        if span.is_recording():
            _record_response(span, response)
        return response
    finally:
        context.detach(token)
        span.end()


class TelemetryLayer(httpx.AsyncBaseTransport):
    """One CLIENT span per logical request, named after the endpoint."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        endpoint: str,
        redactor: Redactor,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._redactor = redactor
        self._tracers = _TracerSource(tracer)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tracers = self._tracers
        global_resolved = tracers.explicit is None
        tracer = tracers.global_tracer() if global_resolved else tracers.explicit
        if tracer is None:
            state = _LOGICAL.set(_LogicalRequest(global_resolved, None, request.url, None))
            try:
                return await self._inner.handle_async_request(request)
            finally:
                _LOGICAL.reset(state)
        attributes = _request_attributes(request, self._redactor)
        span = tracer.start_span(
            self._endpoint, kind=SpanKind.CLIENT, attributes={**attributes, "pristine.endpoint": self._endpoint}
        )
        global_tracer = tracer if global_resolved else None
        state = _LOGICAL.set(_LogicalRequest(global_resolved, global_tracer, request.url, attributes))
        try:
            return await _send_in_span(self._inner, request, span, self._redactor)
        finally:
            _LOGICAL.reset(state)

    async def aclose(self) -> None:
        await self._inner.aclose()


class AttemptTelemetryLayer(httpx.AsyncBaseTransport):
    """One CLIENT span per attempt, named after the method, carrying ``http.request.resend_count`` on re-sends.

    The count comes from ``request.extensions[extensions.ATTEMPT]`` (set by the retry layer); without it, attempts
    are counted per parent (logical request) span."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, *, redactor: Redactor, tracer: trace.Tracer | None = None
    ) -> None:
        self._inner = inner
        self._redactor = redactor
        self._tracers = _TracerSource(tracer)
        self._attempts: WeakKeyDictionary[trace.Span, int] = WeakKeyDictionary()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        logical = _LOGICAL.get()
        tracers = self._tracers
        if tracers.explicit is not None:
            tracer: trace.Tracer | None = tracers.explicit
        elif logical is not None and logical.global_resolved:
            tracer = logical.global_tracer
        else:
            tracer = tracers.global_tracer()
        if tracer is None:
            return await self._inner.handle_async_request(request)
        attributes = logical.attributes if logical is not None and logical.url is request.url else None
        if attributes is None:
            attributes = _request_attributes(request, self._redactor)
        resend_count = self._resend_count(request, trace.get_current_span())
        if resend_count > 0:
            attributes = {**attributes, "http.request.resend_count": resend_count}
        span = tracer.start_span(request.method, kind=SpanKind.CLIENT, attributes=attributes)
        return await _send_in_span(self._inner, request, span, self._redactor)

    def _resend_count(self, request: httpx.Request, parent: trace.Span) -> int:
        attempt = request.extensions.get(extensions.ATTEMPT)
        if attempt is not None:
            return attempt
        if not parent.get_span_context().is_valid:
            return 0
        count = self._attempts.get(parent, 0)
        self._attempts[parent] = count + 1
        return count

    async def aclose(self) -> None:
        await self._inner.aclose()
