"""RetryLayer and ProgressTracker: what is retried, the delays, headers per attempt, bodies, leaks, progress."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pristine_transport import extensions
from pristine_transport.layers.retry import ProgressTimeoutError, ProgressTracker, RetryLayer, retry_after_s
from pristine_transport.manifest import RetryPolicySpec
from pristine_transport.policy import Deadlines, RetryBudget

pytestmark = pytest.mark.anyio

URL = "http://api.test/v1/things"
Outcome = tuple[int, dict[str, str]] | int | Exception


class Script:
    """MockTransport handler answering with scripted outcomes (the last one repeats); records every request."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = outcomes
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(await request.aread())
        outcome = self.outcomes[min(len(self.requests), len(self.outcomes)) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        status, headers = outcome if isinstance(outcome, tuple) else (outcome, {})
        return httpx.Response(status, headers=headers, content=f"attempt {len(self.requests)}".encode())

    def header(self, name: str) -> list[str | None]:
        return [r.headers.get(name) for r in self.requests]


class Sleeps:
    """Records requested delays without sleeping; optionally advances a fake clock."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.delays: list[float] = []
        self._clock = clock

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self._clock is not None:
            self._clock.now += delay


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


POLICY_ONLY = Deadlines(budget=RetryBudget(rounds=False))
"""The policy's own re-sends, without the official budget's further rounds (tests/pristine_transport/deadlines covers those)."""


def policy(**overrides: Any) -> RetryPolicySpec:
    return RetryPolicySpec(**overrides)


def sampling_policy(**overrides: Any) -> RetryPolicySpec:
    return RetryPolicySpec(kind="sampling", max_retries=None, progress_timeout_s=30.0, **overrides)


def layer_for(
    script: Script,
    spec: RetryPolicySpec | None = None,
    *,
    sleeps: Sleeps | None = None,
    random: Callable[[], float] = lambda: 0.0,
    progress: ProgressTracker | None = None,
    deadlines: Deadlines = POLICY_ONLY,
    clock: Callable[[], float] | None = None,
) -> RetryLayer:
    return RetryLayer(
        httpx.MockTransport(script),
        spec or policy(),
        progress=progress,
        sleep=sleeps or Sleeps(),
        random=random,
        deadlines=deadlines,
        clock=clock,
    )


async def post(layer: httpx.AsyncBaseTransport, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=layer) as client:
        return await client.post(URL, content=b"payload", **kwargs)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_re_sent(status: int) -> None:
    script = Script(status, 200)
    response = await post(layer_for(script))
    assert response.status_code == 200
    assert len(script.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422, 302])
async def test_other_statuses_are_returned_at_once(status: int) -> None:
    script = Script(status, 200)
    response = await post(layer_for(script))
    assert response.status_code == status
    assert len(script.requests) == 1


async def test_manifest_can_narrow_the_retried_statuses() -> None:
    script = Script(409, 200)
    response = await post(layer_for(script, policy(retry_statuses=[429], retry_server_errors=False)))
    assert (response.status_code, len(script.requests)) == (409, 1)
    script = Script(503, 200)
    response = await post(layer_for(script, policy(retry_statuses=[429], retry_server_errors=False)))
    assert (response.status_code, len(script.requests)) == (503, 1)


async def test_x_should_retry_true_retries_a_status_that_is_not_retryable() -> None:
    script = Script((400, {"x-should-retry": "true"}), 200)
    assert (await post(layer_for(script))).status_code == 200
    assert len(script.requests) == 2


async def test_x_should_retry_false_vetoes_a_retryable_status() -> None:
    script = Script((503, {"x-should-retry": "false"}), 200)
    assert (await post(layer_for(script))).status_code == 503
    assert len(script.requests) == 1


async def test_a_success_is_never_retried_even_if_the_server_says_so() -> None:
    script = Script((200, {"x-should-retry": "true"}), 500)
    assert (await post(layer_for(script))).status_code == 200
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "100"}, 0.1),
        ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": "60"}, 60.0),
        ({"retry-after": "61"}, 0.5),  # above the 60 s cap: computed backoff
        ({"retry-after": "0"}, 0.5),
        ({"retry-after-ms": "-5"}, 0.5),
        ({"retry-after": "whenever"}, 0.5),
        ({}, 0.5),
    ],
)
async def test_server_delay_is_used_when_within_the_cap(headers: dict[str, str], expected: float) -> None:
    sleeps = Sleeps()
    await post(layer_for(Script((429, headers), 200), sleeps=sleeps))
    assert sleeps.delays == [pytest.approx(expected)]


async def test_retry_after_http_date_counts_from_now() -> None:
    sleeps = Sleeps()
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    await post(layer_for(Script((503, {"retry-after": date}), 200), sleeps=sleeps))
    assert 28 <= sleeps.delays[0] <= 30


def test_retry_after_http_date_is_whole_seconds_like_stainless() -> None:
    headers = httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"})
    base = email.utils.mktime_tz(email.utils.parsedate_tz("Wed, 21 Oct 2015 07:28:00 GMT"))  # type: ignore[arg-type]
    assert retry_after_s(headers, now=lambda: base + 0.4) == 29.0


async def test_respect_retry_after_false_ignores_the_server() -> None:
    sleeps = Sleeps()
    script = Script((429, {"retry-after-ms": "100"}), 200)
    await post(layer_for(script, policy(respect_retry_after=False), sleeps=sleeps))
    assert sleeps.delays == [0.5]


async def test_standard_delay_sequence_and_exhaustion_returns_the_last_response() -> None:
    sleeps = Sleeps()
    script = Script(503)
    response = await post(layer_for(script, policy(max_retries=7), sleeps=sleeps, random=lambda: 0.0))
    assert sleeps.delays == [0.5, 1, 2, 4, 8, 10, 10]
    assert len(script.requests) == 8
    assert response.status_code == 503
    assert response.text == "attempt 8"


async def test_standard_jitter_is_multiplicative_within_three_quarters_and_one() -> None:
    sleeps = Sleeps()
    await post(layer_for(Script(503), policy(max_retries=3), sleeps=sleeps, random=lambda: 1.0))
    assert sleeps.delays == [0.375, 0.75, 1.5]


@pytest.mark.parametrize(
    ("rand", "expected"),
    [
        (0.0, [0.375, 0.75, 1.5, 3.0, 6.0, 7.5, 7.5]),
        (0.5, [0.5, 1, 2, 4, 8, 10, 10]),
        (1.0, [0.625, 1.25, 2.5, 5.0, 10.0, 10.0, 10.0]),  # +25% is clamped to max_delay_s
    ],
)
async def test_sampling_jitter_is_symmetric_and_clamped(rand: float, expected: list[float]) -> None:
    sleeps = Sleeps()
    spec = RetryPolicySpec(kind="sampling", max_retries=7)
    await post(layer_for(Script(503), spec, sleeps=sleeps, random=lambda: rand))
    assert sleeps.delays == pytest.approx(expected)


async def test_max_retries_zero_sends_once() -> None:
    script = Script(503, 200)
    assert (await post(layer_for(script, policy(max_retries=0)))).status_code == 503
    assert len(script.requests) == 1


async def test_transport_errors_are_retried_and_the_last_one_raised() -> None:
    script = Script(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), 200)
    assert (await post(layer_for(script))).status_code == 200
    assert len(script.requests) == 3

    script = Script(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"))
    with pytest.raises(httpx.ReadTimeout):
        await post(layer_for(script, policy(max_retries=2)))
    assert len(script.requests) == 3


async def test_transport_errors_not_retried_when_the_policy_says_so() -> None:
    script = Script(httpx.ConnectError("refused"), 200)
    with pytest.raises(httpx.ConnectError):
        await post(layer_for(script, policy(retry_connection_errors=False)))
    assert len(script.requests) == 1


async def test_other_exceptions_propagate_unretried() -> None:
    script = Script(ValueError("bug in a layer"), 200)
    with pytest.raises(ValueError, match="bug in a layer"):
        await post(layer_for(script))
    assert len(script.requests) == 1


async def test_retry_count_and_read_timeout_headers_per_attempt() -> None:
    script = Script(503, 503, 200)
    async with httpx.AsyncClient(transport=layer_for(script), timeout=httpx.Timeout(45, connect=5)) as client:
        await client.post(URL, content=b"x")
    assert script.header("x-stainless-retry-count") == ["0", "1", "2"]
    assert script.header("x-stainless-read-timeout") == ["45", "45", "45"]

    script = Script(200)
    async with httpx.AsyncClient(transport=layer_for(script), timeout=httpx.Timeout(5.0)) as client:
        await client.post(URL, content=b"x")
    assert script.header("x-stainless-read-timeout") == ["5.0"]


async def test_caller_set_stainless_headers_are_kept_on_every_attempt() -> None:
    script = Script(503, 200)
    headers = {"x-stainless-retry-count": "custom", "x-stainless-read-timeout": "7"}
    await post(layer_for(script), headers=headers)
    assert script.header("x-stainless-retry-count") == ["custom", "custom"]
    assert script.header("x-stainless-read-timeout") == ["7", "7"]


async def test_each_attempt_carries_its_resend_count_in_the_attempt_extension() -> None:
    script = Script(503, 503, 200)
    await post(layer_for(script), headers={"x-stainless-retry-count": "custom"})
    assert [r.extensions[extensions.ATTEMPT] for r in script.requests] == [0, 1, 2]


async def test_one_layer_prints_each_read_timeout_as_given() -> None:
    script = Script(200)
    layer = layer_for(script)
    async with httpx.AsyncClient(transport=layer) as client:
        for timeout in (5, 5.0, 5, 7.5):
            await client.post(URL, content=b"x", timeout=timeout)
    assert script.header("x-stainless-read-timeout") == ["5", "5.0", "5", "7.5"]


async def test_re_sends_start_from_the_headers_as_given_not_as_edited_by_inner_layers() -> None:
    script = Script(503, 503, 200)

    class AddsAHeader(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self._inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            request.headers["x-added"] = "1" if "x-added" not in request.headers else "twice"
            return await self._inner.handle_async_request(request)

    layer = RetryLayer(AddsAHeader(httpx.MockTransport(script)), policy(), sleep=Sleeps())
    request = httpx.Request("POST", URL, content=b"x")
    await layer.handle_async_request(request)
    assert script.requests[0] is request  # the first attempt is the request the stack owns
    assert len({id(r) for r in script.requests}) == 3
    assert script.header("x-added") == ["1", "1", "1"]
    assert script.header("x-stainless-retry-count") == ["0", "1", "2"]
    assert [len(r.headers.get_list("x-stainless-retry-count")) for r in script.requests] == [1, 1, 1]


async def test_no_read_timeout_header_without_a_read_timeout() -> None:
    script = Script(200)
    async with httpx.AsyncClient(transport=layer_for(script), timeout=httpx.Timeout(None)) as client:
        await client.post(URL, content=b"x")
    assert script.header("x-stainless-read-timeout") == [None]


async def chunks() -> AsyncIterator[bytes]:
    for part in (b"first-", b"second-", b"third"):
        await anyio.sleep(0)
        yield part


async def test_async_generator_body_is_re_sent_intact() -> None:
    script = Script(503, 502, 200)
    async with httpx.AsyncClient(transport=layer_for(script)) as client:
        response = await client.post(URL, content=chunks())
    assert response.status_code == 200
    assert script.bodies == [b"first-second-third"] * 3


async def test_each_attempt_exposes_its_content_to_inner_layers() -> None:
    seen: list[bytes] = []

    class ContentReader(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.content)  # raises RequestNotRead if the attempt was not loaded
            return httpx.Response(503 if len(seen) < 2 else 200)

    layer = RetryLayer(ContentReader(), policy(), sleep=Sleeps())
    async with httpx.AsyncClient(transport=layer) as client:
        await client.post(URL, content=chunks())
    assert seen == [b"first-second-third"] * 2


class TrackedStream(httpx.AsyncByteStream):
    def __init__(self, closed: list[bool], *, hang: bool = False) -> None:
        self._closed = closed
        self._hang = hang

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._hang:
            await anyio.sleep_forever()
        yield b"error body"

    async def aclose(self) -> None:
        self._closed.append(True)


async def test_discarded_responses_are_closed_before_the_next_sleep() -> None:
    closed: list[bool] = []
    events: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        events.append("send")
        if events.count("send") < 3:
            return httpx.Response(503, stream=TrackedStream(closed))
        return httpx.Response(200)

    async def sleep(delay: float) -> None:
        events.append(f"sleep closed={len(closed)}")

    layer = RetryLayer(httpx.MockTransport(handler), policy(), sleep=sleep)
    assert (await post(layer)).status_code == 200
    assert events == ["send", "sleep closed=1", "send", "sleep closed=2", "send"]


@pytest.mark.parametrize("body_hangs", [False, True], ids=["during-sleep", "during-discard"])
async def test_cancellation_leaves_no_response_open(body_hangs: bool) -> None:
    closed: list[bool] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"retry-after": "30"}, stream=TrackedStream(closed, hang=body_hangs))

    layer = RetryLayer(httpx.MockTransport(handler), policy())  # real anyio.sleep(30)
    with anyio.move_on_after(0.05) as scope:
        await layer.handle_async_request(httpx.Request("POST", URL, content=b"x"))
    assert scope.cancelled_caught
    assert closed == [True]


async def test_cancellation_during_an_attempt_releases_the_admission_slot() -> None:
    tracker = ProgressTracker(None, max_in_flight=1)
    entered = anyio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        entered.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    hanging = RetryLayer(httpx.MockTransport(hang), policy(), progress=tracker)
    async with anyio.create_task_group() as tg:
        tg.start_soon(hanging.handle_async_request, httpx.Request("POST", URL))
        await entered.wait()
        assert tracker.in_flight == 1
        tg.cancel_scope.cancel()
    assert tracker.in_flight == 0
    quick = layer_for(Script(200), progress=tracker)
    with anyio.fail_after(1):
        assert (await quick.handle_async_request(httpx.Request("POST", URL))).status_code == 200


async def test_max_in_flight_admits_logical_requests_one_at_a_time() -> None:
    tracker = ProgressTracker(None, max_in_flight=1)
    release = anyio.Event()
    order: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        name = request.headers["name"]
        order.append(f"start {name}")
        if name == "a":
            await release.wait()
        order.append(f"end {name}")
        return httpx.Response(200)

    layer = RetryLayer(httpx.MockTransport(handler), policy(), progress=tracker)
    async with anyio.create_task_group() as tg:
        for name in ("a", "b"):
            tg.start_soon(layer.handle_async_request, httpx.Request("GET", URL, headers={"name": name}))
            await anyio.sleep(0.01)
        assert order == ["start a"]
        release.set()
    assert order == ["start a", "end a", "start b", "end b"]


async def test_unlimited_retries_end_with_the_progress_timeout() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(30.0, None, clock=clock)
    script = Script(503)
    layer = layer_for(script, sampling_policy(), sleeps=Sleeps(clock), random=lambda: 0.5, progress=tracker)
    with pytest.raises(ProgressTimeoutError, match=r"^No progress made in 30s\. Requests appear to be stuck\.$"):
        await post(layer)
    # delays 0.5, 1, 2, 4, 8, 10, 10 bring the clock to 35.5 s > 30 s after the 7th attempt
    assert len(script.requests) == 7
    assert issubclass(ProgressTimeoutError, httpx.TimeoutException)


async def test_progress_timeout_exception_is_not_retried_by_itself() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(1.0, None, clock=clock)
    script = Script(httpx.ConnectError("refused"))
    layer = layer_for(script, sampling_policy(), sleeps=Sleeps(clock), random=lambda: 0.5, progress=tracker)
    with pytest.raises(ProgressTimeoutError):
        await post(layer)
    assert len(script.requests) == 2  # 0.5 + 1.0 s of backoff pass the 1 s timeout


async def test_a_request_entering_while_none_is_in_flight_counts_as_progress() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(10.0, None, clock=clock)
    clock.now = 1000.0  # long idle: not stuck, nobody was waiting
    script = Script(503, 503, 200)
    layer = layer_for(script, sampling_policy(), sleeps=Sleeps(clock), random=lambda: 0.5, progress=tracker)
    assert (await post(layer)).status_code == 200
    assert not tracker.stalled()


def test_success_is_progress_and_stall_is_measured_from_it() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(5.0, None, clock=clock)
    clock.now = 4.0
    tracker.record_progress()
    clock.now = 8.9
    assert not tracker.stalled()
    clock.now = 9.1
    assert tracker.stalled()


async def test_an_attempt_in_flight_is_cancelled_when_progress_stops() -> None:
    tracker = ProgressTracker(0.1, None)

    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    layer = RetryLayer(httpx.MockTransport(hang), sampling_policy(), progress=tracker)
    started = time.monotonic()
    with anyio.fail_after(2), pytest.raises(ProgressTimeoutError, match="No progress made in 0.1s"):
        await layer.handle_async_request(httpx.Request("POST", URL))
    assert 0.09 <= time.monotonic() - started < 1.0
    assert tracker.in_flight == 0


async def test_progress_of_another_request_keeps_a_stuck_attempt_alive() -> None:
    tracker = ProgressTracker(0.25, None)
    outcome: list[object] = []

    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    stuck = RetryLayer(httpx.MockTransport(hang), sampling_policy(), progress=tracker)
    healthy = layer_for(Script(200), sampling_policy(), progress=tracker)

    async def run_stuck() -> None:
        try:
            await stuck.handle_async_request(httpx.Request("POST", URL))
        except ProgressTimeoutError as exc:
            outcome.append((exc, time.monotonic()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_stuck)
        for _ in range(12):  # about 0.5 s of steady progress, twice the timeout
            await anyio.sleep(0.04)
            await healthy.handle_async_request(httpx.Request("POST", URL))
        progress_stopped = time.monotonic()
        assert outcome == []
    [(exc, failed_at)] = outcome
    assert isinstance(exc, ProgressTimeoutError)
    assert 0.2 <= failed_at - progress_stopped < 1.5


def test_unlimited_policy_without_a_progress_timeout_is_rejected() -> None:
    with pytest.raises(ValueError, match="progress_timeout_s"):
        RetryLayer(httpx.MockTransport(Script(200)), RetryPolicySpec(kind="sampling", max_retries=None))


async def test_each_retry_is_logged_without_headers_or_query(caplog: pytest.LogCaptureFixture) -> None:
    script = Script(503, httpx.ConnectError("refused"), 200)
    with caplog.at_level(logging.INFO, logger="pristine_transport.retry"):
        async with httpx.AsyncClient(transport=layer_for(script)) as client:
            await client.post(URL + "?token=query-secret", headers={"x-api-key": "tml-header-secret"})
    lines = [r.getMessage() for r in caplog.records if r.name == "pristine_transport.retry"]
    assert lines == [
        "retrying POST /v1/things: re-send 1 in 0.500s after status 503",
        "retrying POST /v1/things: re-send 2 in 1.000s after ConnectError",
    ]


async def test_retries_are_span_events_and_the_count_a_span_attribute() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    script = Script((429, {"retry-after-ms": "20"}), 503, 200)
    with tracer.start_as_current_span("create_thing"):
        await post(layer_for(script))
    (span,) = exporter.get_finished_spans()
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    assert events == [
        ("retry.backoff", {"retry.attempt": 1, "retry.delay_s": 0.02, "retry.reason": "status 429"}),
        ("retry.backoff", {"retry.attempt": 2, "retry.delay_s": 1.0, "retry.reason": "status 503"}),
    ]
    assert span.attributes is not None and span.attributes["pristine.retries"] == 2


class LoopbackServer:
    """HTTP/1.1 on 127.0.0.1 answering with scripted statuses (the last repeats); records bodies and connections."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = statuses
        self.bodies: list[bytes] = []
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> LoopbackServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1/things"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")[1:]
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
                if headers.get("transfer-encoding") == "chunked":
                    body = await self._read_chunked(reader)
                else:
                    body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.bodies.append(body)
                status = self.statuses[min(len(self.bodies), len(self.statuses)) - 1]
                payload = b'{"attempt": %d}' % len(self.bodies)
                writer.write(b"HTTP/1.1 %d Scripted\r\nContent-Length: %d\r\n\r\n%s" % (status, len(payload), payload))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return body
            body += chunk[:-2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the loopback server uses asyncio streams


def one_connection_client(spec: RetryPolicySpec) -> httpx.AsyncClient:
    base = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1))
    # A leaked response would hold the only connection, so the next attempt would hit the pool timeout,
    # which these policies do not retry.
    layer = RetryLayer(
        base, msgspec.structs.replace(spec, retry_connection_errors=False), sleep=Sleeps(), deadlines=POLICY_ONLY
    )
    return httpx.AsyncClient(transport=layer, timeout=httpx.Timeout(5, pool=0.5))


