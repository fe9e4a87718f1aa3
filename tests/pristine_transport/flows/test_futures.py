from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pristine_transport.client import ManifestClient
from pristine_transport.errors import InternalServerError
from pristine_transport.futures import (
    FutureExpiredError,
    FutureHandle,
    FutureResolver,
    FutureRetrieveError,
    FutureTimeoutError,
    RequestCapacityError,
    RequestFailedError,
    RequestRateLimitedError,
    combine,
)
from pristine_transport.layers.pool_limiter import BytesSemaphore
from tests.pristine_transport.flows.conftest import (
    FakeClock,
    LoopbackServer,
    ServerReply,
    ServerRequest,
    assert_no_leaked_tasks,
    manifest,
    mock_client,
    tasks_besides,
)
from tinkex.queue_state import QueueState

pytestmark = pytest.mark.anyio


class Result(msgspec.Struct):
    tokens: list[int]
    score: float


class RecordingObserver:
    def __init__(self) -> None:
        self.changes: list[tuple[QueueState, str | None]] = []

    def on_queue_state_change(self, state: QueueState, reason: str | None) -> None:
        self.changes.append((state, reason))


RESULT = {"tokens": [1, 2, 3], "score": 0.5}


def try_again(state: str | None = None, reason: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"type": "try_again", "request_id": "req-1"}
    if state is not None:
        body["queue_state"] = state
    if reason is not None:
        body["queue_state_reason"] = reason
    return httpx.Response(200, json=body)


class FutureServer:
    """Answers submit with a request id and each poll with the next scripted response (the last one repeats).
    An entry may be an exception to raise or a callable that builds the response."""

    def __init__(self, script: list[Any], request_id: str = "req-1") -> None:
        self.script = list(script)
        self.request_id = request_id
        self.polls: list[httpx.Request] = []
        self.submits: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/submit":
            self.submits.append(request)
            return httpx.Response(200, json={"request_id": self.request_id})
        assert request.url.path == "/v1/retrieve"
        self.polls.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step(request)
        return step

    def poll_bodies(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(p.content) for p in self.polls]


