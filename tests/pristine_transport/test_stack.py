import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pristine_transport import extensions
from pristine_transport.boundary import BoundaryTransport
from pristine_transport.errors import ConfigurationError
from pristine_transport.layers.backpressure import BackpressureLayer
from pristine_transport.layers.headers import HeadersLayer
from pristine_transport.layers.idempotency import IdempotencyLayer
from pristine_transport.layers.pool_limiter import PoolLimiterLayer
from pristine_transport.layers.queue_state import QueueStateLayer
from pristine_transport.layers.retry import RetryLayer
from pristine_transport.layers.telemetry import ClientSpanLayer, TelemetryLayer
from pristine_transport.manifest import load_manifest
from pristine_transport.redaction import Redactor
from pristine_transport.stack import RouterTransport, build_transport
from tinkex.queue_state import QueueState

pytestmark = pytest.mark.anyio

API_KEY = "tml-stack-secret-0123456789abcdef"
BASE = "https://api.example.test/services/prod"

MANIFEST: dict[str, Any] = {
    "name": "demo",
    "base_url": {"default": BASE},
    "headers": {
        "X-API-Key": {"env": "DEMO_API_KEY", "config": "api_key", "secret": True, "required": True},
        "Accept": {"value": "application/json"},
        "User-Agent": {"value": "Demo/{version}"},
    },
    "pools": {
        "train": {"max_concurrency": 1},
        "sample": {"max_concurrency": 4, "throttled_concurrency": 1, "max_bytes": 1000},
    },
    "retry_policies": {
        "standard": {"max_retries": 2, "initial_delay_s": 0.001, "max_delay_s": 0.002},
        "sampling": {
            "kind": "sampling",
            "max_retries": None,
            "progress_timeout_s": 30,
            "initial_delay_s": 0.001,
            "max_delay_s": 0.002,
        },
    },
    "futures": {"retrieve_endpoint": "retrieve_future"},
    "endpoints": {
        "create_session": {"method": "POST", "path": "/api/v1/create_session", "pool": "train", "retry": "standard"},
        "forward": {"method": "POST", "path": "/api/v1/forward", "pool": "train", "size_estimator": "datum"},
        "asample": {
            "method": "POST",
            "path": "/api/v1/asample",
            "pool": "sample",
            "retry": "sampling",
            "backpressure": {"header": "X-Backpressure", "small_backoff_s": 0.01, "large_backoff_s": 0.02},
        },
        "compute_logprobs": {"method": "POST", "path": "/api/v1/compute_logprobs", "pool": "sample", "retry": "sampling"},
        "retrieve_future": {
            "method": "POST",
            "path": "/api/v1/retrieve_future",
            "queue_state": True,
            "retry": {"policy": "standard", "max_retries": 0},
        },
        "heartbeat": {"method": "POST", "path": "/api/v1/heartbeat", "headers": {"Accept": "text/plain", "X-Beat": "1"}},
        "get_run": {"method": "GET", "path": "/api/v1/training_runs/{run_id}"},
        "list_runs": {"method": "GET", "path": "/api/v1/training_runs"},
        "list_sessions": {"method": "GET", "path": "/api/v1/sessions/list", "idempotency": True},
        "get_session": {"method": "GET", "path": "/api/v1/sessions/{session_id}"},
        "archive": {"method": "GET", "path": "/api/v1/training_runs/{run_id}/checkpoints/{checkpoint_id}/archive"},
        "delete_checkpoint": {
            "method": "DELETE",
            "path": "/api/v1/training_runs/{run_id}/checkpoints/{checkpoint_id}",
            "idempotency": False,
        },
    },
}


def datum_size(request: httpx.Request) -> int:
    return 7


