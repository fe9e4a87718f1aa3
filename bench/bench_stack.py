"""What a full manifest stack costs per request, against a bare ``httpx.AsyncClient`` on the same mock transport.

Run: ``pytest bench/ --benchmark-enable`` (the repo's addopts disable benchmarks, so plain runs just smoke-test).
Each round sends ``REQUESTS`` sequential requests on one event loop created once. The last test prints the
ratios to the bare client; targets: full stack without tracing <= 1.10x, with an SDK tracer <= 1.5x. A mock
transport makes the layers' own cost as visible as it can be; the loopback pair shows it next to a real HTTP
round trip (a keep-alive HTTP/1.1 server on 127.0.0.1 started by the module).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pristine_transport import extensions
from pristine_transport.client import ManifestClient
from pristine_transport.stack import RouterTransport, build_transport

REQUESTS = 200
ROUNDS = 15
BASE = "https://bench.example.test/prefix"
BODY = {"prompt": {"tokens": list(range(64))}, "num_samples": 1}
RESPONSE = b'{"request_id":"r-1","model_id":"m","queue_state":"active"}'

MANIFEST: dict[str, Any] = {
    "name": "bench",
    "base_url": {"default": BASE},
    "headers": {
        "X-API-Key": {"env": "BENCH_KEY", "secret": True, "required": True},
        "User-Agent": {"value": "Bench/1.0"},
        "X-Stainless-OS": {"platform": "os"},
    },
    "pools": {"sample": {"max_concurrency": 400, "throttled_concurrency": 10, "max_bytes": 5_000_000}},
    "retry_policies": {"standard": {"max_retries": 10}},
    "futures": {"retrieve_endpoint": "full"},
    "endpoints": {
        "full": {
            "method": "POST",
            "path": "/api/v1/asample",
            "pool": "sample",
            "retry": "standard",
            "backpressure": {"header": "X-Backpressure"},
            "queue_state": True,
        },
    },
}
ENV = {"BENCH_KEY": "tml-bench-0123456789abcdef"}
URL = BASE + "/api/v1/asample"

# name -> median seconds per round, filled as the benchmarks run
results: dict[str, float] = {}


def handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=RESPONSE, headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def traced_tracer() -> tuple[Any, TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    return provider.get_tracer("bench"), provider


def full_router(tracer: Any = None) -> RouterTransport:
    router = build_transport(MANIFEST, base=httpx.MockTransport(handler), env=ENV, tracer=tracer)
    assert len(_chain(router.stacks["full"])) == 10  # every layer on, the boundary, plus the base
    return router


def _chain(stack: Any) -> list[type]:
    found = []
    while stack is not None:
        found.append(type(stack))
        stack = getattr(stack, "_inner", None)
    return found


def run(
    benchmark: Any, loop: asyncio.AbstractEventLoop, name: str, send_one: Callable[[], Awaitable[httpx.Response]]
) -> None:
    async def round_of_requests() -> None:
        for _ in range(REQUESTS):
            response = await send_one()
            assert response.status_code == 200

    benchmark.pedantic(lambda: loop.run_until_complete(round_of_requests()), rounds=ROUNDS, warmup_rounds=2)
    if benchmark.stats is not None:  # None under --benchmark-disable
        results[name] = benchmark.stats.stats.median


def test_bare_httpx_client(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    run(benchmark, loop, "bare", lambda: client.post(URL, json=BODY))
    loop.run_until_complete(client.aclose())


def test_full_stack_tracing_off(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    client = httpx.AsyncClient(transport=full_router())
    run(benchmark, loop, "full stack, tracing off", lambda: client.post(URL, json=BODY))
    loop.run_until_complete(client.aclose())


def test_full_stack_routed_by_extension(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    client = httpx.AsyncClient(transport=full_router())
    named = {extensions.ENDPOINT: "full"}
    run(benchmark, loop, "full stack, routed by name", lambda: client.post(URL, json=BODY, extensions=named))
    loop.run_until_complete(client.aclose())


def test_full_stack_tracing_on(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    tracer, provider = traced_tracer()
    client = httpx.AsyncClient(transport=full_router(tracer))
    run(benchmark, loop, "full stack, tracing on", lambda: client.post(URL, json=BODY))
    loop.run_until_complete(client.aclose())
    provider.shutdown()


def test_manifest_client_send(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    client = ManifestClient(MANIFEST, env=ENV, base_transport=httpx.MockTransport(handler))
    run(benchmark, loop, "ManifestClient.send", lambda: client.send("full", json=BODY))
    loop.run_until_complete(client.aclose())


BASELINES = ("bare", "bare over loopback")
TARGETS = {"full stack, tracing off": 1.10, "full stack, routed by name": 1.10, "full stack, tracing on": 1.5}


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive HTTP/1.1 server that answers every request with RESPONSE."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(RESPONSE),
        RESPONSE,
    )
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(
                (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
                0,
            )
            await reader.readexactly(length)
            writer.write(answer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture(scope="module")
def loopback_url(loop: asyncio.AbstractEventLoop) -> Iterator[str]:
    server = loop.run_until_complete(asyncio.start_server(_serve, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/prefix/api/v1/asample"
    server.close()
    loop.run_until_complete(server.wait_closed())


def test_bare_httpx_client_over_loopback(benchmark: Any, loop: asyncio.AbstractEventLoop, loopback_url: str) -> None:
    client = httpx.AsyncClient(http2=True)
    run(benchmark, loop, "bare over loopback", lambda: client.post(loopback_url, json=BODY))
    loop.run_until_complete(client.aclose())


def test_full_stack_over_loopback(benchmark: Any, loop: asyncio.AbstractEventLoop, loopback_url: str) -> None:
    client = httpx.AsyncClient(transport=build_transport(MANIFEST, env=ENV))  # the default http2=True base
    run(benchmark, loop, "full stack over loopback", lambda: client.post(loopback_url, json=BODY))
    loop.run_until_complete(client.aclose())


def test_report_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    if "bare" not in results:
        pytest.skip("benchmarks disabled (run with --benchmark-enable)")
    lines = []
    for name, seconds in results.items():
        if name in BASELINES:
            lines.append(f"{name}: {seconds / REQUESTS * 1e6:.1f} us/request")
            continue
        bare = results["bare over loopback" if "loopback" in name else "bare"]
        target = TARGETS.get(name)
        verdict = "" if target is None else f" (target <= {target:.2f}x: {'ok' if seconds / bare <= target else 'MISSED'})"
        lines.append(f"{name}: {seconds / REQUESTS * 1e6:.1f} us/request, {seconds / bare:.2f}x bare{verdict}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