def resolver_for(server: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> FutureResolver:
    client = mock_client(server, manifest_data=kwargs.pop("manifest_data", None))
    clock = kwargs.pop("clock", None) or FakeClock()
    kwargs.setdefault("clock", clock)
    kwargs.setdefault("sleep", clock.sleep)
    kwargs.setdefault("random", lambda: 0.5)  # jitter factor exactly 1
    return FutureResolver(client, **kwargs)


async def close(resolver: FutureResolver) -> None:
    await resolver.aclose()
    await resolver.client.aclose()


async def test_resolves_once_after_try_again_queue_states_and_metadata_only() -> None:
    before = tasks_besides(set())
    server = FutureServer(
        [
            try_again("active"),
            try_again("active"),
            try_again("active"),
            httpx.Response(408, json={"queue_state": "paused_rate_limit"}),
            httpx.Response(408, json={"queue_state": "paused_capacity", "queue_state_reason": "GPUs busy"}),
            httpx.Response(408, json={"queue_state": "active"}),
            httpx.Response(200, json={"status": "complete_metadata", "response_payload_size": 4000}),
            httpx.Response(200, json=RESULT),
        ]
    )
    resolver = resolver_for(server)
    observer = RecordingObserver()
    handle = await resolver.submit("submit", result_type=Result, json={"prompt": "hi"}, observer=observer)
    assert isinstance(handle, FutureHandle)
    assert handle.request_id == "req-1"
    result = await handle
    assert result == Result(tokens=[1, 2, 3], score=0.5)
    assert await handle.result_async() is result  # delivered once: the same object on every await
    assert handle.done()
    assert observer.changes == [
        (QueueState.ACTIVE, None),
        (QueueState.PAUSED_RATE_LIMIT, None),
        (QueueState.PAUSED_CAPACITY, "GPUs busy"),
        (QueueState.ACTIVE, None),
    ]
    assert len(server.polls) == 8
    assert msgspec.json.decode(server.submits[0].content) == {"prompt": "hi"}
    allow = [body["allow_metadata_only"] for body in server.poll_bodies()]
    assert allow == [True] * 7 + [False]
    assert all(body["request_id"] == "req-1" for body in server.poll_bodies())
    assert [p.headers["x-request-iteration"] for p in server.polls] == [str(i) for i in range(8)]
    assert {p.headers["x-request-type"] for p in server.polls} == {"Sample"}
    assert "x-roundtrip-time" in server.polls[0].headers
    assert float(server.polls[0].headers["x-roundtrip-time"]) >= 0.0
    assert not any("x-roundtrip-time" in p.headers for p in server.polls[1:])
    assert resolver.response_budget is not None and resolver.response_budget.available == 10_000
    await close(resolver)
    await assert_no_leaked_tasks(before)


@pytest.mark.parametrize(
    ("body", "category"),
    [
        ({"error": "bad prompt", "category": "user"}, "user"),
        ({"error": "oom", "category": "Server"}, "server"),
        ({"error": "?", "category": "cosmic-rays"}, "unknown"),
        ({"error": "?"}, "unknown"),
    ],
)
async def test_failure_body_raises_request_failed_with_category(body: dict[str, Any], category: str) -> None:
    server = FutureServer([try_again(), httpx.Response(200, json=body)])
    resolver = resolver_for(server)
    handle = await resolver.submit("submit", result_type=Result, json={})
    with pytest.raises(RequestFailedError) as caught:
        await handle
    assert caught.value.category == category
    assert caught.value.request_id == "req-1"
    assert str(body["error"]) in str(caught.value)
    await close(resolver)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Unknown error: max number of clients + cluster connections reached", RequestRateLimitedError),
        ("backend is OVERLOADED, try later", RequestCapacityError),
        ("bad prompt", RequestFailedError),
    ],
)
async def test_failure_messages_the_manifest_names_raise_typed_errors(message: str, kind: type) -> None:
    patterns = {"rate_limit_patterns": ["max number of clients"], "capacity_patterns": ["overloaded"]}
    server = FutureServer([httpx.Response(200, json={"error": message, "category": "server"})])
    resolver = resolver_for(server, manifest_data=manifest(futures={"failure": patterns}))
    handle = await resolver.submit("submit", result_type=Result, json={})
    with pytest.raises(RequestFailedError) as caught:
        await handle
    assert type(caught.value) is kind and caught.value.category == "server"
    await close(resolver)


async def test_expiry_status_raises_future_expired() -> None:
    server = FutureServer([try_again(), httpx.Response(410, json={"detail": "gone"})])
    resolver = resolver_for(server)
    handle = await resolver.submit("submit", result_type=Result, json={})
    with pytest.raises(FutureExpiredError, match="req-1") as caught:
        await handle
    assert caught.value.status_code == 410
    # The work ran (the server issued a future for it): the error says so, and that a re-send runs it again.
    assert caught.value.outcome == "ran"
    assert "ran on the server" in str(caught.value) and "run a second time" in str(caught.value)
    assert len(server.polls) == 2
    await close(resolver)


async def test_bare_400s_are_retried_then_fail() -> None:
    server = FutureServer([httpx.Response(400)])
    resolver = resolver_for(server, manifest_data=manifest(futures={"bad_request_retries": 2}))
    handle = await resolver.submit("submit", result_type=Result, json={})
    with pytest.raises(FutureRetrieveError) as caught:
        await handle
    assert caught.value.status_code == 400
    assert isinstance(caught.value, ValueError)
    assert len(server.polls) == 3  # the first and two retries
    await close(resolver)


async def test_bare_400s_below_the_limit_then_result() -> None:
    server = FutureServer(
        [httpx.Response(400), httpx.Response(400, json={"detail": ""}), httpx.Response(200, json=RESULT)]
    )
    resolver = resolver_for(server, manifest_data=manifest(futures={"bad_request_retries": 2}))
    handle = await resolver.submit("submit", result_type=Result, json={})
    assert (await handle).score == 0.5
    await close(resolver)


