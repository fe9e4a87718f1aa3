import socket

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import ProxyTracerProvider, SpanKind, StatusCode

from pristine_transport import extensions
from pristine_transport.layers.telemetry import AttemptTelemetryLayer, TelemetryLayer
from pristine_transport.redaction import Redactor

pytestmark = pytest.mark.anyio

SECRET_URL = "http://alice:hunter2-password@sampler.test:8443/api/v1/asample?api_key=tml-0123456789abcdef&n=1"


class SpanRecorder:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


class ResendOn503(httpx.AsyncBaseTransport):
    """Stands in for the retry layer: re-sends 503s, optionally announcing the attempt in ``extensions.ATTEMPT``."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, max_resends: int, announce: bool = True) -> None:
        self._inner = inner
        self._max_resends = max_resends
        self._announce = announce

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            if self._announce:
                request.extensions[extensions.ATTEMPT] = attempt
            response = await self._inner.handle_async_request(request)
            if response.status_code != 503 or attempt == self._max_resends:
                return response
            await response.aclose()
            attempt += 1


def statuses(*codes: int) -> httpx.MockTransport:
    sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(1)
        return httpx.Response(codes[min(len(sent), len(codes)) - 1])

    return httpx.MockTransport(handler)


@pytest.fixture
def telemetry_spans() -> SpanRecorder:
    return SpanRecorder()


@pytest.fixture
def telemetry_redactor() -> Redactor:
    return Redactor()


def build_stack(
    base: httpx.AsyncBaseTransport,
    recorder: SpanRecorder,
    redactor: Redactor,
    *,
    max_resends: int = 3,
    announce: bool = True,
) -> TelemetryLayer:
    attempts = AttemptTelemetryLayer(base, redactor=redactor, tracer=recorder.tracer)
    return TelemetryLayer(
        ResendOn503(attempts, max_resends=max_resends, announce=announce),
        endpoint="asample",
        redactor=redactor,
        tracer=recorder.tracer,
    )


def split(spans: list[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    (logical,) = [s for s in spans if s.name == "asample"]
    attempts = sorted((s for s in spans if s.name != "asample"), key=lambda s: s.start_time)
    return logical, attempts


async def test_logical_span_with_one_child_span_per_attempt(
    telemetry_spans: SpanRecorder, telemetry_redactor: Redactor
) -> None:
    stack = build_stack(statuses(503, 503, 200), telemetry_spans, telemetry_redactor)
    response = await stack.handle_async_request(httpx.Request("POST", SECRET_URL, content=b"{}"))
    assert response.status_code == 200

    logical, attempts = split(telemetry_spans.spans())
    assert logical.kind is SpanKind.CLIENT
    assert logical.status.status_code is StatusCode.UNSET
    assert logical.attributes["pristine.endpoint"] == "asample"
    assert logical.attributes["http.request.method"] == "POST"
    assert logical.attributes["server.address"] == "sampler.test"
    assert logical.attributes["server.port"] == 8443
    assert logical.attributes["http.response.status_code"] == 200
    assert "error.type" not in logical.attributes

    assert [s.name for s in attempts] == ["POST", "POST", "POST"]
    assert all(s.parent is not None and s.parent.span_id == logical.context.span_id for s in attempts)
    assert all(s.kind is SpanKind.CLIENT for s in attempts)
    assert [s.attributes.get("http.request.resend_count") for s in attempts] == [None, 1, 2]
    assert [s.attributes["http.response.status_code"] for s in attempts] == [503, 503, 200]
    assert [s.attributes.get("error.type") for s in attempts] == ["503", "503", None]
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]


async def test_url_full_is_redacted(telemetry_spans: SpanRecorder, telemetry_redactor: Redactor) -> None:
    stack = build_stack(statuses(200), telemetry_spans, telemetry_redactor)
    await stack.handle_async_request(httpx.Request("POST", SECRET_URL))
    spans = telemetry_spans.spans()
    assert len(spans) == 2
    for span in spans:
        url_full = span.attributes["url.full"]
        assert "hunter2" not in url_full and "tml-0123456789abcdef" not in url_full
        assert "sampler.test:8443/api/v1/asample" in url_full and "n=1" in url_full
        assert all("hunter2" not in str(v) and "0123456789abcdef" not in str(v) for v in span.attributes.values())


async def test_registered_secret_values_are_masked_in_url_full(telemetry_spans: SpanRecorder) -> None:
    redactor = Redactor(secret_values=["sessiontoken-abcdefgh1234"])
    stack = build_stack(statuses(200), telemetry_spans, redactor)
    await stack.handle_async_request(httpx.Request("GET", "https://api.test/v1/sessions/sessiontoken-abcdefgh1234"))
    logical, _ = split(telemetry_spans.spans())
    assert "sessiontoken-abcdefgh1234" not in logical.attributes["url.full"]
    assert logical.attributes["server.port"] == 443


async def test_resend_count_without_the_attempt_extension_counts_attempts_per_logical_request(
    telemetry_spans: SpanRecorder, telemetry_redactor: Redactor
) -> None:
    stack = build_stack(statuses(503, 503, 200, 503, 200), telemetry_spans, telemetry_redactor, announce=False)
    await stack.handle_async_request(httpx.Request("POST", "http://api.test/x"))
    await stack.handle_async_request(httpx.Request("POST", "http://api.test/x"))  # a new logical request restarts
    spans = telemetry_spans.spans()
    attempts = sorted((s for s in spans if s.name == "POST"), key=lambda s: s.start_time)
    assert [s.attributes.get("http.request.resend_count") for s in attempts] == [None, 1, 2, None, 1]
    assert [s.attributes["http.response.status_code"] for s in attempts] == [503, 503, 200, 503, 200]


async def test_final_5xx_marks_the_logical_span_as_error(
    telemetry_spans: SpanRecorder, telemetry_redactor: Redactor
) -> None:
    stack = build_stack(statuses(503), telemetry_spans, telemetry_redactor, max_resends=1)
    response = await stack.handle_async_request(httpx.Request("POST", "http://api.test/x"))
    assert response.status_code == 503
    logical, attempts = split(telemetry_spans.spans())
    assert logical.attributes["error.type"] == "503"
    assert logical.attributes["http.response.status_code"] == 503
    assert logical.status.status_code is StatusCode.ERROR
    assert len(attempts) == 2


async def test_connect_error_against_a_closed_loopback_port(
    telemetry_spans: SpanRecorder, telemetry_redactor: Redactor
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stack = build_stack(httpx.AsyncHTTPTransport(retries=0), telemetry_spans, telemetry_redactor)
    with pytest.raises(httpx.ConnectError):
        url = f"http://127.0.0.1:{port}/healthz?token=abcdefghijklmnop"
        await stack.handle_async_request(httpx.Request("GET", url))
    logical, (attempt,) = split(telemetry_spans.spans())
    for span in (logical, attempt):
        assert span.attributes["error.type"] == "ConnectError"
        assert span.status.status_code is StatusCode.ERROR
        assert "http.response.status_code" not in span.attributes
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == port
        assert "abcdefghijklmnop" not in span.attributes["url.full"]


async def test_inner_layer_events_land_on_the_current_span(
    telemetry_spans: SpanRecorder, telemetry_redactor: Redactor
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        trace.get_current_span().add_event("inner.event")
        return httpx.Response(200)

    stack = build_stack(httpx.MockTransport(handler), telemetry_spans, telemetry_redactor)
    await stack.handle_async_request(httpx.Request("GET", "http://api.test/"))
    logical, (attempt,) = split(telemetry_spans.spans())
    assert [e.name for e in attempt.events] == ["inner.event"]
    assert logical.events == ()


async def test_default_tracer_is_resolved_per_request_and_skips_spans_without_a_provider(
    monkeypatch: pytest.MonkeyPatch, telemetry_spans: SpanRecorder, telemetry_redactor: Redactor
) -> None:
    current_spans: list[trace.Span] = []

    def handler(request: httpx.Request) -> httpx.Response:
        current_spans.append(trace.get_current_span())
        return httpx.Response(200)

    stack = TelemetryLayer(
        AttemptTelemetryLayer(httpx.MockTransport(handler), redactor=telemetry_redactor),
        endpoint="ping",
        redactor=telemetry_redactor,
    )
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: ProxyTracerProvider())
    await stack.handle_async_request(httpx.Request("GET", "http://api.test/"))
    assert current_spans == [trace.INVALID_SPAN]  # passed straight through: no span was started

    monkeypatch.setattr(trace, "get_tracer_provider", lambda: telemetry_spans.provider)
    await stack.handle_async_request(httpx.Request("GET", "http://api.test/"))
    assert sorted(s.name for s in telemetry_spans.spans()) == ["GET", "ping"]
    assert all(s.instrumentation_scope.name == "pristine_transport" for s in telemetry_spans.spans())


async def test_the_global_provider_is_looked_up_once_per_logical_request(
    monkeypatch: pytest.MonkeyPatch, telemetry_spans: SpanRecorder, telemetry_redactor: Redactor
) -> None:
    lookups: list[int] = []

    def provider() -> trace.TracerProvider:
        lookups.append(1)
        return telemetry_spans.provider

    monkeypatch.setattr(trace, "get_tracer_provider", provider)
    attempts = AttemptTelemetryLayer(statuses(503, 503, 200), redactor=telemetry_redactor)
    stack = TelemetryLayer(ResendOn503(attempts, max_resends=3), endpoint="asample", redactor=telemetry_redactor)
    await stack.handle_async_request(httpx.Request("POST", SECRET_URL))
    assert len(lookups) == 1
    logical, spans = split(telemetry_spans.spans())
    assert len(spans) == 3
    for key in ("url.full", "server.address", "server.port", "http.request.method"):
        assert all(span.attributes[key] == logical.attributes[key] for span in spans)
    assert "hunter2" not in logical.attributes["url.full"]


async def test_an_attempt_layer_alone_resolves_the_tracer_itself(
    monkeypatch: pytest.MonkeyPatch, telemetry_spans: SpanRecorder, telemetry_redactor: Redactor
) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: telemetry_spans.provider)
    attempts = AttemptTelemetryLayer(statuses(200), redactor=telemetry_redactor)
    await attempts.handle_async_request(httpx.Request("GET", SECRET_URL))
    (span,) = telemetry_spans.spans()
    assert span.name == "GET" and span.attributes["server.port"] == 8443
    assert "hunter2" not in span.attributes["url.full"]