class Recorder:
    """A MockTransport handler that records requests and answers from a per-path script."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.script: dict[str, list[httpx.Response]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queued = self.script.get(request.url.path)
        return queued.pop(0) if queued else httpx.Response(200, json={"ok": True})


class ClosingBase(httpx.MockTransport):
    def __init__(self, handler: Any) -> None:
        super().__init__(handler)
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def router(recorder: Recorder) -> RouterTransport:
    return build_transport(
        MANIFEST,
        base=ClosingBase(recorder),
        config={"version": "1.2"},
        env={"DEMO_API_KEY": API_KEY},
        size_estimators={"datum": datum_size},
    )


def chain(stack: httpx.AsyncBaseTransport) -> list[type]:
    layers = []
    while True:
        layers.append(type(stack))
        inner = getattr(stack, "_inner", None)
        if inner is None:
            return layers
        stack = inner


def layer_of(stack: httpx.AsyncBaseTransport, kind: type) -> Any:
    while not isinstance(stack, kind):
        stack = stack._inner  # type: ignore[attr-defined]
    return stack


def test_a_full_endpoint_gets_every_layer_in_the_architecture_order(router: RouterTransport) -> None:
    assert chain(router.stacks["asample"]) == [
        TelemetryLayer,
        IdempotencyLayer,
        RetryLayer,
        PoolLimiterLayer,
        BackpressureLayer,
        HeadersLayer,
        ClientSpanLayer,
        BoundaryTransport,
        ClosingBase,
    ]
    assert chain(router.stacks["retrieve_future"]) == [
        TelemetryLayer,
        IdempotencyLayer,
        RetryLayer,
        QueueStateLayer,
        HeadersLayer,
        ClientSpanLayer,
        BoundaryTransport,
        ClosingBase,
    ]


def test_layers_are_only_included_when_the_manifest_asks(router: RouterTransport) -> None:
    spans, boundary = [ClientSpanLayer, BoundaryTransport, ClosingBase], [BoundaryTransport, ClosingBase]
    assert chain(router.stacks["get_run"]) == [TelemetryLayer, HeadersLayer, *spans]
    assert chain(router.stacks["forward"]) == [TelemetryLayer, IdempotencyLayer, PoolLimiterLayer, HeadersLayer, *spans]
    assert chain(router.stacks["list_sessions"]) == [TelemetryLayer, IdempotencyLayer, HeadersLayer, *spans]
    assert IdempotencyLayer not in chain(router.stacks["delete_checkpoint"])
    assert chain(router.default_stack) == [TelemetryLayer, HeadersLayer, *spans]
    assert boundary == spans[1:]


def test_every_stack_shares_the_one_base_transport(router: RouterTransport) -> None:
    bases = {id(layer_of(stack, ClosingBase)) for stack in [*router.stacks.values(), router.default_stack]}
    assert bases == {id(router.base)}


def test_pool_state_is_shared_per_pool_and_held_by_the_router(router: RouterTransport) -> None:
    train = router.pool_limiters["train"]
    assert layer_of(router.stacks["create_session"], PoolLimiterLayer)._limiter is train
    assert layer_of(router.stacks["forward"], PoolLimiterLayer)._limiter is train
    assert layer_of(router.stacks["asample"], PoolLimiterLayer)._limiter is router.pool_limiters["sample"]
    assert layer_of(router.stacks["asample"], BackpressureLayer)._window is router.backoff_windows["sample"]
    assert set(router.backoff_windows) == {"train", "sample"}


def test_one_progress_tracker_per_sampling_policy(router: RouterTransport) -> None:
    tracker = router.progress_trackers["sampling"]
    assert layer_of(router.stacks["asample"], RetryLayer)._progress is tracker
    assert layer_of(router.stacks["compute_logprobs"], RetryLayer)._progress is tracker
    assert layer_of(router.stacks["create_session"], RetryLayer)._progress is None
    assert list(router.progress_trackers) == ["sampling"]


def test_an_override_of_the_trackers_settings_gets_its_own_tracker() -> None:
    raw = json.loads(json.dumps(MANIFEST))
    raw["endpoints"]["compute_logprobs"]["retry"] = {"policy": "sampling", "max_in_flight": 2}
    raw["endpoints"]["asample"]["retry"] = {"policy": "sampling", "initial_delay_s": 0.0001}
    router = build_transport(
        raw, base=httpx.MockTransport(Recorder()), env={"DEMO_API_KEY": API_KEY}, size_estimators={"datum": datum_size}
    )
    assert set(router.progress_trackers) == {"sampling", "endpoints.compute_logprobs.retry"}
    assert layer_of(router.stacks["asample"], RetryLayer)._progress is router.progress_trackers["sampling"]


def test_size_estimators_resolve_by_name(router: RouterTransport) -> None:
    assert layer_of(router.stacks["forward"], PoolLimiterLayer)._size_of is datum_size
    assert layer_of(router.stacks["create_session"], PoolLimiterLayer)._size_of is None


def test_unknown_size_estimator_names_the_manifest_field() -> None:
    with pytest.raises(ConfigurationError, match=r"endpoints\.forward\.size_estimator: unknown size estimator 'datum'"):
        build_transport(MANIFEST, base=httpx.MockTransport(Recorder()), env={"DEMO_API_KEY": API_KEY})


def test_a_missing_required_header_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="DEMO_API_KEY"):
        build_transport(MANIFEST, base=httpx.MockTransport(Recorder()), env={}, size_estimators={"datum": datum_size})


def test_secret_header_values_are_registered_with_the_redactor(router: RouterTransport) -> None:
    assert API_KEY not in router.redactor.text(f"key={API_KEY}")
    assert API_KEY not in repr(router) and API_KEY not in repr(router.redactor)


def test_the_manifest_may_be_a_path(tmp_path: Path, recorder: Recorder) -> None:
    file = tmp_path / "m.json"
    file.write_text(json.dumps(MANIFEST))
    redactor = Redactor()
    router = build_transport(
        file, base=httpx.MockTransport(recorder), env={"DEMO_API_KEY": API_KEY}, size_estimators={"datum": datum_size},
        redactor=redactor,
    )
    assert router.manifest == load_manifest(MANIFEST)
    assert router.redactor is redactor


def request(method: str, path: str, **ext: Any) -> httpx.Request:
    return httpx.Request(method, BASE + path, extensions=ext)


def test_routing_by_extension_wins_over_the_path(router: RouterTransport) -> None:
    routed = router.route(request("GET", "/anything", **{extensions.ENDPOINT: "heartbeat"}))
    assert routed is router.stacks["heartbeat"]


def test_an_unknown_endpoint_extension_is_a_clear_error(router: RouterTransport) -> None:
    with pytest.raises(ConfigurationError, match=r"names endpoint 'nope', which manifest 'demo' does not have \(known: archive, "):
        router.route(request("GET", "/x", **{extensions.ENDPOINT: "nope"}))


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        ("POST", "/api/v1/asample", "asample"),
        ("GET", "/api/v1/training_runs", "list_runs"),
        ("GET", "/api/v1/training_runs/run-1", "get_run"),
        ("GET", "/api/v1/sessions/list", "list_sessions"),
        ("GET", "/api/v1/sessions/sess-9", "get_session"),
        ("GET", "/api/v1/training_runs/sess:train:0/checkpoints/ckpt-1/archive", "archive"),
        ("GET", "/api/v1/training_runs/sess:train:0/checkpoints/weights/ckpt-1/archive", "archive"),
        ("DELETE", "/api/v1/training_runs/r/checkpoints/weights/ckpt-1", "delete_checkpoint"),
    ],
)
def test_routing_by_method_and_template_under_a_path_prefix(
    router: RouterTransport, method: str, path: str, endpoint: str
) -> None:
    assert router.route(request(method, path)) is router.stacks[endpoint]
    bare = httpx.Request(method, "http://127.0.0.1:8000" + path)
    assert router.route(bare) is router.stacks[endpoint]


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/v1/asample"), ("POST", "/api/v1/unknown"), ("PUT", "/x")])
def test_unmatched_requests_take_the_default_stack(router: RouterTransport, method: str, path: str) -> None:
    assert router.route(request(method, path)) is router.default_stack


def test_the_same_stack_instance_serves_every_request(router: RouterTransport) -> None:
    stacks = dict(router.stacks)
    first = router.route(request("GET", "/api/v1/training_runs/a"))
    second = router.route(request("GET", "/api/v1/training_runs/b"))
    assert first is second is stacks["get_run"]
    assert router.stacks == stacks


def traced_transport(recorder: Recorder, exporter: InMemorySpanExporter) -> RouterTransport:
    """The test manifest's stack over ``recorder``, its spans exported to ``exporter``."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return build_transport(
        MANIFEST,
        base=httpx.MockTransport(recorder),
        env={"DEMO_API_KEY": API_KEY},
        config={"version": "1.2"},
        size_estimators={"datum": datum_size},
        tracer=provider.get_tracer("test"),
    )


