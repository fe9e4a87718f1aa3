"""Re-sent writes are answered from the replay cache: nothing runs twice, whatever the retry level."""

from __future__ import annotations

import pytest

from tinkex.testing import FaultRule, LocalServer

pytestmark = pytest.mark.anyio


async def test_same_idempotency_key_returns_the_same_reply(wire, server: LocalServer) -> None:
    key = {"X-Idempotency-Key": "stainless-python-retry-1"}
    first = await wire.post("create_session", wire.create_session_body(), headers=key)
    again = await wire.post("create_session", wire.create_session_body(), headers=key)
    assert first.json() == again.json()
    assert len(server.ledger.executions("create_session")) == 1
    assert len(server.ledger.received("create_session")) == 2


async def test_same_seq_id_with_a_new_key_is_not_executed_again(wire, server: LocalServer) -> None:
    """execute_with_retries re-sends a training op with a new key and the same seq_id (§1.1)."""
    model_id = await wire.model()
    body = wire.forward_backward_body(model_id, 1)
    first = await wire.post("forward_backward", body, headers={"X-Idempotency-Key": "k-1"})
    again = await wire.post("forward_backward", body, headers={"X-Idempotency-Key": "k-2"})
    assert first.json() == again.json()
    assert [e.idempotency_key for e in server.ledger.executions("forward_backward")] == ["k-1"]
    assert server.model_state(model_id).pending_backward == 1


async def test_sample_seq_ids_count_per_sampling_session(wire, server: LocalServer) -> None:
    session_id = await wire.session()
    first, second = await wire.sampler(session_id, 0), await wire.sampler(session_id, 1)
    a = await wire.post("asample", wire.sample_body(first, 0))
    b = await wire.post("asample", wire.sample_body(second, 0))
    a_again = await wire.post("asample", wire.sample_body(first, 0))
    assert a.json() != b.json() and a.json() == a_again.json()
    assert len(server.ledger.executions("asample")) == 2
    assert not server.ledger.duplicates_executed()


async def test_lost_answer_then_retry_hits_the_replay_cache(wire, server: LocalServer) -> None:
    model_id = await wire.model()
    server.faults.add(FaultRule(endpoint="optim_step", status=503, after_execute=True))
    body = {"adam_params": {}, "model_id": model_id, "seq_id": 1}
    await wire.result(await wire.post("forward_backward", wire.forward_backward_body(model_id, 0)))
    lost = await wire.post("optim_step", body, headers={"X-Idempotency-Key": "k-opt"})
    assert lost.status_code == 503
    retried = await wire.post("optim_step", body, headers={"X-Idempotency-Key": "k-opt"})
    assert retried.status_code == 200
    assert (await wire.result(retried))["metrics"]
    assert len(server.ledger.executions("optim_step")) == 1
    assert server.model_state(model_id).step == 1
    assert not server.ledger.duplicates_executed()


async def test_rejected_requests_do_not_poison_the_cache(wire, server: LocalServer) -> None:
    server.faults.add(FaultRule(endpoint="create_session", status=503))
    key = {"X-Idempotency-Key": "k-s"}
    assert (await wire.post("create_session", wire.create_session_body(), headers=key)).status_code == 503
    assert (await wire.post("create_session", wire.create_session_body(), headers=key)).status_code == 200
    assert len(server.ledger.executions("create_session")) == 1


async def test_an_expired_future_may_be_executed_again(wire, server: LocalServer) -> None:
    """After a 410 the work is gone: the same seq_id re-submitted runs again, and that is no duplicate."""
    sampler_id = await wire.sampler(await wire.session())
    server.faults.add(FaultRule.expired())
    future = await wire.post("asample", wire.sample_body(sampler_id, 0))
    assert (await wire.poll(future.json()["request_id"])).status_code == 410
    again = await wire.post("asample", wire.sample_body(sampler_id, 0))
    assert again.json()["request_id"] != future.json()["request_id"]
    assert (await wire.result(again))["sequences"]
    assert len(server.ledger.executions("asample")) == 2
    assert not server.ledger.duplicates_executed()


async def test_duplicates_executed_detects_a_double_execution() -> None:
    """The ledger check itself can fail: two live executions with one key form a group."""
    from tinkex.testing import Execution, Ledger

    ledger = Ledger()
    for request_id in ("req-1", "req-2"):
        ledger.record_execution(
            Execution("asample", "k", "s:sample:0", 0, "s", request_id, 0.0, seq_scope="sample:s:sample:0")
        )
    assert len(ledger.duplicates_executed()) == 2  # once by key, once by seq
    ledger.mark_expired("req-1")
    assert ledger.duplicates_executed() == []
