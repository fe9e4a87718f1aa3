"""Training requests: seq_ids 1, 2, 3 … per training client, each request dispatched only once the previous one
has its future id (not once it completes), and forward_backward chunking with combined results."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sdk_helpers import BASE_MODEL, WireFake, datum, fake_client, server_client

import tinkex
from tinkex import BadRequestError, InvalidArgumentError, types
from tinkex.errors import ChunkedRequestError
from tinkex.testing import FaultRule, LocalServer

SUBMIT_DELAY_S = 0.3
BACKGROUND = frozenset({"retrieve_future", "telemetry", "session_heartbeat"})


def hold_submission(wire: WireFake, endpoint: str) -> list[str]:
    """Delay ``endpoint``'s answer (its future id) and note any training request that arrives meanwhile."""
    overtaken: list[str] = []

    async def slow(request: httpx.Request, body: Any) -> None:
        before = len(wire.sent())
        await asyncio.sleep(SUBMIT_DELAY_S)
        overtaken.extend(s.endpoint for s in wire.sent()[before:] if s.endpoint not in BACKGROUND)

    wire.overrides[endpoint] = slow
    return overtaken


def resolve_only_after(wire: WireFake, endpoint: str, waiting_for: str) -> None:
    """``endpoint``'s future answers try_again until ``waiting_for`` has arrived: a client that waited for
    completion before dispatching the next request would never finish."""

    async def gated(request: httpx.Request, body: Any) -> httpx.Response | None:
        if body["request_id"] in wire.future_ids(endpoint) and not wire.sent(waiting_for):
            await asyncio.sleep(0.01)
            return wire.try_again(body["request_id"])
        return None

    wire.overrides["retrieve_future"] = gated


def training_seq_ids(wire: WireFake) -> list[tuple[str, int]]:
    return [(s.endpoint, s.body["seq_id"]) for s in wire.sent() if s.body and "seq_id" in s.body]


def test_sync_calls_return_at_once_and_dispatch_in_order(wire: WireFake) -> None:
    overtaken = hold_submission(wire, "forward_backward")
    resolve_only_after(wire, "forward_backward", "optim_step")
    client = fake_client(wire)
    try:
        training = client.create_lora_training_client(BASE_MODEL)
        started = time.monotonic()
        forward_backward = training.forward_backward([datum([1, 2, 3])], "cross_entropy")
        optim = training.optim_step(types.AdamParams(learning_rate=0.01))
        save = training.save_weights_for_sampler("s1")
        assert time.monotonic() - started < SUBMIT_DELAY_S / 2, "sync training calls must not block"
        assert save.result(5).path.endswith("/sampler_weights/s1")
        assert forward_backward.result(5).metrics["loss:sum"] == 1.0
        optim.result(5)
    finally:
        client.close()

    assert overtaken == [], "optim_step was sent before forward_backward had its future id"
    assert training_seq_ids(wire) == [("forward_backward", 1), ("optim_step", 2), ("save_weights_for_sampler", 3)]
    fb_sent, optim_sent = wire.sent("forward_backward")[0], wire.sent("optim_step")[0]
    assert optim_sent.time - fb_sent.time >= SUBMIT_DELAY_S * 0.9


@pytest.mark.anyio
async def test_async_calls_submitted_together_dispatch_in_order(wire: WireFake) -> None:
    overtaken = hold_submission(wire, "forward_backward")
    resolve_only_after(wire, "forward_backward", "optim_step")
    client = fake_client(wire)
    training = await client.create_lora_training_client_async(BASE_MODEL)
    futures = await asyncio.gather(
        training.forward_backward_async([datum([1, 2, 3])], "cross_entropy"),
        training.optim_step_async(types.AdamParams()),
        training.save_state_async("ckpt"),
    )
    results = [await future for future in futures]
    await client.aclose()

    assert results[0].metrics == {"loss:sum": 1.0, "tokens:max": 1.0}
    assert results[2].path.endswith("/weights/ckpt")
    assert overtaken == []
    assert training_seq_ids(wire) == [("forward_backward", 1), ("optim_step", 2), ("save_weights", 3)]


@pytest.mark.anyio
async def test_sync_and_async_calls_share_one_sequence(wire: WireFake) -> None:
    client = fake_client(wire)
    training = await client.create_lora_training_client_async(BASE_MODEL)
    first = await training.forward_backward_async([datum([1])], "cross_entropy")
    second = training.optim_step(types.AdamParams())  # runs on the background loop
    third = await training.forward_async([datum([2])], "cross_entropy")
    await first
    await second
    await third
    await client.aclose()
    assert training_seq_ids(wire) == [("forward_backward", 1), ("optim_step", 2), ("forward", 3)]