async def test_requests_through_a_plain_async_client_get_the_endpoint_stack(
    router: RouterTransport, recorder: Recorder
) -> None:
    exporter = InMemorySpanExporter()
    traced = traced_transport(recorder, exporter)
    async with httpx.AsyncClient(transport=traced, base_url=BASE) as client:
        await client.post("/api/v1/create_session", json={})
        await client.post("/api/v1/whatever", extensions={extensions.ENDPOINT: "heartbeat"})
        await client.get("/not/in/manifest")
    names = [span.name for span in exporter.get_finished_spans() if span.parent is None]
    assert names == ["create_session", "heartbeat", "default"]
    create, heartbeat, unrouted = recorder.requests
    assert create.headers["X-API-Key"] == API_KEY
    assert create.headers["User-Agent"] == "Demo/1.2"
    assert create.headers["Accept"] == "application/json"
    assert "X-Idempotency-Key" in create.headers and create.headers["x-stainless-retry-count"] == "0"
    assert heartbeat.headers["Accept"] == "text/plain" and heartbeat.headers["X-Beat"] == "1"
    assert unrouted.headers["X-API-Key"] == API_KEY and "X-Idempotency-Key" not in unrouted.headers


async def test_a_retried_request_keeps_its_idempotency_key(router: RouterTransport, recorder: Recorder) -> None:
    recorder.script["/services/prod/api/v1/create_session"] = [httpx.Response(503), httpx.Response(503)]
    async with httpx.AsyncClient(transport=router, base_url=BASE) as client:
        response = await client.post("/api/v1/create_session", json={"a": 1})
    assert response.status_code == 200
    keys = {r.headers["X-Idempotency-Key"] for r in recorder.requests}
    assert len(keys) == 1 and len(recorder.requests) == 3
    assert [r.headers["x-stainless-retry-count"] for r in recorder.requests] == ["0", "1", "2"]
    assert all(r.content == b'{"a":1}' for r in recorder.requests)


