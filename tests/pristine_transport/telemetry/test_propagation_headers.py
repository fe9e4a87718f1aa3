"""The propagation headers each exchange carries are exactly what the configured propagator writes: the CLIENT
span's direct traceparent/tracestate path (default propagator, no baggage) and the general path agree byte for byte,
baggage and other propagators go through the propagator itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.propagators.textmap import DefaultGetter, DefaultSetter, TextMapPropagator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from pristine_transport.stack import build_transport

from .conftest import Spans

pytestmark = pytest.mark.anyio

BASE = "http://api.test"
MANIFEST: dict[str, Any] = {"name": "acme", "base_url": {"default": BASE}, "endpoints": {"get": {"method": "GET", "path": "/v1/x"}}}


class Recorder(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(200, json={})


async def send_one(spans: Spans, parent: context.Context | None = None) -> tuple[httpx.Request, Any]:
    recorder = Recorder()
    client = httpx.AsyncClient(transport=build_transport(MANIFEST, base=recorder, tracer=spans.tracer), base_url=BASE)
    token = context.attach(parent) if parent is not None else None
    try:
        await client.get("/v1/x")
    finally:
        if token is not None:
            context.detach(token)
    (sent,) = recorder.sent
    (client_span,) = spans.client()
    return sent, client_span


def expected_headers(client_span: Any, parent: context.Context | None) -> dict[str, str]:
    """What the global propagator writes for the CLIENT span (the general path)."""
    carrier: dict[str, str] = {}
    span = NonRecordingSpan(client_span.context)
    propagate.inject(carrier, context=trace.set_span_in_context(span, parent))
    return carrier


def propagation_headers(request: httpx.Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k in ("traceparent", "tracestate", "baggage", "x-custom-trace")}


async def test_default_propagator_writes_the_same_traceparent() -> None:
    spans = Spans()
    sent, client_span = await send_one(spans)
    assert propagation_headers(sent) == expected_headers(client_span, None)
    version, trace_id, span_id, flags = sent.headers["traceparent"].split("-")
    assert (version, int(trace_id, 16), int(span_id, 16), flags) == (
        "00",
        client_span.context.trace_id,
        client_span.context.span_id,
        f"{client_span.context.trace_flags:02x}",
    )
    assert int(flags, 16) & TraceFlags.SAMPLED


async def test_a_trace_state_travels_as_tracestate() -> None:
    spans = Spans()
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "opaque-value")]),
    )
    parent = trace.set_span_in_context(NonRecordingSpan(remote))
    sent, client_span = await send_one(spans, parent)
    assert sent.headers["tracestate"] == "vendor=opaque-value"
    assert client_span.context.trace_id == remote.trace_id
    assert propagation_headers(sent) == expected_headers(client_span, parent)


async def test_baggage_goes_through_the_propagator() -> None:
    spans = Spans()
    parent = baggage.set_baggage("tenant", "t-42")
    sent, client_span = await send_one(spans, parent)
    assert sent.headers["baggage"] == "tenant=t-42"
    assert propagation_headers(sent) == expected_headers(client_span, parent)


class CustomPropagator(TextMapPropagator):
    def inject(self, carrier: Any, context: context.Context | None = None, setter: Any = DefaultSetter()) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        setter.set(carrier, "x-custom-trace", f"{span_context.span_id:016x}")

    def extract(self, carrier: Any, context: context.Context | None = None, getter: Any = DefaultGetter()) -> Any:
        return context

    @property
    def fields(self) -> set[str]:
        return {"x-custom-trace"}


@pytest.fixture
def custom_propagator() -> Iterator[None]:
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(CustomPropagator())
    try:
        yield
    finally:
        propagate.set_global_textmap(before)


async def test_another_propagator_writes_its_own_headers(custom_propagator: None) -> None:
    spans = Spans()
    sent, client_span = await send_one(spans)
    assert propagation_headers(sent) == {"x-custom-trace": f"{client_span.context.span_id:016x}"}