async def test_one_connection_pool_survives_discarded_responses() -> None:
    async with LoopbackServer(503, 500, 200) as server:
        async with one_connection_client(policy()) as client:
            response = await client.post(server.url, content=chunks())
    assert response.status_code == 200
    assert response.json() == {"attempt": 3}
    assert server.bodies == [b"first-second-third"] * 3
    assert server.connections == 1  # every discarded body was read, so the connection was reused


async def test_exhausted_retries_hand_the_last_response_to_the_caller_over_a_real_pool() -> None:
    async with LoopbackServer(503) as server:
        async with one_connection_client(policy(max_retries=2)) as client:
            first = await client.post(server.url, content=b"one")
            second = await client.post(server.url, content=b"two")
    assert (first.status_code, first.json()) == (503, {"attempt": 3})
    assert (second.status_code, second.json()) == (503, {"attempt": 6})
    assert server.bodies == [b"one"] * 3 + [b"two"] * 3
    assert server.connections == 1


class BrokenBodyStream(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"partial"
        raise httpx.RemoteProtocolError("peer closed the connection mid-body")


async def test_a_body_broken_after_the_headers_is_a_failed_attempt_and_re_sent() -> None:
    attempts: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) == 1:
            return httpx.Response(200, stream=BrokenBodyStream())
        return httpx.Response(200, content=b"whole")

    layer = RetryLayer(httpx.MockTransport(handler), policy(), sleep=Sleeps())
    response = await post(layer)
    assert response.content == b"whole"
    assert len(attempts) == 2


async def test_streaming_endpoints_leave_the_body_to_the_caller() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=BrokenBodyStream())

    layer = RetryLayer(httpx.MockTransport(handler), policy(), sleep=Sleeps(), buffer_body=False)
    async with httpx.AsyncClient(transport=layer) as client:
        async with client.stream("POST", URL, content=b"x") as response:
            with pytest.raises(httpx.RemoteProtocolError):
                await response.aread()


async def test_the_manifest_names_the_retry_headers_and_none_turns_one_off() -> None:
    from pristine_transport.manifest import RetryHeadersSpec

    script = Script((503, {"X-Retry": "false"}), 200)
    headers = RetryHeadersSpec(attempt="X-Attempt", read_timeout=None, should_retry="X-Retry")
    layer = RetryLayer(httpx.MockTransport(script), policy(), sleep=Sleeps(), headers=headers)
    response = await post(layer, timeout=httpx.Timeout(7.0))
    assert response.status_code == 503  # the server's own header vetoed the retry
    assert script.header("x-attempt") == ["0"]
    assert script.header("x-stainless-retry-count") == [None] and script.header("x-stainless-read-timeout") == [None]