async def test_attempt_spans_of_a_retried_request_carry_their_resend_count(recorder: Recorder) -> None:
    exporter = InMemorySpanExporter()
    traced = traced_transport(recorder, exporter)
    recorder.script["/services/prod/api/v1/create_session"] = [httpx.Response(503), httpx.Response(503)]
    async with httpx.AsyncClient(transport=traced, base_url=BASE) as client:
        await client.post("/api/v1/create_session", json={})
    attempts = sorted((s for s in exporter.get_finished_spans() if s.parent is not None), key=lambda s: s.start_time)
    assert [s.attributes.get("http.request.resend_count") for s in attempts] == [None, 1, 2]


async def test_the_stack_edits_a_copy_and_leaves_the_callers_request_as_built(
    router: RouterTransport, recorder: Recorder
) -> None:
    recorder.script["/services/prod/api/v1/create_session"] = [httpx.Response(503)]
    async with httpx.AsyncClient(transport=router, base_url=BASE) as client:
        request = client.build_request("POST", "/api/v1/create_session", json={"a": 1})
        built = request.headers.raw
        response = await client.send(request)
    assert response.status_code == 200 and response.request is request
    assert request.headers.raw == built and "X-API-Key" not in request.headers
    assert all(sent is not request for sent in recorder.requests)
    assert all(sent.headers["X-API-Key"] == API_KEY for sent in recorder.requests)


