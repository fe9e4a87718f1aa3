"""OpenTelemetry spans: one per logical request (:class:`TelemetryLayer`) and one per attempt under it
(:class:`AttemptTelemetryLayer`), with the stable HTTP client semantic-convention attributes.

Each span is made the current span while the request runs, so inner layers add their events with
``trace.get_current_span().add_event(...)`` without knowing who created it. URLs go through the
:class:`~pristine_transport.redaction.Redactor` before they become attributes.

With no TracerProvider configured the layers pass requests straight through: no span, no context switch, no
attribute is computed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

import httpx
from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from pristine_transport.redaction import Redactor

__all__ = ["AttemptTelemetryLayer", "TelemetryLayer"]

TRACER_NAME = "pristine_transport"
RETRY_COUNT_HEADER = "x-stainless-retry-count"
_DEFAULT_PORTS = {"https": 443, "http": 80}


class _TracerSource:
    """The explicit tracer, else the global provider's, looked up per request so that a provider installed after
    the stack was built is used. ``None`` while no real provider is installed."""

    __slots__ = ("_explicit", "_provider", "_tracer")

    def __init__(self, explicit: trace.Tracer | None) -> None:
        self._explicit = explicit
        self._provider: trace.TracerProvider | None = None
        self._tracer: trace.Tracer | None = None

    def get(self) -> trace.Tracer | None:
        if self._explicit is not None:
            return self._explicit
        provider = trace.get_tracer_provider()
        if provider is not self._provider:
            no_op = isinstance(provider, (ProxyTracerProvider, NoOpTracerProvider))
            self._tracer = None if no_op else provider.get_tracer(TRACER_NAME)
            self._provider = provider
        return self._tracer


def _set_request_attributes(span: trace.Span, request: httpx.Request, redactor: Redactor) -> None:
    url = request.url
    span.set_attribute("http.request.method", request.method)
    span.set_attribute("url.full", redactor.url(url))
    span.set_attribute("server.address", url.host)
    port = url.port or _DEFAULT_PORTS.get(url.scheme)
    if port is not None:
        span.set_attribute("server.port", port)


def _record_response(span: trace.Span, response: httpx.Response) -> None:
    status = response.status_code
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))


def _record_exception(span: trace.Span, exc: Exception, redactor: Redactor) -> None:
    name = type(exc).__name__
    span.set_attribute("error.type", name)
    # The message, not the traceback: a traceback's locals and the URL in some messages may carry secrets.
    span.set_status(Status(StatusCode.ERROR, redactor.text(str(exc)) or name))


async def _send_in_span(
    inner: httpx.AsyncBaseTransport,
    request: httpx.Request,
    span: trace.Span,
    recording: bool,
    redactor: Redactor,
) -> httpx.Response:
    with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        try:
            response = await inner.handle_async_request(request)
        except Exception as exc:
            if recording:
                _record_exception(span, exc, redactor)
            raise
        if recording:
            _record_response(span, response)
        return response


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
        tracer = self._tracers.get()
        if tracer is None:
            return await self._inner.handle_async_request(request)
        span = tracer.start_span(self._endpoint, kind=SpanKind.CLIENT)
        recording = span.is_recording()
        if recording:
            _set_request_attributes(span, request, self._redactor)
            span.set_attribute("pristine.endpoint", self._endpoint)
        return await _send_in_span(self._inner, request, span, recording, self._redactor)

    async def aclose(self) -> None:
        await self._inner.aclose()


class AttemptTelemetryLayer(httpx.AsyncBaseTransport):
    """One CLIENT span per attempt, named after the method, carrying ``http.request.resend_count`` on re-sends.

    The count comes from the retry layer's ``x-stainless-retry-count`` header; without it, attempts are counted
    per parent (logical request) span."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, *, redactor: Redactor, tracer: trace.Tracer | None = None
    ) -> None:
        self._inner = inner
        self._redactor = redactor
        self._tracers = _TracerSource(tracer)
        self._attempts: WeakKeyDictionary[trace.Span, int] = WeakKeyDictionary()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tracer = self._tracers.get()
        if tracer is None:
            return await self._inner.handle_async_request(request)
        parent = trace.get_current_span()
        span = tracer.start_span(request.method, kind=SpanKind.CLIENT)
        recording = span.is_recording()
        if recording:
            _set_request_attributes(span, request, self._redactor)
            resend_count = self._resend_count(request, parent)
            if resend_count > 0:
                span.set_attribute("http.request.resend_count", resend_count)
        return await _send_in_span(self._inner, request, span, recording, self._redactor)

    def _resend_count(self, request: httpx.Request, parent: trace.Span) -> int:
        header = request.headers.get(RETRY_COUNT_HEADER)
        if header is not None:
            try:
                return int(header)
            except ValueError:
                pass
        if not parent.get_span_context().is_valid:
            return 0
        count = self._attempts.get(parent, 0)
        self._attempts[parent] = count + 1
        return count

    async def aclose(self) -> None:
        await self._inner.aclose()