@pytest.mark.parametrize(
    ("response", "status"),
    [
        (httpx.Response(400, json={"detail": "request_id is malformed"}), 400),
        (httpx.Response(404, json={"detail": "no such future"}), 404),
        (httpx.Response(401, text="unauthorized"), 401),
    ],
)
async def test_other_statuses_are_fatal_and_name_status_and_body(response: httpx.Response, status: int) -> None:
    server = FutureServer([response])
    resolver = resolver_for(server)
    handle = await resolver.submit("submit", result_type=Result, json={})
    with pytest.raises(FutureRetrieveError) as caught:
        await handle
    assert caught.value.status_code == status
    assert f"HTTP {status}" in str(caught.value)
    assert response.text in str(caught.value)
    assert len(server.polls) == 1
    await close(resolver)


async def test_server_errors_and_408_are_repolled() -> None:
    server = FutureServer(
        [httpx.Response(500), httpx.Response(503, text="busy"), httpx.Response(408), httpx.Response(200, json=RESULT)]
    )
    resolver = resolver_for(server)
    handle = await resolver.submit("submit", result_type=Result, json={})
    assert (await handle).tokens == [1, 2, 3]
    assert len(server.polls) == 4
    await close(resolver)


async def test_connection_errors_back_off_exponentially_and_reset_after_an_answer() -> None:
    refused = httpx.ConnectError("connection refused")
    server = FutureServer(
        [
            refused,
            refused,
            refused,
            refused,
            try_again(),
            refused,
            httpx.ReadTimeout("slow"),
            httpx.Response(200, json=RESULT),
        ]
    )
    clock = FakeClock()
    resolver = resolver_for(
        server,
        clock=clock,
        manifest_data=manifest(futures={"backoff": {"connection_error_max_s": 5.0, "initial_s": 0.01}}),
    )
    handle = await resolver.submit("submit", result_type=Result, json={})
    assert (await handle).score == 0.5
    # 1, 2, 4, then capped at 5; the try-again answer (a fast one: 0.01 s pacing) resets the exponent.
    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 0.01, 1.0, 2.0]
    await close(resolver)


async def test_pacing_fast_not_yet_answers_back_off_and_held_polls_repoll_at_once() -> None:
    clock = FakeClock()

    def held(response: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
        def answer(request: httpx.Request) -> httpx.Response:
            clock.advance(1.5)  # the server held this poll open past held_poll_s
            return response

        return answer

    server = FutureServer(
        [
            try_again(),
            try_again(),
            httpx.Response(502),
            try_again(),
            try_again(),
            held(try_again()),
            held(httpx.Response(408)),
            try_again(),
            httpx.Response(200, json=RESULT),
        ]
    )
    resolver = resolver_for(server, clock=clock)
    handle = await resolver.submit("submit", result_type=Result, json={})
    await handle
    # initial 0.01 doubling, capped at 0.08; two held polls send at once and reset the exponent.
    assert clock.sleeps == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.08, 0.01])
    await close(resolver)


async def test_pacing_jitter_stays_within_bounds() -> None:
    clock = FakeClock()
    server = FutureServer([try_again(), try_again(), httpx.Response(200, json=RESULT)])
    resolver = resolver_for(server, clock=clock, random=lambda: 0.0)  # lowest jitter: x (1 - 0.25)
    await (await resolver.submit("submit", result_type=Result, json={}))
    assert clock.sleeps == pytest.approx([0.0075, 0.015])
    await close(resolver)


async def test_result_not_matching_its_type_names_the_field() -> None:
    server = FutureServer([httpx.Response(200, json={"tokens": [1], "score": "high"})])
    resolver = resolver_for(server)
    handle = await resolver.submit("submit", result_type=Result, json={})
    with pytest.raises(FutureRetrieveError, match=r"score") as caught:
        await handle
    assert "Result" in str(caught.value)
    await close(resolver)


async def test_submit_failure_propagates_without_polling() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"detail": "down"})

    resolver = resolver_for(server)
    with pytest.raises(InternalServerError):
        await resolver.submit("submit", result_type=Result, json={})
    await close(resolver)


async def test_submit_answer_without_request_id_names_the_field() -> None:
    resolver = resolver_for(lambda request: httpx.Response(200, json={"id": "x"}))
    with pytest.raises(FutureRetrieveError, match="request_id"):
        await resolver.submit("submit", result_type=Result, json={})
    await close(resolver)