async def test_a_streamed_body_is_read_on_the_callers_request_so_it_can_be_replayed(
    router: RouterTransport, recorder: Recorder
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"a":'
        yield b"1}"

    recorder.script["/services/prod/api/v1/create_session"] = [httpx.Response(503)]
    async with httpx.AsyncClient(transport=router, base_url=BASE) as client:
        request = client.build_request("POST", "/api/v1/create_session", content=body())
        response = await client.send(request)
    assert response.status_code == 200 and len(recorder.requests) == 2
    assert request.content == b'{"a":1}' and all(r.content == b'{"a":1}' for r in recorder.requests)


async def test_two_endpoints_of_one_pool_share_its_concurrency_limit() -> None:
    entered: list[str] = []
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        entered.append(request.url.path)
        await release.wait()
        return httpx.Response(200)

    router = build_transport(
        MANIFEST, base=httpx.MockTransport(handler), env={"DEMO_API_KEY": API_KEY}, size_estimators={"datum": datum_size}
    )
    async with httpx.AsyncClient(transport=router, base_url=BASE) as client:
        first = asyncio.create_task(client.post("/api/v1/create_session"))
        second = asyncio.create_task(client.post("/api/v1/forward"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert entered == ["/services/prod/api/v1/create_session"]  # forward waits for the train pool's one permit
        assert router.pool_limiters["train"].available_count == 0
        release.set()
        await asyncio.gather(first, second)
    assert entered[-1] == "/services/prod/api/v1/forward"
    assert router.pool_limiters["train"].available_count == 1


async def test_backpressure_opens_the_pool_window_shared_by_the_router(router: RouterTransport, recorder: Recorder) -> None:
    recorder.script["/services/prod/api/v1/asample"] = [httpx.Response(429)]
    async with httpx.AsyncClient(transport=router, base_url=BASE) as client:
        response = await client.post("/api/v1/asample", json={})
    assert response.status_code == 200
    assert router.backoff_windows["sample"].is_recent()
    assert not router.backoff_windows["train"].is_recent()
    assert [r.headers["X-Backpressure"] for r in recorder.requests] == ["1", "1"]


async def test_queue_state_reaches_the_requests_observer(router: RouterTransport, recorder: Recorder) -> None:
    seen: list[tuple[QueueState, str | None]] = []

    class Observer:
        def on_queue_state_change(self, state: QueueState, reason: str | None) -> None:
            seen.append((state, reason))

    recorder.script["/services/prod/api/v1/retrieve_future"] = [
        httpx.Response(408, json={"queue_state": "paused_capacity", "queue_state_reason": "busy"})
    ]
    async with httpx.AsyncClient(transport=router, base_url=BASE) as client:
        response = await client.post(
            "/api/v1/retrieve_future", json={"request_id": "r"}, extensions={extensions.QUEUE_OBSERVER: Observer()}
        )
    assert response.status_code == 408  # max_retries 0 override: returned, not retried
    assert seen == [(QueueState.PAUSED_CAPACITY, "busy")]


async def test_aclose_closes_the_base_transport_once(router: RouterTransport) -> None:
    await router.aclose()
    assert router.base.closed == 1  # type: ignore[attr-defined]


def test_the_manifest_picks_the_base_transport_and_an_env_variable_overrides_it() -> None:
    import httpx_aiohttp

    data = {
        "name": "svc",
        "base_url": {"default": "http://svc.test"},
        "transport": {"backend": "aiohttp", "backend_env": "SVC_HTTP_BACKEND"},
    }
    assert isinstance(build_transport(data, env={}).base, httpx_aiohttp.AiohttpTransport)
    assert isinstance(build_transport(data, env={"SVC_HTTP_BACKEND": "httpx"}).base, httpx.AsyncHTTPTransport)
    with pytest.raises(ConfigurationError, match="SVC_HTTP_BACKEND='curl'"):
        build_transport(data, env={"SVC_HTTP_BACKEND": "curl"})