def test_more_than_1024_datums_are_chunked_with_consecutive_seq_ids(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        training = client.create_lora_training_client(BASE_MODEL)
        data = [datum([i % 50 + 1]) for i in range(1025)]
        combined = training.forward_backward(data, "cross_entropy")
        training.optim_step(types.AdamParams()).result(5)
        output = combined.result(5)
    finally:
        client.close()

    chunks = wire.sent("forward_backward")
    assert [len(c.body["forward_backward_input"]["data"]) for c in chunks] == [1024, 1]
    assert training_seq_ids(wire) == [("forward_backward", 1), ("forward_backward", 2), ("optim_step", 3)]
    assert len(output.loss_fn_outputs) == 1025
    # Metrics reduced across chunks by their suffix: sums add, maxima take the max.
    assert output.metrics == {"loss:sum": 1025.0, "tokens:max": 1024.0}


@pytest.mark.anyio
async def test_more_than_5mb_estimated_is_chunked_by_bytes(wire: WireFake) -> None:
    # 60 000 tokens + 2 x 60 000 tensor elements at 10 bytes each = 1.8 MB estimated per datum.
    big = [datum(list(range(1, 60_001))) for _ in range(3)]
    client = fake_client(wire)
    training = await client.create_lora_training_client_async(BASE_MODEL)
    output = await (await training.forward_backward_async(big, "cross_entropy"))
    await client.aclose()
    chunks = wire.sent("forward_backward")
    assert [len(c.body["forward_backward_input"]["data"]) for c in chunks] == [2, 1]
    assert [c.body["seq_id"] for c in chunks] == [1, 2]
    assert output.metrics["loss:sum"] == 3.0
    assert len(output.loss_fn_outputs) == 3


def test_empty_data_sends_nothing_and_uses_no_seq_id(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        training = client.create_lora_training_client(BASE_MODEL)
        output = training.forward_backward([], "cross_entropy").result(5)
        training.optim_step(types.AdamParams()).result(5)
    finally:
        client.close()
    assert output.loss_fn_outputs == [] and output.metrics == {}
    assert training_seq_ids(wire) == [("optim_step", 1)]


def test_a_rejected_request_does_not_block_the_ones_after_it(wire: WireFake) -> None:
    async def reject(request: httpx.Request, body: Any) -> httpx.Response:
        return httpx.Response(400, json={"detail": "bad datum"})

    wire.overrides["forward_backward"] = reject
    client = fake_client(wire)
    try:
        training = client.create_lora_training_client(BASE_MODEL)
        failed = training.forward_backward([datum([1])], "cross_entropy")
        optim = training.optim_step(types.AdamParams())
        optim.result(5)
        with pytest.raises(BadRequestError, match="bad datum"):
            failed.result(5)
    finally:
        client.close()
    # refused before it ran: its seq_id goes to the next request, leaving no gap in the model's sequence
    assert training_seq_ids(wire) == [("forward_backward", 1), ("optim_step", 1)]


def test_a_rejected_chunk_does_not_block_the_requests_after_it(wire: WireFake) -> None:
    rejected: list[int] = []

    async def reject_first(request: httpx.Request, body: Any) -> httpx.Response | None:
        if rejected:
            return None
        rejected.append(body["seq_id"])
        return httpx.Response(400, json={"detail": "bad chunk"})

    wire.overrides["forward_backward"] = reject_first
    client = fake_client(wire)
    try:
        training = client.create_lora_training_client(BASE_MODEL)
        failed = training.forward_backward([datum([i % 50 + 1]) for i in range(1025)], "cross_entropy")
        optim = training.optim_step(types.AdamParams())
        optim.result(5)
        with pytest.raises(ChunkedRequestError, match="bad chunk") as caught:
            failed.result(5)
    finally:
        client.close()
    assert [chunk.state for chunk in caught.value.chunks] == ["failed", "not_sent"]
    assert training_seq_ids(wire) == [("forward_backward", 1), ("optim_step", 1)]


def test_a_mistaken_argument_raises_at_the_call_and_leaves_no_gap_in_the_sequence(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        training = client.create_lora_training_client(BASE_MODEL)
        one = datum([1])
        with pytest.raises(InvalidArgumentError, match=r"data: expected a list of Datum, got a single Datum"):
            training.forward_backward(one, "cross_entropy")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match=r"unknown loss 'cross_entropyy' \(did you mean"):
            training.forward_backward([one], "cross_entropyy")  # type: ignore[arg-type]
        training.forward_backward([one], "cross_entropy").result(5)
    finally:
        client.close()
    assert training_seq_ids(wire) == [("forward_backward", 1)]


def test_an_expired_training_future_says_the_step_ran_and_not_to_submit_it_again() -> None:
    expire = FaultRule(endpoint="retrieve_future", kind="expire", future_endpoint="optim_step", count=1)
    with LocalServer(faults=[expire]) as server:
        client = server_client(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL).result()
            with pytest.raises(tinkex.FutureExpiredError) as caught:
                training.optim_step(types.AdamParams(learning_rate=1e-3)).result(10)
            training.forward_backward([datum([1, 2])], "cross_entropy").result(10)  # the model goes on
        finally:
            client.close()
        assert caught.value.outcome == "ran" and caught.value.changes_state
        assert "do not submit it again" in str(caught.value) and "continue with the next step" in str(caught.value)
        assert len(server.ledger.executions("optim_step")) == 1, "the step ran once, and was not re-sent"
