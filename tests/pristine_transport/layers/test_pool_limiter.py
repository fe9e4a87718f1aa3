import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from anyio.abc import SocketAttribute, SocketStream, TaskGroup
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pristine_transport import extensions
from pristine_transport.layers.backoff_window import BackoffWindow
from pristine_transport.layers.pool_limiter import BytesSemaphore, PoolLimiter, PoolLimiterLayer
from pristine_transport.manifest import PoolSpec

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limiter_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter_window(limiter_clock: FakeClock) -> BackoffWindow:
    return BackoffWindow(recent_s=10.0, clock=limiter_clock)


@pytest.fixture
def limiter_spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def start_waiting(
    tg: TaskGroup, acquire: Callable[[], Awaitable[object]], done: list[str], label: str
) -> anyio.CancelScope:
    """Start ``acquire`` in its own cancel scope and return once it is blocked (or finished)."""
    scope = anyio.CancelScope()

    async def run() -> None:
        with scope:
            await acquire()
            done.append(label)

    tg.start_soon(run)
    await anyio.wait_all_tasks_blocked()
    return scope


# --- BytesSemaphore ---------------------------------------------------------------------------------------------


async def test_bytes_semaphore_overshoots_once_then_blocks_while_negative() -> None:
    sem = BytesSemaphore(100)
    await sem.acquire(150)  # larger than the whole budget: still admitted
    assert sem.available == -50
    done: list[str] = []
    async with anyio.create_task_group() as tg:
        await start_waiting(tg, lambda: sem.acquire(1), done, "small")
        assert done == []
        sem.release(150)
        await anyio.wait_all_tasks_blocked()
        assert done == ["small"]
    assert sem.available == 99


async def test_bytes_semaphore_serves_waiters_in_fifo_order() -> None:
    sem = BytesSemaphore(100)
    await sem.acquire(150)
    done: list[str] = []
    async with anyio.create_task_group() as tg:
        await start_waiting(tg, lambda: sem.acquire(10), done, "first")
        await start_waiting(tg, lambda: sem.acquire(200), done, "big")
        await start_waiting(tg, lambda: sem.acquire(5), done, "small-after-big")
        sem.release(150)  # 100 available: "first" then "big" (overshoot to -110); the small one must not jump ahead
        await anyio.wait_all_tasks_blocked()
        assert done == ["first", "big"]
        assert sem.available == -110
        sem.release(200)
        await anyio.wait_all_tasks_blocked()
        assert done == ["first", "big", "small-after-big"]
    sem.release(10)
    sem.release(5)
    assert sem.available == 100


async def test_bytes_semaphore_cancelled_waiter_takes_nothing_and_does_not_block_the_queue() -> None:
    sem = BytesSemaphore(100)
    await sem.acquire(150)
    done: list[str] = []
    async with anyio.create_task_group() as tg:
        cancelled = await start_waiting(tg, lambda: sem.acquire(10), done, "cancelled")
        await start_waiting(tg, lambda: sem.acquire(20), done, "next")
        cancelled.cancel()
        await anyio.wait_all_tasks_blocked()
        sem.release(150)
        await anyio.wait_all_tasks_blocked()
        assert done == ["next"]
    assert sem.available == 80


async def test_bytes_semaphore_grant_racing_a_cancellation_is_given_back() -> None:
    sem = BytesSemaphore(100)
    await sem.acquire(150)
    # asyncio directly: task.cancel() right after the grant makes the wait raise although the grant happened.
    waiter = asyncio.ensure_future(sem.acquire(30))
    await anyio.wait_all_tasks_blocked()
    sem.release(150)  # grants the waiter's 30 bytes on its behalf...
    waiter.cancel()  # ...and it is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert sem.available == 100


def test_bytes_semaphore_rejects_a_non_positive_budget() -> None:
    with pytest.raises(ValueError, match="budget must be positive"):
        BytesSemaphore(0)


# --- PoolLimiter --------------------------------------------------------------------------------------------------


async def test_throttled_limit_applies_only_while_a_backoff_is_recent(
    limiter_window: BackoffWindow, limiter_clock: FakeClock
) -> None:
    limiter = PoolLimiter(PoolSpec(max_concurrency=10, throttled_concurrency=1), limiter_window)
    calm = [await limiter.acquire(0) for _ in range(3)]
    assert limiter.available_count == 7
    assert limiter.available_throttled == 1

    limiter_window.open(1.0)
    first = await limiter.acquire(0)
    assert limiter.available_throttled == 0
    done: list[str] = []
    async with anyio.create_task_group() as tg:
        await start_waiting(tg, lambda: limiter.acquire(0), done, "second")
        assert done == []
        first.release()
        await anyio.wait_all_tasks_blocked()
        assert done == ["second"]

    limiter_clock.now += 1.0 + 10.0  # the deadline passed and so did the recent period
    late = await limiter.acquire(0)
    assert limiter.available_throttled == 0  # still held by "second" only
    for permit in calm + [late]:
        permit.release()


