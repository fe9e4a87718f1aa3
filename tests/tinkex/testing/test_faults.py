"""Fault injection: each kind of fault, how often rules fire, and what the client sees."""

from __future__ import annotations

import time

import httpx
import pytest

from tinkex.testing import FaultRule, LocalServer

pytestmark = pytest.mark.anyio


async def test_status_with_headers_fires_count_times(wire, server: LocalServer) -> None:
    rule = FaultRule.retry_after("create_session", status=429, retry_after_ms=100, count=2)
    server.faults.add(rule)
    replies = [await wire.post("create_session", wire.create_session_body()) for _ in range(3)]
    assert [r.status_code for r in replies] == [429, 429, 200]
    assert replies[0].headers["retry-after-ms"] == "100"
    assert replies[0].json() == {"detail": "injected fault: HTTP 429"}
    assert server.faults.fired(rule) == 2 and server.faults.pending() == []
    assert [r.status for r in server.ledger.received("create_session")] == [429, 429, 200]


async def test_custom_body_and_skip(wire, server: LocalServer) -> None:
    server.faults.add(FaultRule(endpoint="create_session", status=500, body={"error": "boom"}, skip=1))
    statuses = [(await wire.post("create_session", wire.create_session_body())).status_code for _ in range(3)]
    assert statuses == [200, 500, 200]


async def test_empty_400_has_no_body(wire, server: LocalServer) -> None:
    server.faults.add(FaultRule.empty_400("optim_step", count=2))
    model_id = await wire.model()
    body = {"adam_params": {"learning_rate": 0.0001}, "model_id": model_id, "seq_id": 1}
    first = await wire.post("optim_step", body)
    assert (first.status_code, first.headers["content-length"], first.content) == (400, "0", b"")
    assert (await wire.post("optim_step", body)).status_code == 400
    assert (await wire.post("optim_step", body)).status_code == 200
    assert len(server.ledger.executions("optim_step")) == 1


def _pattern(seed: int) -> list[int]:
    with LocalServer(seed=seed, faults=[FaultRule(endpoint="healthz", status=503, rate=0.5)]) as server:
        with httpx.Client(base_url=server.base_url) as http:
            return [http.get("/api/v1/healthz").status_code for _ in range(24)]


def test_rates_are_seeded_and_reproducible() -> None:
    first, again, other = _pattern(7), _pattern(7), _pattern(8)
    assert first == again
    assert {200, 503} == set(first)
    assert first != other


async def test_delay_slows_the_request_down(wire, server: LocalServer) -> None:
    server.faults.add(FaultRule(endpoint="get_server_capabilities", delay=0.2))
    started = time.monotonic()
    reply = await wire.client.get("/api/v1/get_server_capabilities")
    assert reply.status_code == 200 and time.monotonic() - started >= 0.2


@pytest.mark.parametrize("http2", [False, True])
async def test_dropped_connection_is_a_transport_error(server: LocalServer, headers: dict[str, str], http2: bool) -> None:
    server.faults.add(FaultRule(endpoint="create_session", drop_connection=True))
    options = {"http2": True, "http1": False} if http2 else {}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, **options) as http:
        body = {"tags": [], "user_metadata": {}, "sdk_version": "x"}
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):  # a reset may race the close under h2
            await http.post("/api/v1/create_session", json=body)
        assert (await http.post("/api/v1/create_session", json=body)).status_code == 200
    assert len(server.ledger.executions("create_session")) == 1
    assert server.ledger.received("create_session")[0].status is None


async def test_dropped_answer_after_execution_is_replayed(wire, server: LocalServer) -> None:
    sampler_id = await wire.sampler(await wire.session())
    server.faults.add(FaultRule(endpoint="asample", drop_connection=True, after_execute=True))
    key = {"X-Idempotency-Key": "k-sample"}
    with pytest.raises(httpx.TransportError):
        await wire.post("asample", wire.sample_body(sampler_id), headers=key)
    assert len(server.ledger.executions("asample")) == 1  # it ran; only the answer was lost
    retried = await wire.post("asample", wire.sample_body(sampler_id), headers=key)
    assert retried.status_code == 200 and (await wire.result(retried))["sequences"]
    assert len(server.ledger.executions("asample")) == 1


