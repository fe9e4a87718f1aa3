import logging
import time

import anyio
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pristine_transport import extensions
from pristine_transport.layers.backoff_window import BackoffWindow
from pristine_transport.layers.backpressure import BackpressureLayer
from pristine_transport.layers.pool_limiter import PoolLimiter, PoolLimiterLayer
from pristine_transport.manifest import BackpressureSpec, PoolSpec

pytestmark = pytest.mark.anyio

SPEC = BackpressureSpec(
    header="X-Sampling-Backpressure", small_request_bytes=1024, small_backoff_s=1.0, large_backoff_s=5.0
)


class FakeTime:
    """A clock and a sleep that advances it, so windows of seconds pass instantly."""

    def __init__(self) -> None:
        self.now = 50.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def backpressure_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def backpressure_window(backpressure_time: FakeTime) -> BackoffWindow:
    return BackoffWindow(recent_s=10.0, clock=backpressure_time.clock)


def answers(*statuses: int) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering ``statuses`` in order (the last one repeats), recording what it received."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(statuses[min(len(seen), len(statuses)) - 1], json={"n": len(seen)})

    return httpx.MockTransport(handler), seen


async def test_429_opens_the_window_waits_it_out_and_resends(
    backpressure_time: FakeTime, backpressure_window: BackoffWindow, caplog: pytest.LogCaptureFixture
) -> None:
    transport, seen = answers(429, 429, 200)
    layer = BackpressureLayer(transport, SPEC, backpressure_window, sleep=backpressure_time.sleep)
    caplog.set_level(logging.INFO, logger="pristine_transport.backpressure")

    response = await layer.handle_async_request(httpx.Request("POST", "http://bp.test/asample", content=b"{}"))

    assert response.status_code == 200
    assert response.json() == {"n": 3}
    assert len(seen) == 3
    assert all(r.headers["X-Sampling-Backpressure"] == "1" for r in seen)
    assert all("x-stainless-retry-count" not in r.headers for r in seen)  # flow control, not a retry
    assert backpressure_time.sleeps == [pytest.approx(1.0), pytest.approx(1.0)]
    assert backpressure_window.is_recent() and not backpressure_window.is_open()
    messages = [r.getMessage() for r in caplog.records if r.name == "pristine_transport.backpressure"]
    assert len(messages) == 2
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert "backing off 1.0s" in messages[0] and "/asample" in messages[0]


async def test_large_requests_back_off_longer(
    backpressure_time: FakeTime, backpressure_window: BackoffWindow
) -> None:
    transport, _ = answers(429, 200)
    layer = BackpressureLayer(transport, SPEC, backpressure_window, sleep=backpressure_time.sleep)
    request = httpx.Request("POST", "http://bp.test/", content=b"{}", extensions={extensions.SIZE_BYTES: 1025})
    assert (await layer.handle_async_request(request)).status_code == 200
    assert backpressure_time.sleeps == [pytest.approx(5.0)]


async def test_size_of_and_body_length_decide_the_backoff(
    backpressure_time: FakeTime, backpressure_window: BackoffWindow
) -> None:
    transport, _ = answers(429, 200)
    by_estimator = BackpressureLayer(
        transport, SPEC, backpressure_window, size_of=lambda r: 10_000, sleep=backpressure_time.sleep
    )
    await by_estimator.handle_async_request(httpx.Request("POST", "http://bp.test/", content=b"{}"))
    transport, _ = answers(429, 200)
    by_body = BackpressureLayer(transport, SPEC, backpressure_window, sleep=backpressure_time.sleep)
    backpressure_time.now += 100
    await by_body.handle_async_request(httpx.Request("POST", "http://bp.test/", content=b"x" * 2048))
    assert backpressure_time.sleeps == [pytest.approx(5.0), pytest.approx(5.0)]


async def test_other_statuses_pass_through_and_an_open_window_is_waited_first(
    backpressure_time: FakeTime, backpressure_window: BackoffWindow
) -> None:
    transport, seen = answers(503)
    layer = BackpressureLayer(transport, SPEC, backpressure_window, sleep=backpressure_time.sleep)
    backpressure_window.open(2.5)
    start = backpressure_time.now
    response = await layer.handle_async_request(httpx.Request("POST", "http://bp.test/"))
    assert response.status_code == 503
    assert len(seen) == 1
    assert backpressure_time.now - start == pytest.approx(2.5)


async def test_backoff_event_on_the_current_span(
    backpressure_time: FakeTime, backpressure_window: BackoffWindow
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    transport, _ = answers(429, 200)
    layer = BackpressureLayer(transport, SPEC, backpressure_window, sleep=backpressure_time.sleep)
    with provider.get_tracer("test").start_as_current_span("asample"):
        await layer.handle_async_request(httpx.Request("POST", "http://bp.test/", content=b"abc"))
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == "backpressure.backoff"
    assert dict(event.attributes) == {"delay_s": 1.0, "size_bytes": 3}


async def test_backoff_holds_the_pool_permits(
    backpressure_time: FakeTime, backpressure_window: BackoffWindow
) -> None:
    limiter = PoolLimiter(PoolSpec(max_concurrency=4, max_bytes=1000), backpressure_window)
    held_while_sleeping: list[tuple[int | None, int | None]] = []

    async def sleep(seconds: float) -> None:
        held_while_sleeping.append((limiter.available_count, limiter.available_bytes))
        await backpressure_time.sleep(seconds)

    transport, _ = answers(429, 200)
    stack = PoolLimiterLayer(BackpressureLayer(transport, SPEC, backpressure_window, sleep=sleep), limiter)
    async with httpx.AsyncClient(transport=stack) as client:
        response = await client.post("http://bp.test/", content=b"x" * 10)
    assert response.status_code == 200
    assert held_while_sleeping == [(3, 990)]
    assert (limiter.available_count, limiter.available_bytes) == (4, 1000)


async def test_concurrent_requests_share_the_window_in_real_time() -> None:
    """Two endpoint stacks of one pool: a 429 on one makes the other wait too (real clock, 50 ms window)."""
    spec = BackpressureSpec(header="X-Backpressure", small_backoff_s=0.05, large_backoff_s=0.05)
    window = BackoffWindow(recent_s=1.0)
    first_429_sent = anyio.Event()
    sends: list[tuple[str, float]] = []
    rejected_at: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sends.append((request.url.path, time.monotonic()))
        if not rejected_at:
            rejected_at.append(time.monotonic())
            first_429_sent.set()
            return httpx.Response(429)
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    stack_a = BackpressureLayer(transport, spec, window)
    stack_b = BackpressureLayer(transport, spec, window)
    statuses: dict[str, int] = {}

    async def send(stack: BackpressureLayer, path: str) -> None:
        response = await stack.handle_async_request(httpx.Request("POST", f"http://bp.test{path}"))
        statuses[path] = response.status_code

    async def send_after_the_429() -> None:
        await first_429_sent.wait()
        await send(stack_b, "/b")

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send, stack_a, "/a")
            tg.start_soon(send_after_the_429)

    assert statuses == {"/a": 200, "/b": 200}
    assert [path for path, _ in sends].count("/a") == 2
    assert [path for path, _ in sends].count("/b") == 1
    deadline = rejected_at[0] + 0.05
    assert all(at >= deadline - 0.005 for path, at in sends[1:])