async def test_bytes_are_multiplied_while_a_backoff_is_recent(limiter_window: BackoffWindow) -> None:
    limiter = PoolLimiter(PoolSpec(max_bytes=1000, backoff_byte_multiplier=20), limiter_window)
    calm = await limiter.acquire(10)
    assert limiter.available_bytes == 990
    limiter_window.open(1.0)
    recent = await limiter.acquire(10)
    assert limiter.available_bytes == 790
    calm.release()
    recent.release()
    recent.release()  # idempotent
    assert limiter.available_bytes == 1000


@pytest.mark.parametrize(
    ("spec", "holder_bytes", "blocked_on"),
    [
        (PoolSpec(max_concurrency=1, throttled_concurrency=1, max_bytes=100), 0, "count"),
        (PoolSpec(max_concurrency=5, throttled_concurrency=1, max_bytes=100), 0, "throttled"),
        (PoolSpec(max_concurrency=5, throttled_concurrency=5, max_bytes=100), 150, "bytes"),
    ],
)
async def test_cancelling_a_waiting_request_releases_every_permit(
    limiter_window: BackoffWindow, spec: PoolSpec, holder_bytes: int, blocked_on: str
) -> None:
    limiter_window.open(1.0)  # recent: the throttled limit applies
    limiter = PoolLimiter(spec, limiter_window)
    holder = await limiter.acquire(holder_bytes)
    done: list[str] = []
    async with anyio.create_task_group() as tg:
        scope = await start_waiting(tg, lambda: limiter.acquire(10), done, "waiter")
        if blocked_on == "bytes":  # it got past both count limits before blocking
            assert limiter.available_count == 3 and limiter.available_throttled == 3
        scope.cancel()
    assert done == []
    holder.release()
    assert (limiter.available_count, limiter.available_throttled, limiter.available_bytes) == (
        spec.max_concurrency,
        spec.throttled_concurrency,
        spec.max_bytes,
    )


async def test_admit_releases_on_error(limiter_window: BackoffWindow) -> None:
    limiter = PoolLimiter(PoolSpec(max_concurrency=2, max_bytes=100), limiter_window)
    with pytest.raises(RuntimeError, match="boom"):
        async with limiter.admit(40):
            assert (limiter.available_count, limiter.available_bytes) == (1, 60)
            raise RuntimeError("boom")
    assert (limiter.available_count, limiter.available_bytes) == (2, 100)


async def test_unlimited_pool_reports_no_availability(limiter_window: BackoffWindow) -> None:
    limiter = PoolLimiter(PoolSpec(), limiter_window)
    async with limiter.admit(10**9):
        assert (limiter.available_count, limiter.available_throttled, limiter.available_bytes) == (None, None, None)


async def test_pool_wait_event_only_when_the_request_waited(
    limiter_window: BackoffWindow, limiter_spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = limiter_spans
    tracer = provider.get_tracer("test")
    limiter = PoolLimiter(PoolSpec(max_concurrency=1), limiter_window, name="sampling")

    with tracer.start_as_current_span("no-wait"):
        held = await limiter.acquire(0)

    async def waiting_request() -> None:
        with tracer.start_as_current_span("waited"):
            (await limiter.acquire(0)).release()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiting_request)
        await anyio.wait_all_tasks_blocked()
        await anyio.sleep(0.01)
        held.release()

    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["no-wait"].events == ()
    (event,) = spans["waited"].events
    assert event.name == "pool.wait"
    assert event.attributes["pool.name"] == "sampling"
    assert event.attributes["pool.limit"] == "count"
    assert event.attributes["pool.wait_s"] >= 0.005


# --- PoolLimiterLayer ---------------------------------------------------------------------------------------------


def streaming_response(release: anyio.Event | None = None) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"first "
        if release is not None:
            await release.wait()
        yield b"second"

    return httpx.Response(200, content=body())


async def test_permits_are_held_until_the_response_is_closed(limiter_window: BackoffWindow) -> None:
    limiter = PoolLimiter(PoolSpec(max_concurrency=3, max_bytes=1000), limiter_window)
    layer = PoolLimiterLayer(httpx.MockTransport(lambda request: streaming_response()), limiter)
    async with httpx.AsyncClient(transport=layer) as client:
        async with client.stream("POST", "http://pool.test/x", content=b"0123456789") as response:
            assert (limiter.available_count, limiter.available_bytes) == (2, 990)
            assert await response.aread() == b"first second"
        assert (limiter.available_count, limiter.available_bytes) == (3, 1000)
        # Non-streamed: httpx reads and closes the body before returning.
        response = await client.post("http://pool.test/x", content=b"abc")
        assert response.text == "first second"
        assert (limiter.available_count, limiter.available_bytes) == (3, 1000)


async def test_already_read_response_releases_at_once(limiter_window: BackoffWindow) -> None:
    limiter = PoolLimiter(PoolSpec(max_concurrency=1), limiter_window)
    layer = PoolLimiterLayer(httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True})), limiter)
    response = await layer.handle_async_request(httpx.Request("GET", "http://pool.test/"))
    assert response.json() == {"ok": True}
    assert limiter.available_count == 1