async def test_combined_handle_reduces_its_parts_once() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        request_id = msgspec.json.decode(request.content)["request_id"]
        return httpx.Response(200, json={"tokens": [int(request_id[-1])], "score": 1.0})

    resolver = resolver_for(server)
    handles = [resolver.handle(f"req-{i}", result_type=Result) for i in range(1, 4)]
    calls = []

    def total(results: list[Result]) -> list[int]:
        calls.append(1)
        return [t for r in results for t in r.tokens]

    combined = combine(handles, total)
    assert combined.request_ids == ["req-1", "req-2", "req-3"]
    first = await combined
    assert first == [1, 2, 3]
    assert await combined.result_async() is first
    assert calls == [1]
    assert combined.done()
    await close(resolver)


async def test_combined_handle_propagates_the_first_failure() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        request_id = msgspec.json.decode(request.content)["request_id"]
        if request_id == "bad":
            return httpx.Response(200, json={"error": "nope", "category": "user"})
        return try_again()

    resolver = resolver_for(server)
    combined = combine([resolver.handle("slow", result_type=Result), resolver.handle("bad", result_type=Result)], list)
    with pytest.raises(RequestFailedError, match="nope"):
        await combined.result_async(timeout=5)
    combined.cancel()
    await close(resolver)


async def test_deadline_stops_polling_and_releases_the_budget() -> None:
    before = tasks_besides(set())
    server = FutureServer(
        [httpx.Response(200, json={"status": "complete_metadata", "response_payload_size": 3000}), try_again()]
    )
    budget = BytesSemaphore(10_000)
    resolver = resolver_for(server, sleep=lambda s: asyncio.sleep(0.005), response_budget=budget)
    handle = await resolver.submit("submit", result_type=Result, json={}, deadline_s=0.1)
    with pytest.raises(FutureTimeoutError) as caught:
        await handle
    assert caught.value.request_id == "req-1"
    assert caught.value.polling_stopped
    assert "0.1" in str(caught.value)
    assert isinstance(caught.value, TimeoutError)
    assert handle.done()
    polls = len(server.polls)
    await asyncio.sleep(0.03)
    assert len(server.polls) == polls
    assert budget.available == 10_000
    await close(resolver)
    await assert_no_leaked_tasks(before)


async def test_result_from_another_thread_and_not_on_the_loop_thread() -> None:
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()

    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=RESULT) if gate.is_set() else try_again()

    resolver = resolver_for(server, sleep=lambda s: asyncio.sleep(0.002))
    handle = await resolver.submit("submit", result_type=Result, json={})
    with pytest.raises(RuntimeError, match="await"):
        handle.result()
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(handle.result(timeout=5)))
    thread.start()
    await asyncio.sleep(0.02)
    assert thread.is_alive()
    loop.call_soon(gate.set)
    await asyncio.to_thread(thread.join, 5)
    assert seen == [await handle]
    assert seen[0] is await handle
    # A done handle answers result() from another thread without needing the loop.
    assert await asyncio.to_thread(handle.result) is seen[0]
    await close(resolver)


async def test_result_timeout_in_another_thread_leaves_polling_running() -> None:
    gate = asyncio.Event()

    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=RESULT) if gate.is_set() else try_again()

    resolver = resolver_for(server, sleep=lambda s: asyncio.sleep(0.002))
    handle = await resolver.submit("submit", result_type=Result, json={})
    with pytest.raises(FutureTimeoutError) as caught:
        await asyncio.to_thread(handle.result, 0.05)
    assert not caught.value.polling_stopped
    assert not handle.done()
    gate.set()
    assert (await handle).score == 0.5
    await close(resolver)