async def test_queue_states_try_again_and_metadata_only_in_order(wire, server: LocalServer) -> None:
    """The §12.3 fault run: 408 x2, then try_again x2, then metadata-only, then the result."""
    server.faults.add(
        FaultRule.queue_paused("paused_capacity", "fake capacity pause", count=2),
        FaultRule.try_again(count=2, queue_state="paused_rate_limit"),
        FaultRule.metadata_only(),
    )
    session_id = await wire.session()
    future = (await wire.post("create_model", wire.create_model_body(session_id))).json()
    replies = [await wire.poll(future["request_id"], allow_metadata_only=True) for _ in range(5)]
    final = await wire.poll(future["request_id"], allow_metadata_only=False)
    assert [r.status_code for r in replies] == [408, 408, 200, 200, 200]
    assert replies[0].json() == {"queue_state": "paused_capacity", "queue_state_reason": "fake capacity pause"}
    assert replies[2].json()["type"] == "try_again" and replies[2].json()["queue_state"] == "paused_rate_limit"
    assert replies[4].json() == {"status": "complete_metadata", "response_payload_size": len(final.content)}
    assert final.json() == {"model_id": future["model_id"]}


async def test_metadata_only_waits_for_a_poll_that_allows_it(wire, server: LocalServer) -> None:
    server.faults.add(FaultRule.metadata_only())
    session_id = await wire.session()
    model = (await wire.post("create_model", wire.create_model_body(session_id))).json()
    assert (await wire.poll(model["request_id"], allow_metadata_only=False)).json() == {"model_id": model["model_id"]}
    assert (await wire.poll(model["request_id"], allow_metadata_only=True)).json()["status"] == "complete_metadata"


@pytest.mark.parametrize("category", ["user", "server"])
async def test_request_failed_with_category(wire, server: LocalServer, category: str) -> None:
    model_id = await wire.model()
    server.faults.add(FaultRule.request_failed("forward_backward", category, "fake failure"))  # type: ignore[arg-type]
    failure = await wire.result(await wire.post("forward_backward", wire.forward_backward_body(model_id, 1)))
    assert failure == {"error": "fake failure", "category": category}
    assert server.model_state(model_id).pending_backward == 0  # the failed op changed nothing


async def test_poll_faults_can_target_one_kind_of_future(wire, server: LocalServer) -> None:
    session_id = await wire.session()
    sampler_id = await wire.sampler(session_id)
    server.faults.add(FaultRule.expired(future_endpoint="asample"))
    model = (await wire.post("create_model", wire.create_model_body(session_id))).json()
    assert (await wire.poll(model["request_id"])).status_code == 200
    sample = (await wire.post("asample", wire.sample_body(sampler_id))).json()
    assert (await wire.poll(sample["request_id"])).status_code == 410
    assert (await wire.poll(sample["request_id"])).status_code == 410  # gone for good


def test_rules_are_validated() -> None:
    with pytest.raises(ValueError, match="rate"):
        FaultRule(endpoint="asample", status=503, rate=1.5)
    with pytest.raises(ValueError, match="needs status"):
        FaultRule(endpoint="asample")
    with pytest.raises(ValueError, match="retrieve_future"):
        FaultRule(endpoint="asample", kind="try_again")


async def test_rules_given_at_construction(headers: dict[str, str]) -> None:
    async with LocalServer(faults=[FaultRule(status=502)]) as server:  # endpoint None: any endpoint
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
            assert (await http.get("/api/v1/get_server_capabilities")).status_code == 502
            assert (await http.get("/api/v1/get_server_capabilities")).status_code == 200


async def test_a_respond_rule_can_target_the_polls_of_one_endpoints_futures() -> None:
    rule = FaultRule.queue_paused(count=1, future_endpoint="optim_step")
    async with LocalServer(faults=[rule]) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers={"X-API-Key": "tml-test"}) as http:
            session = (await http.post("/api/v1/create_session", json={"tags": [], "user_metadata": {}, "sdk_version": "0.16.1", "project_id": None})).json()["session_id"]
            created = (await http.post("/api/v1/create_model", json={"session_id": session, "model_seq_id": 0, "base_model": "Qwen/Qwen3-8B", "user_metadata": None, "lora_config": {"rank": 8, "seed": None, "train_unembed": True, "train_mlp": True, "train_attn": True}})).json()
            model_poll = await http.post("/api/v1/retrieve_future", json={"request_id": created["request_id"], "allow_metadata_only": True})
            assert model_poll.status_code == 200  # a create_model future: the rule does not match
            step = (await http.post("/api/v1/optim_step", json={"adam_params": {}, "model_id": created["model_id"], "seq_id": 1})).json()
            paused = await http.post("/api/v1/retrieve_future", json={"request_id": step["request_id"], "allow_metadata_only": True})
            assert paused.status_code == 408
            assert server.faults.fired(rule) == 1