async def test_permits_released_when_the_inner_transport_raises(limiter_window: BackoffWindow) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    limiter = PoolLimiter(PoolSpec(max_concurrency=1, max_bytes=10), limiter_window)
    layer = PoolLimiterLayer(httpx.MockTransport(refuse), limiter)
    with pytest.raises(httpx.ConnectError):
        await layer.handle_async_request(httpx.Request("POST", "http://pool.test/", content=b"x" * 50))
    assert (limiter.available_count, limiter.available_bytes) == (1, 10)


async def test_size_from_extension_then_size_of_then_body_length(limiter_window: BackoffWindow) -> None:
    limiter = PoolLimiter(PoolSpec(max_bytes=10_000), limiter_window)
    transport = httpx.MockTransport(lambda request: streaming_response())
    sizes = []
    for layer, request_extensions in [
        (PoolLimiterLayer(transport, limiter, size_of=lambda r: 700), {extensions.SIZE_BYTES: 1234}),
        (PoolLimiterLayer(transport, limiter, size_of=lambda r: 700), {}),
        (PoolLimiterLayer(transport, limiter), {}),
    ]:
        request = httpx.Request("POST", "http://pool.test/", content=b"x" * 42, extensions=request_extensions)
        response = await layer.handle_async_request(request)
        sizes.append(10_000 - limiter.available_bytes)
        await response.aclose()
    assert sizes == [1234, 700, 42]
    assert limiter.available_bytes == 10_000


async def test_cancelled_waiting_request_through_the_layer_releases_its_permits(
    limiter_window: BackoffWindow,
) -> None:
    limiter = PoolLimiter(PoolSpec(max_concurrency=1, max_bytes=100), limiter_window)
    release = anyio.Event()
    layer = PoolLimiterLayer(httpx.MockTransport(lambda request: streaming_response(release)), limiter)
    async with httpx.AsyncClient(transport=layer) as client:
        async with client.stream("POST", "http://pool.test/", content=b"x" * 150) as first:
            assert limiter.available_bytes == -50
            with anyio.move_on_after(0.02) as scope:
                await client.post("http://pool.test/", content=b"y")
            assert scope.cancelled_caught
            release.set()
            await first.aread()
    assert (limiter.available_count, limiter.available_bytes) == (1, 100)


# --- against a real loopback server -------------------------------------------------------------------------------


@asynccontextmanager
async def loopback_http_server(body_gate: anyio.Event) -> AsyncIterator[str]:
    """A minimal HTTP/1.1 server on 127.0.0.1: answers every request with a two-part body, the second part only
    once ``body_gate`` is set."""

    async def serve(stream: SocketStream) -> None:
        async with stream:
            received = b""
            while b"\r\n\r\n" not in received:
                received += await stream.receive()
            head, _, body = received.partition(b"\r\n\r\n")
            header_lines = head.lower().split(b"\r\n")
            length = next((int(line[15:]) for line in header_lines if line.startswith(b"content-length:")), 0)
            while len(body) < length:
                body += await stream.receive()
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nfirst ")
            await body_gate.wait()
            await stream.send(b"second")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            tg.cancel_scope.cancel()
    await listener.aclose()


async def test_loopback_streamed_response_holds_permits_until_closed(limiter_window: BackoffWindow) -> None:
    limiter = PoolLimiter(PoolSpec(max_concurrency=2, max_bytes=1000), limiter_window)
    gate = anyio.Event()
    async with loopback_http_server(gate) as base_url:
        transport = PoolLimiterLayer(httpx.AsyncHTTPTransport(), limiter)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            async with client.stream("POST", "/sample", content=b"z" * 300) as response:
                assert response.status_code == 200
                assert (limiter.available_count, limiter.available_bytes) == (1, 700)
                gate.set()
                assert await response.aread() == b"first second"
            assert (limiter.available_count, limiter.available_bytes) == (2, 1000)


async def test_try_acquire_takes_everything_or_nothing(limiter_window: BackoffWindow) -> None:
    limiter = PoolLimiter(PoolSpec(max_concurrency=2, max_bytes=100), limiter_window)
    first = limiter.try_acquire(150)  # overshoots the byte budget once
    assert first is not None and limiter.available_count == 1 and limiter.available_bytes == -50
    assert limiter.try_acquire(1) is None  # bytes exhausted: the count permit it took is given back
    assert limiter.available_count == 1 and limiter.available_bytes == -50
    first.release()
    first.release()  # idempotent
    assert limiter.available_count == 2 and limiter.available_bytes == 100


async def test_try_acquire_needs_a_throttled_permit_while_a_backoff_is_recent(limiter_window: BackoffWindow) -> None:
    limiter = PoolLimiter(PoolSpec(max_concurrency=5, throttled_concurrency=1), limiter_window)
    limiter_window.open(1.0)
    held = limiter.try_acquire(0)
    assert held is not None and limiter.available_throttled == 0
    assert limiter.try_acquire(0) is None and limiter.available_count == 4
    held.release()
    assert (limiter.available_count, limiter.available_throttled) == (5, 1)