async def test_deadline_seen_from_another_thread_and_cancel_from_another_thread() -> None:
    resolver = resolver_for(lambda request: try_again(), sleep=lambda s: asyncio.sleep(0.002))
    expiring = resolver.handle("req-1", result_type=Result, deadline_s=0.05)
    with pytest.raises(FutureTimeoutError) as caught:
        await asyncio.to_thread(expiring.result, 5)
    assert caught.value.polling_stopped
    cancelled = resolver.handle("req-2", result_type=Result)
    raised: list[BaseException] = []

    def wait_in_thread() -> None:
        try:
            cancelled.result(5)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion below
            raised.append(exc)

    # (asyncio.to_thread would turn the thread's concurrent CancelledError into a cancellation of this test)
    waiter = threading.Thread(target=wait_in_thread)
    waiter.start()
    await asyncio.sleep(0.01)
    canceller = threading.Thread(target=cancelled.cancel)
    canceller.start()
    await asyncio.to_thread(waiter.join, 5)
    assert len(raised) == 1 and isinstance(raised[0], concurrent.futures.CancelledError)
    assert cancelled.done()
    waiter = threading.Thread(target=wait_in_thread)  # a done, cancelled handle answers without the loop
    waiter.start()
    await asyncio.to_thread(waiter.join, 5)
    assert len(raised) == 2 and isinstance(raised[1], concurrent.futures.CancelledError)
    await close(resolver)


async def test_a_timed_out_wait_or_one_of_two_cancelled_awaiters_keeps_polling() -> None:
    gate = asyncio.Event()

    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=RESULT) if gate.is_set() else try_again()

    resolver = resolver_for(server, sleep=lambda s: asyncio.sleep(0.002))
    handle = await resolver.submit("submit", result_type=Result, json={})
    staying = asyncio.create_task(handle.result_async())
    leaving = asyncio.create_task(handle.result_async())
    await asyncio.sleep(0.01)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    with pytest.raises(FutureTimeoutError):
        await handle.result_async(timeout=0.01)
    assert not handle.done()
    gate.set()
    assert (await staying).tokens == [1, 2, 3]
    assert (await handle).tokens == [1, 2, 3]
    await close(resolver)


async def test_cancelling_the_last_awaiter_stops_the_polling() -> None:
    server = FutureServer([try_again()])
    resolver = resolver_for(server, sleep=lambda s: asyncio.sleep(0.002))
    handle = await resolver.submit("submit", result_type=Result, json={})
    waiter = asyncio.create_task(handle.result_async())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0.01)
    assert handle.done()
    polls = len(server.polls)
    await asyncio.sleep(0.02)
    assert len(server.polls) == polls  # no poll after the cancellation
    await close(resolver)


async def test_handle_cancel_stops_polling_and_releases_the_budget() -> None:
    before = tasks_besides(set())
    server = FutureServer(
        [httpx.Response(200, json={"status": "complete_metadata", "response_payload_size": 20_000}), try_again()]
    )
    resolver = resolver_for(server, sleep=lambda s: asyncio.sleep(0.002))
    budget = resolver.response_budget
    assert budget is not None
    handle = await resolver.submit("submit", result_type=Result, json={})
    while budget.available == 10_000:  # overshoot of the budget is allowed once
        await asyncio.sleep(0.001)
    assert budget.available == -10_000
    handle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handle
    assert handle.done()
    assert budget.available == 10_000
    polls = len(server.polls)
    await asyncio.sleep(0.02)
    assert len(server.polls) == polls
    await close(resolver)
    await assert_no_leaked_tasks(before)


async def test_resolver_aclose_stops_every_future() -> None:
    before = tasks_besides(set())
    resolver = resolver_for(lambda request: try_again(), sleep=lambda s: asyncio.sleep(0.002))
    handles = [resolver.handle(f"req-{i}", result_type=Result) for i in range(5)]
    await asyncio.sleep(0.01)
    await close(resolver)
    assert all(h.done() for h in handles)
    await assert_no_leaked_tasks(before)


