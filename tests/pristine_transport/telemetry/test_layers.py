"""The telemetry layers in a built stack over a scripted transport: span trees, attribute names by the stable HTTP
conventions, traceparent per exchange, HTTP client metrics, and nothing at all while both are off."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from opentelemetry import metrics, trace
from opentelemetry.semconv.attributes import error_attributes, http_attributes, server_attributes, url_attributes
from opentelemetry.semconv.metrics import http_metrics
from opentelemetry.trace import SpanKind, StatusCode

from pristine_transport import extensions
from pristine_transport.http_metrics import DURATION_BUCKETS_S
from pristine_transport.redaction import Redactor
from pristine_transport.stack import build_transport

from .conftest import Metrics, Spans

pytestmark = pytest.mark.anyio

BASE = "http://api.test:8080"
MANIFEST: dict[str, Any] = {
    "name": "acme",
    "base_url": {"default": BASE},
    "headers": {"X-Api-Key": {"value": "sk-acme-secret-0123456789", "secret": True}},
    "pools": {"p": {"max_concurrency": 4}},
    "retry_policies": {"quick": {"max_retries": 3, "initial_delay_s": 0.001, "max_delay_s": 0.002}},
    "endpoints": {
        "create": {
            "method": "POST",
            "path": "/v1/create",
            "pool": "p",
            "retry": "quick",
            "backpressure": {"header": "X-Backpressure", "small_backoff_s": 0.01},
        },
        "get": {"method": "GET", "path": "/v1/things/{id}"},
    },
}

CLIENT_ATTRIBUTES = {
    http_attributes.HTTP_REQUEST_METHOD,
    url_attributes.URL_FULL,
    server_attributes.SERVER_ADDRESS,
    server_attributes.SERVER_PORT,
    http_attributes.HTTP_RESPONSE_STATUS_CODE,
    error_attributes.ERROR_TYPE,
    http_attributes.HTTP_REQUEST_RESEND_COUNT,
}


class Script(httpx.AsyncBaseTransport):
    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status, json={"ok": status == 200})


def client_for(base: httpx.AsyncBaseTransport, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=build_transport(MANIFEST, base=base, **options), base_url=BASE)


def traceparent_span_id(request: httpx.Request) -> int:
    version, trace_id, span_id, flags = request.headers["traceparent"].split("-")
    assert version == "00" and len(trace_id) == 32 and int(flags, 16) & 1  # sampled
    return int(span_id, 16)


async def test_a_retried_request_is_one_internal_span_with_one_client_span_per_attempt(spans: Spans) -> None:
    script = Script(503, 503, 200)
    async with client_for(script, tracer=spans.tracer) as client:
        with spans.tracer.start_as_current_span("caller") as caller:
            response = await client.post("/v1/create", json={})
    assert response.status_code == 200

    (request_span,) = spans.internal("create")
    assert request_span.parent is not None and request_span.parent.span_id == caller.get_span_context().span_id
    attempts = spans.children_of(request_span)
    assert [s.kind for s in attempts] == [SpanKind.CLIENT] * 3 == [s.kind for s in spans.client()]
    assert [s.name for s in attempts] == ["POST"] * 3
    assert [s.attributes.get(http_attributes.HTTP_REQUEST_RESEND_COUNT) for s in attempts] == [None, 1, 2]
    assert [s.attributes[http_attributes.HTTP_RESPONSE_STATUS_CODE] for s in attempts] == [503, 503, 200]
    assert [s.attributes.get(error_attributes.ERROR_TYPE) for s in attempts] == ["503", "503", None]
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    for span in attempts:
        assert set(span.attributes) <= CLIENT_ATTRIBUTES
        assert span.attributes[url_attributes.URL_FULL] == BASE + "/v1/create"
        assert span.attributes[server_attributes.SERVER_ADDRESS] == "api.test"
        assert span.attributes[server_attributes.SERVER_PORT] == 8080
        assert span.attributes[http_attributes.HTTP_REQUEST_METHOD] == "POST"
    # W3C traceparent per exchange: each names its own CLIENT span.
    assert [traceparent_span_id(r) for r in script.sent] == [s.context.span_id for s in attempts]
    # The retries are events of the request span, which carries the endpoint, the outcome and the ids.
    assert [e.name for e in request_span.events] == ["retry.backoff", "retry.backoff"]
    attributes = request_span.attributes
    assert attributes["pristine.endpoint"] == "create" and attributes["pristine.retries"] == 2
    assert attributes["pristine.response.status_code"] == 200
    assert attributes["acme.idempotency_key"] == script.sent[0].headers["X-Idempotency-Key"]
    assert "sk-acme-secret" not in repr([s.to_json() for s in spans.all()])


async def test_a_429_is_a_backpressure_wait_on_the_request_span_and_a_second_client_span(
    spans: Spans, meters: Metrics
) -> None:
    script = Script(429, 200)
    async with client_for(script, tracer=spans.tracer, meter=meters.meter) as client:
        response = await client.post("/v1/create", json={})
    assert response.status_code == 200
    (request_span,) = spans.internal("create")
    assert [e.name for e in request_span.events] == ["backpressure.backoff"]
    assert "pristine.retries" not in request_span.attributes  # flow control, not a retry
    first, second = spans.children_of(request_span)
    assert first.attributes[http_attributes.HTTP_RESPONSE_STATUS_CODE] == 429 and first.attributes[error_attributes.ERROR_TYPE] == "429"
    assert second.attributes[http_attributes.HTTP_REQUEST_RESEND_COUNT] == 1
    assert len(spans.client()) == len(script.sent) == 2
    (wait,) = meters.points("pristine.http.client.backpressure.waits")
    assert wait.value == 1 and dict(wait.attributes) == {"pristine.endpoint": "create"}
    assert meters.points("pristine.http.client.retries") == []


async def test_http_client_metrics_by_the_conventions(meters: Metrics) -> None:
    script = Script(503, 200)
    async with client_for(script, meter=meters.meter) as client:
        await client.post("/v1/create", json={})
        await client.get("/v1/things/7")
    duration = meters.metric(http_metrics.HTTP_CLIENT_REQUEST_DURATION)
    assert duration is not None and duration.unit == "s"
    points = {(p.attributes.get("http.request.method"), p.attributes.get("http.response.status_code")): p for p in duration.data.data_points}
    assert set(points) == {("POST", 503), ("POST", 200), ("GET", 200)}
    assert all(p.count == 1 and tuple(p.explicit_bounds) == DURATION_BUCKETS_S for p in points.values())
    assert dict(points["POST", 503].attributes) == {
        "http.request.method": "POST",
        "server.address": "api.test",
        "server.port": 8080,
        "http.response.status_code": 503,
        "error.type": "503",
    }
    (active,) = [p for p in meters.points("http.client.active_requests") if p.attributes["http.request.method"] == "POST"]
    assert active.value == 0
    (retries,) = meters.points("pristine.http.client.retries")
    assert retries.value == 1 and dict(retries.attributes) == {"pristine.endpoint": "create"}
    assert DURATION_BUCKETS_S == (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


async def test_credentials_in_the_url_are_masked_in_url_full(spans: Spans) -> None:
    script = Script(200)
    redactor = Redactor()
    url = "http://alice:hunter2@api.test:8080/v1/things/1?api_key=tml-0123456789abcdef&n=1"
    async with client_for(script, tracer=spans.tracer, redactor=redactor) as client:
        await client.get(url)
    (span,) = spans.client()
    full = span.attributes[url_attributes.URL_FULL]
    assert "hunter2" not in full and "tml-0123456789abcdef" not in full and full.endswith("n=1")


async def test_a_connection_failure_is_a_client_span_with_its_error_type(spans: Spans) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    manifest = {**MANIFEST, "base_url": {"default": f"http://127.0.0.1:{port}"}}
    transport = build_transport(manifest, base=httpx.AsyncHTTPTransport(), tracer=spans.tracer)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/v1/things/1")
    (span,) = spans.client()
    assert span.attributes[error_attributes.ERROR_TYPE] == "ConnectError"
    assert span.status.status_code is StatusCode.ERROR
    (request_span,) = spans.internal("get")
    assert request_span.attributes[error_attributes.ERROR_TYPE] == "ConnectError"


async def test_nothing_is_created_while_tracing_and_metrics_are_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(metrics._internal, "_METER_PROVIDER", None)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("telemetry object created while telemetry is off")

    monkeypatch.setattr("pristine_transport.layers.telemetry.RequestTelemetry.__init__", refuse)
    script = Script(503, 200)
    async with client_for(script) as client:
        assert (await client.post("/v1/create", json={})).status_code == 200
    assert all(extensions.TELEMETRY not in r.extensions and "traceparent" not in r.headers for r in script.sent)


async def test_a_global_provider_installed_after_the_stack_was_built_is_used(
    monkeypatch: pytest.MonkeyPatch, spans: Spans
) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(metrics._internal, "_METER_PROVIDER", None)
    script = Script()
    async with client_for(script) as client:
        await client.get("/v1/things/1")
        assert spans.all() == []
        monkeypatch.setattr(trace, "_TRACER_PROVIDER", spans.provider)
        await client.get("/v1/things/2")
    assert [s.name for s in spans.all()] == ["get", "GET"]


async def test_caller_span_attributes_go_on_the_request_span(spans: Spans) -> None:
    script = Script()
    async with client_for(script, tracer=spans.tracer) as client:
        ids = {extensions.SPAN_ATTRIBUTES: {"acme.model_id": "m-1", "acme.seq_id": 4}}
        await client.post("/v1/create", json={}, extensions=ids)
    (request_span,) = spans.internal("create")
    assert request_span.attributes["acme.model_id"] == "m-1" and request_span.attributes["acme.seq_id"] == 4
