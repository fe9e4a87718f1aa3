import logging
from collections.abc import AsyncIterator
from enum import StrEnum

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pristine_transport import extensions
from pristine_transport.layers.queue_state import UNKNOWN_STATE, QueueStateLayer, QueueStateObserver, parse_queue_state
from pristine_transport.manifest import MatchSpec

pytestmark = pytest.mark.anyio

TRY_AGAIN = MatchSpec(field="type", value="try_again")


class QueueState(StrEnum):
    """The states of an API on top (the layer knows only strings, and the states its manifest lists)."""

    ACTIVE = "active"
    PAUSED_RATE_LIMIT = "paused_rate_limit"
    PAUSED_CAPACITY = "paused_capacity"
    UNKNOWN = UNKNOWN_STATE


STATES = ("active", "paused_rate_limit", "paused_capacity")


class RecordingObserver:
    def __init__(self) -> None:
        self.changes: list[tuple[QueueState, str | None]] = []

    def on_queue_state_change(self, state: QueueState, reason: str | None) -> None:
        self.changes.append((state, reason))


class TrackedStream(httpx.AsyncByteStream):
    """A response body that records whether anyone read it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.read = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.read = True
        yield self.body


@pytest.fixture
def queue_observer() -> RecordingObserver:
    return RecordingObserver()


def serving(response: httpx.Response) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: response)


def json_stream_response(
    status: int, body: bytes, content_type: str = "application/json"
) -> tuple[httpx.Response, TrackedStream]:
    stream = TrackedStream(body)
    return httpx.Response(status, headers={"content-type": content_type}, stream=stream), stream


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"queue_state": "active"}, (QueueState.ACTIVE, None)),
        ({"queue_state": "PAUSED_CAPACITY", "queue_state_reason": "busy"}, (QueueState.PAUSED_CAPACITY, "busy")),
        ({"queue_state": "paused_rate_limit"}, (QueueState.PAUSED_RATE_LIMIT, None)),
        ({"queue_state": "sleeping"}, (QueueState.UNKNOWN, None)),
        ({"queue_state": 3, "queue_state_reason": 4}, (QueueState.UNKNOWN, None)),
        ({}, (QueueState.UNKNOWN, None)),
    ],
)
def test_parse_queue_state(body: dict[str, object], expected: tuple[QueueState, str | None]) -> None:
    assert parse_queue_state(body, states=STATES) == expected


def test_parse_queue_state_with_custom_fields() -> None:
    body = {"state": "paused_capacity", "why": "maintenance"}
    parsed = parse_queue_state(body, state_field="state", reason_field="why")
    assert parsed == (QueueState.PAUSED_CAPACITY, "maintenance")


def test_recording_observer_satisfies_the_protocol(queue_observer: RecordingObserver) -> None:
    assert isinstance(queue_observer, QueueStateObserver)


async def test_408_notifies_the_observer_and_the_body_stays_readable(queue_observer: RecordingObserver) -> None:
    body = b'{"queue_state": "paused_rate_limit", "queue_state_reason": "too many samplers"}'
    response, _ = json_stream_response(408, body)
    layer = QueueStateLayer(serving(response))
    async with httpx.AsyncClient(transport=layer) as client:
        got = await client.post(
            "http://qs.test/api/v1/retrieve_future", extensions={extensions.QUEUE_OBSERVER: queue_observer}
        )
    assert queue_observer.changes == [(QueueState.PAUSED_RATE_LIMIT, "too many samplers")]
    assert got.status_code == 408
    assert got.content == body


async def test_200_try_again_notifies_and_stays_readable_when_streamed(queue_observer: RecordingObserver) -> None:
    body = b'{"type": "try_again", "request_id": "r1", "queue_state": "paused_capacity"}'
    response, _ = json_stream_response(200, body)
    layer = QueueStateLayer(serving(response), try_again=TRY_AGAIN)
    async with httpx.AsyncClient(transport=layer) as client:
        request = client.build_request(
            "POST", "http://qs.test/f", extensions={extensions.QUEUE_OBSERVER: queue_observer}
        )
        got = await client.send(request, stream=True)
        assert b"".join([chunk async for chunk in got.aiter_bytes()]) == body
        await got.aclose()
    assert queue_observer.changes == [(QueueState.PAUSED_CAPACITY, None)]


async def test_a_200_result_is_not_a_try_again(queue_observer: RecordingObserver) -> None:
    response, _ = json_stream_response(200, b'{"type": "sample", "queue_state": "paused_capacity", "tokens": [1, 2]}')
    layer = QueueStateLayer(serving(response), try_again=TRY_AGAIN)
    request = httpx.Request("POST", "http://qs.test/f", extensions={extensions.QUEUE_OBSERVER: queue_observer})
    got = await layer.handle_async_request(request)
    assert queue_observer.changes == []
    assert await got.aread() == b'{"type": "sample", "queue_state": "paused_capacity", "tokens": [1, 2]}'


@pytest.mark.parametrize(
    ("status", "content_type", "try_again"),
    [
        (200, "application/json", None),  # 2xx bodies are candidates only when a try-again shape is configured
        (500, "application/json", TRY_AGAIN),
        (429, "application/json", TRY_AGAIN),
        (408, "text/plain", TRY_AGAIN),
        (200, "application/octet-stream", TRY_AGAIN),
    ],
)
async def test_other_responses_are_not_read(
    queue_observer: RecordingObserver, status: int, content_type: str, try_again: MatchSpec | None
) -> None:
    response, stream = json_stream_response(status, b'{"type": "try_again", "queue_state": "active"}', content_type)
    layer = QueueStateLayer(serving(response), try_again=try_again)
    request = httpx.Request("GET", "http://qs.test/", extensions={extensions.QUEUE_OBSERVER: queue_observer})
    got = await layer.handle_async_request(request)
    assert not stream.read
    assert not got.is_stream_consumed
    assert queue_observer.changes == []


async def test_configured_statuses_and_fields(queue_observer: RecordingObserver) -> None:
    response, _ = json_stream_response(429, b'{"state": "Paused_Capacity", "why": "gpu shortage"}')
    layer = QueueStateLayer(serving(response), statuses=(429,), state_field="state", reason_field="why")
    request = httpx.Request("GET", "http://qs.test/", extensions={extensions.QUEUE_OBSERVER: queue_observer})
    await layer.handle_async_request(request)
    assert queue_observer.changes == [(QueueState.PAUSED_CAPACITY, "gpu shortage")]


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'{"type": "try_again"}'])
async def test_bodies_without_queue_state_notify_nothing(queue_observer: RecordingObserver, body: bytes) -> None:
    response, _ = json_stream_response(408, body)
    layer = QueueStateLayer(serving(response), try_again=TRY_AGAIN)
    request = httpx.Request("GET", "http://qs.test/", extensions={extensions.QUEUE_OBSERVER: queue_observer})
    got = await layer.handle_async_request(request)
    assert queue_observer.changes == []
    assert got.content == body


async def test_unknown_state_is_reported_as_unknown(queue_observer: RecordingObserver) -> None:
    response, _ = json_stream_response(200, b'{"type": "try_again", "queue_state": "hibernating"}')
    layer = QueueStateLayer(serving(response), try_again=TRY_AGAIN, states=STATES)
    request = httpx.Request("GET", "http://qs.test/", extensions={extensions.QUEUE_OBSERVER: queue_observer})
    await layer.handle_async_request(request)
    assert queue_observer.changes == [(QueueState.UNKNOWN, None)]


async def test_observer_exceptions_are_logged_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenObserver:
        def on_queue_state_change(self, state: QueueState, reason: str | None) -> None:
            raise RuntimeError("observer bug")

    body = b'{"queue_state": "active"}'
    response, _ = json_stream_response(408, body)
    layer = QueueStateLayer(serving(response))
    request = httpx.Request("GET", "http://qs.test/", extensions={extensions.QUEUE_OBSERVER: BrokenObserver()})
    with caplog.at_level(logging.WARNING, logger="pristine_transport.queue_state"):
        got = await layer.handle_async_request(request)
    assert got.status_code == 408 and got.content == body
    (record,) = [r for r in caplog.records if r.name == "pristine_transport.queue_state"]
    assert "BrokenObserver" in record.getMessage()
    assert record.exc_info is not None and "observer bug" in str(record.exc_info[1])


async def test_queue_state_event_on_the_current_span_even_without_observer() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    response, _ = json_stream_response(408, b'{"queue_state": "paused_capacity", "queue_state_reason": "full"}')
    layer = QueueStateLayer(serving(response))
    with provider.get_tracer("test").start_as_current_span("retrieve_future"):
        await layer.handle_async_request(httpx.Request("POST", "http://qs.test/"))
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == "queue_state"
    assert dict(event.attributes) == {"queue.state": "paused_capacity", "queue.state_reason": "full"}


async def test_a_body_that_fails_mid_read_is_closed_and_the_error_propagates() -> None:
    class DroppedStream(httpx.AsyncByteStream):
        closed = False

        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'{"queue_'
            raise httpx.ReadError("connection dropped")

        async def aclose(self) -> None:
            self.closed = True

    stream = DroppedStream()
    response = httpx.Response(408, headers={"content-type": "application/json"}, stream=stream)
    layer = QueueStateLayer(serving(response))
    with pytest.raises(httpx.ReadError):
        await layer.handle_async_request(httpx.Request("GET", "http://qs.test/"))
    assert stream.closed