@pytest.mark.parametrize("not_ready_polls", ["events", "spans"])
async def test_future_span_with_poll_spans_as_children(not_ready_polls: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    server = FutureServer(
        [
            httpx.Response(408, json={"queue_state": "paused_capacity"}),
            try_again("active"),
            httpx.Response(200, json={"status": "complete_metadata", "response_payload_size": 10}),
            httpx.Response(200, json=RESULT),
        ]
    )
    client = mock_client(server, tracer=tracer)
    clock = FakeClock()
    resolver = FutureResolver(
        client,
        tracer=tracer,
        clock=clock,
        sleep=clock.sleep,
        not_ready_polls=not_ready_polls,  # type: ignore[arg-type]
    )
    with tracer.start_as_current_span("caller") as caller:
        handle = await resolver.submit("submit", result_type=Result, json={})
    await handle
    await client.aclose()

    spans = exporter.get_finished_spans()
    future = next(s for s in spans if s.name == "future submit")
    assert future.parent is not None and future.parent.span_id == caller.get_span_context().span_id
    assert future.attributes is not None
    assert future.attributes["pristine.future.endpoint"] == "submit"
    assert future.attributes["pristine.future.request_id"] == "req-1"
    assert future.attributes["pristine.future.polls"] == 4
    assert future.attributes["pristine.future.outcome"] == "ok"
    events = [(e.name, dict(e.attributes or {})) for e in future.events]
    for _, attributes in events:
        attributes.pop("pristine.poll.duration_s", None)  # real time
        attributes.pop("pristine.endpoint", None)
    if not_ready_polls == "events":  # the 408 and the try-again are events with a count, not spans
        assert events == [
            ("queue_state_change", {"queue.state": "paused_capacity"}),
            ("poll.not_ready", {"http.response.status_code": 408, "queue.state": "paused_capacity"}),
            ("queue_state_change", {"queue.state": "active"}),
            ("poll.not_ready", {"http.response.status_code": 200, "queue.state": "active"}),
            ("metadata_only", {"pristine.future.response_bytes": 10}),
        ]
        assert future.attributes["pristine.future.not_ready_polls"] == 2
    else:
        assert events == [
            ("queue_state_change", {"queue.state": "paused_capacity"}),
            ("queue_state_change", {"queue.state": "active"}),
            ("metadata_only", {"pristine.future.response_bytes": 10}),
        ]
    polls = [s for s in spans if s.name == "retrieve"]
    assert len(polls) == (2 if not_ready_polls == "events" else 4)
    assert all(p.parent is not None and p.parent.span_id == future.context.span_id for p in polls)
    submit = next(s for s in spans if s.name == "submit")
    assert submit.parent is not None and submit.parent.span_id == future.context.span_id
    for span in spans:  # the API key never reaches a span
        assert "sk-secret-value-123" not in repr(span.to_json())


@pytest.mark.parametrize(
    ("script", "outcome"),
    [
        ([httpx.Response(200, json={"error": "x", "category": "user"})], "failed"),
        ([httpx.Response(410)], "expired"),
        ([httpx.Response(404)], "error"),
        ([try_again()], "timeout"),
    ],
)
async def test_future_span_outcome(script: list[httpx.Response], outcome: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    resolver = resolver_for(FutureServer(script), tracer=tracer, sleep=lambda s: asyncio.sleep(0.002))
    handle = await resolver.submit("submit", result_type=Result, json={}, deadline_s=0.05)
    with pytest.raises(Exception):
        await handle
    (future,) = [s for s in exporter.get_finished_spans() if s.name == "future submit"]
    assert future.attributes is not None and future.attributes["pristine.future.outcome"] == outcome
    assert future.status.status_code == trace.StatusCode.ERROR
    await close(resolver)


async def test_future_cancelled_before_its_first_poll_ends_its_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = FutureServer([try_again()])
    resolver = resolver_for(server, tracer=provider.get_tracer("test"))
    handle = resolver.handle("req-1", result_type=Result, endpoint="submit")
    handle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handle
    (future,) = exporter.get_finished_spans()
    assert future.name == "future submit"
    assert future.attributes is not None
    assert future.attributes["pristine.future.outcome"] == "cancelled"
    assert future.attributes["pristine.future.polls"] == 0
    assert server.polls == []
    await close(resolver)


async def test_future_over_a_real_loopback_server() -> None:
    before = tasks_besides(set())
    script = [
        ServerReply(body=msgspec.json.encode({"type": "try_again", "queue_state": "active"})),
        ServerReply(
            status=408,
            body=msgspec.json.encode({"queue_state": "paused_rate_limit", "queue_state_reason": "limit"}),
        ),
        ServerReply(status=500, body=b"oops"),
        ServerReply(body=msgspec.json.encode({"status": "complete_metadata", "response_payload_size": 64})),
        ServerReply(body=msgspec.json.encode(RESULT)),
    ]
    seen: list[ServerRequest] = []

    async def handler(request: ServerRequest) -> ServerReply:
        seen.append(request)
        if request.path == "/v1/submit":
            return ServerReply(body=b'{"request_id": "loop-7"}')
        return script.pop(0)

    async with LoopbackServer(handler) as server:
        client = ManifestClient(manifest(), base_url=server.url, env={})
        observer = RecordingObserver()
        resolver = FutureResolver(client)
        handle = await resolver.submit("submit", result_type=Result, json={"n": 1}, observer=observer)
        result = await handle.result_async(timeout=10)
        await client.aclose()
    assert result == Result(tokens=[1, 2, 3], score=0.5)
    assert observer.changes == [(QueueState.ACTIVE, None), (QueueState.PAUSED_RATE_LIMIT, "limit")]
    polls = [r for r in seen if r.path == "/v1/retrieve"]
    assert [msgspec.json.decode(r.body)["allow_metadata_only"] for r in polls] == [True, True, True, True, False]
    assert [r.headers["x-request-iteration"] for r in polls] == ["0", "1", "2", "3", "4"]
    assert all(r.headers["x-api-key"] == "sk-secret-value-123" for r in seen)
    await assert_no_leaked_tasks(before)


async def test_rate_limited_polls_back_off_like_connection_errors() -> None:
    server = FutureServer(
        [httpx.Response(429), httpx.Response(429), httpx.Response(429), httpx.Response(200, json=RESULT)]
    )
    clock = FakeClock()
    resolver = resolver_for(server, clock=clock)
    handle = await resolver.submit("submit", result_type=Result, json={})
    assert (await handle).tokens == [1, 2, 3]
    assert clock.sleeps == [1.0, 2.0, 4.0]
    await close(resolver)


async def test_a_long_unresolved_future_is_reported_with_doubling_warnings(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    answers = [try_again("paused_capacity")] * 40 + [httpx.Response(200, json=RESULT)]
    resolver = resolver_for(
        FutureServer(answers),
        clock=clock,
        manifest_data=manifest(
            futures={"warn_after_s": 1.0, "backoff": {"initial_s": 0.1, "max_s": 0.1, "jitter": 0.0}}
        ),
    )
    with caplog.at_level(logging.WARNING, logger="pristine_transport.futures"):
        handle = await resolver.submit("submit", result_type=Result, json={})
        await handle
    warnings = [r.getMessage() for r in caplog.records if "still unresolved" in r.getMessage()]
    assert len(warnings) == 3  # at 1 s, 2 s and 4 s of the 4 s spent polling (the next one would be at 8 s)
    assert "try_again (paused_capacity)" in warnings[0] and "req-1" in warnings[0]
    await close(resolver)


OTHER_STATUSES = {"shed": [503], "server_errors_from": None, "not_yet": [425], "empty_bad_request": []}
"""Another API's poll statuses: it sheds with 503, says "too early" when not ready, has no server-error range and
sends no empty bad requests."""


async def test_the_poll_statuses_are_the_manifests() -> None:
    server = FutureServer(
        [httpx.Response(503), httpx.Response(425), httpx.Response(425), httpx.Response(200, json=RESULT)]
    )
    clock = FakeClock()
    resolver = resolver_for(server, clock=clock, manifest_data=manifest(futures={"poll_statuses": OTHER_STATUSES}))
    handle = await resolver.submit("submit", result_type=Result, json={})
    assert (await handle).tokens == [1, 2, 3]
    assert clock.sleeps == [1.0, 0.01, 0.02]  # shed: the connection-failure pace; not yet: the quick backoff
    await close(resolver)


@pytest.mark.parametrize("status", [500, 400, 429])
async def test_a_status_the_manifest_does_not_name_ends_the_future(status: int) -> None:
    server = FutureServer([httpx.Response(425), httpx.Response(status)])
    resolver = resolver_for(server, manifest_data=manifest(futures={"poll_statuses": OTHER_STATUSES}))
    handle = await resolver.submit("submit", result_type=Result, json={})
    with pytest.raises(FutureRetrieveError, match=f"fatal status\\): HTTP {status}") as caught:
        await handle
    assert caught.value.status_code == status
    assert len(server.polls) == 2
    await close(resolver)
