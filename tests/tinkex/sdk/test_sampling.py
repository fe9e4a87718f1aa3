"""Sampling: the ``sample`` pool's dispatch limits, 429 backoff by request size, one logical write per sample
(same key and seq_id on every re-send), re-submission after 410, compute_logprobs, and sampler-path checks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sdk_helpers import BASE_MODEL, WireFake, async_wait_until, fake_client, server_client

import tinkex
from pristine_transport.layers.backoff_window import BackoffWindow
from pristine_transport.layers.pool_limiter import PoolLimiter
from tinkex import RetryConfig, types
from tinkex.testing import FaultRule, LocalServer

SAMPLE_POOL_BYTES = 5 * 1024 * 1024
PARAMS = types.SamplingParams(max_tokens=2)


class Gate:
    """Holds every ``asample`` whose prompt starts with ``marker`` until released; counts them."""

    def __init__(self, wire: WireFake, marker: int, *, first_status: int | None = None) -> None:
        self.marker = marker
        self.held = 0
        self.release = asyncio.Event()
        self._first_status = first_status
        wire.overrides["asample"] = self._handle

    async def _handle(self, request: httpx.Request, body: Any) -> httpx.Response | None:
        if self._first_status is not None:
            status, self._first_status = self._first_status, None
            return httpx.Response(status, json={"detail": "slow down"})
        if body["prompt"]["chunks"][0]["tokens"][0] == self.marker:
            self.held += 1
            await self.release.wait()
        return None


def prompt(*tokens: int) -> types.ModelInput:
    return types.ModelInput.from_ints(list(tokens))


def sample_pool(client: tinkex.Client) -> tuple[PoolLimiter, BackoffWindow]:
    """The pool state of the client's transport on the running loop (the async API runs there)."""
    router = client.holder.clients().http.transport
    return router.pool_limiters["sample"], router.backoff_windows["sample"]


@pytest.mark.anyio
async def test_at_most_400_samples_are_in_dispatch(wire: WireFake) -> None:
    gate = Gate(wire, marker=99)
    client = fake_client(wire)
    sampler = await client.create_sampling_client_async(base_model=BASE_MODEL)
    tasks = [asyncio.create_task(sampler.sample_async(prompt(99, i), 1, PARAMS)) for i in range(405)]
    await async_wait_until(lambda: gate.held == 400, what="400 samples at the server")
    await asyncio.sleep(0.05)
    assert gate.held == 400
    assert len(wire.sent("asample")) == 400
    gate.release.set()
    results = await asyncio.gather(*tasks)
    assert len(results) == 405 and len(wire.sent("asample")) == 405
    limiter, _ = sample_pool(client)
    assert limiter.available_count == 400 and limiter.available_bytes == SAMPLE_POOL_BYTES
    await client.aclose()


@pytest.mark.anyio
async def test_a_sample_being_polled_holds_no_dispatch_permits(wire: WireFake) -> None:
    ready = asyncio.Event()

    async def not_yet(request: httpx.Request, body: Any) -> httpx.Response | None:
        if ready.is_set():
            return None
        await asyncio.sleep(0.01)
        return wire.try_again(body["request_id"])

    wire.overrides["retrieve_future"] = not_yet
    client = fake_client(wire)
    sampler = await client.create_sampling_client_async(base_model=BASE_MODEL)
    task = asyncio.create_task(sampler.sample_async(prompt(1, 2), 1, PARAMS))
    await async_wait_until(lambda: len(wire.sent("retrieve_future")) >= 2, what="the sample to be polled")
    limiter, _ = sample_pool(client)
    assert limiter.available_count == 400 and limiter.available_bytes == SAMPLE_POOL_BYTES
    ready.set()
    assert (await task).sequences
    await client.aclose()


@pytest.mark.anyio
async def test_a_429_backs_off_1s_then_admits_only_10_at_a_time(wire: WireFake) -> None:
    gate = Gate(wire, marker=99, first_status=429)
    client = fake_client(wire)
    sampler = await client.create_sampling_client_async(base_model=BASE_MODEL)
    limiter, window = sample_pool(client)

    started = time.monotonic()
    first = asyncio.create_task(sampler.sample_async(prompt(1, 2, 3), 1, PARAMS))
    await async_wait_until(window.is_open, what="the backoff window to open")
    assert 0.8 < window.remaining() <= 1.0  # a small request backs off 1 s
    burst = [asyncio.create_task(sampler.sample_async(prompt(99, i), 1, PARAMS)) for i in range(30)]

    result = await first  # the 429 is flow control: the sample is not lost
    assert time.monotonic() - started >= 0.95
    assert result.sequences
    await async_wait_until(lambda: gate.held == 10, what="10 throttled samples at the server")
    await asyncio.sleep(0.05)
    assert gate.held == 10, "while the backoff is recent only 10 samples are dispatched at once"
    assert limiter.available_throttled == 0
    # ... and each counts 20 times its estimate (2 tokens x 10 bytes) against the byte budget.
    assert limiter.available_bytes == SAMPLE_POOL_BYTES - 10 * 20 * 20
    gate.release.set()
    await asyncio.gather(*burst)
    assert len(wire.sent("asample")) == 32

    resent = [s for s in wire.sent("asample") if s.body["prompt"]["chunks"][0]["tokens"][0] == 1]
    assert len(resent) == 2
    assert resent[0].raw == resent[1].raw, "the re-send after 429 is the same request (same seq_id)"
    assert resent[0].headers["X-Idempotency-Key"] == resent[1].headers["X-Idempotency-Key"]
    assert [s.headers["x-stainless-retry-count"] for s in resent] == ["0", "0"], "a 429 is not a retry"
    await client.aclose()


@pytest.mark.anyio
async def test_a_large_sample_backs_off_5s_and_cancelling_it_releases_its_permits(wire: WireFake) -> None:
    Gate(wire, marker=99, first_status=429)
    client = fake_client(wire)
    sampler = await client.create_sampling_client_async(base_model=BASE_MODEL)
    limiter, window = sample_pool(client)

    large = prompt(*range(1, 20_001))  # 200 000 estimated bytes > 128 KiB
    task = asyncio.create_task(sampler.sample_async(large, 1, PARAMS))
    await async_wait_until(window.is_open, what="the backoff window to open")
    assert 4.8 < window.remaining() <= 5.0
    assert limiter.available_count == 399, "the waiting sample keeps its permits while it backs off"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.available_count == 400
    assert limiter.available_bytes == SAMPLE_POOL_BYTES
    await client.aclose()


@pytest.mark.anyio
async def test_the_byte_budget_admits_one_overshoot_then_waits(wire: WireFake) -> None:
    gate = Gate(wire, marker=1)
    client = fake_client(wire)
    sampler = await client.create_sampling_client_async(base_model=BASE_MODEL)
    limiter, _ = sample_pool(client)
    big = prompt(*range(1, 200_001))  # 2 000 000 estimated bytes each
    tasks = [asyncio.create_task(sampler.sample_async(big, 1, PARAMS)) for _ in range(4)]
    await async_wait_until(lambda: gate.held == 3, what="3 large samples at the server")
    await asyncio.sleep(0.05)
    assert gate.held == 3, "2 fit in 5 MiB, a third may overshoot, the fourth waits"
    assert limiter.available_bytes == SAMPLE_POOL_BYTES - 3 * 2_000_000
    gate.release.set()
    await asyncio.gather(*tasks)
    assert limiter.available_bytes == SAMPLE_POOL_BYTES
    await client.aclose()


def test_http_retries_of_one_sample_reuse_its_key_and_seq_id(wire: WireFake) -> None:
    failures = 0

    async def fail_once(request: httpx.Request, body: Any) -> httpx.Response | None:
        nonlocal failures
        if failures == 0:
            failures += 1
            return httpx.Response(503, json={"detail": "unavailable"})
        return None

    wire.overrides["asample"] = fail_once
    client = fake_client(wire)
    try:
        sampler = client.create_sampling_client(base_model=BASE_MODEL)
        sampler.sample(prompt(4, 5), 1, PARAMS).result(10)
        sampler.sample(prompt(4, 5), 1, PARAMS).result(10)
    finally:
        client.close()
    first, resend, second = wire.sent("asample")
    assert first.raw == resend.raw
    assert first.headers["X-Idempotency-Key"] == resend.headers["X-Idempotency-Key"]
    assert [first.body["seq_id"], second.body["seq_id"]] == [0, 1]
    assert second.headers["X-Idempotency-Key"] != first.headers["X-Idempotency-Key"]


def test_a_lost_answer_does_not_run_the_sample_twice() -> None:
    lost = FaultRule(endpoint="asample", status=503, after_execute=True)
    with LocalServer(long_poll_timeout=0.2, faults=[lost]) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL)
            result = sampler.sample(prompt(1, 2, 3), 2, PARAMS).result(10)
        finally:
            client.close()
        assert server.faults.fired(lost) == 1
        received = server.ledger.received("asample")
        assert [r.status for r in received] == [503, 200]
        assert received[0].idempotency_key == received[1].idempotency_key
        assert len(server.ledger.executions("asample")) == 1
        assert server.ledger.duplicates_executed() == []
    assert len(result.sequences) == 2


def test_an_expired_sample_is_submitted_again_with_a_new_seq_id() -> None:
    expire = FaultRule.expired(future_endpoint="asample")
    with LocalServer(long_poll_timeout=0.2, faults=[expire]) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(
                base_model=BASE_MODEL, retry_config=RetryConfig(resubmit_delay_s=0.01)
            )
            result = sampler.sample(prompt(1, 2, 3), 1, PARAMS).result(10)
        finally:
            client.close()
        executions = server.ledger.executions("asample")
        assert [e.seq_id for e in executions] == [0, 1]
        assert [e.expired for e in executions] == [True, False]
        keys = [r.idempotency_key for r in server.ledger.received("asample")]
        assert len(set(keys)) == 2, "re-doing expired work is a new logical request"
        assert server.ledger.duplicates_executed() == []
    assert result.sequences


def test_compute_logprobs_returns_one_logprob_per_prompt_token(server: LocalServer) -> None:
    client = server_client(server)
    try:
        sampler = client.create_sampling_client(base_model=BASE_MODEL)
        logprobs = sampler.compute_logprobs(prompt(5, 6, 7, 8)).result(10)
    finally:
        client.close()
    assert len(logprobs) == 4
    assert logprobs[0] is None
    assert all(isinstance(value, float) and value <= 0.0 for value in logprobs[1:])


def test_a_sample_deadline_surfaces_as_timeout_error() -> None:
    with LocalServer(long_poll_timeout=0.2, latency_by_endpoint={"asample": 3.0}) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL, retry_config=RetryConfig(timeout_s=0.2))
            started = time.monotonic()
            with pytest.raises(TimeoutError, match="0.2"):
                sampler.sample(prompt(1), 1, PARAMS).result(5)
            assert time.monotonic() - started < 2.0
        finally:
            client.close()


@pytest.mark.parametrize(
    "path",
    ["tinker://sess-1:train:0/weights/ckpt-1", "tinker://sess-1:train:0/weights/final"],
)
def test_a_training_state_path_is_rejected_with_a_hint(wire: WireFake, path: str) -> None:
    client = fake_client(wire)
    try:
        with pytest.raises(ValueError) as caught:
            client.create_sampling_client(model_path=path).result()
        training = client.create_lora_training_client(BASE_MODEL)
        with pytest.raises(ValueError, match="sampler_weights"):
            training.create_sampling_client(path).result()
    finally:
        client.close()
    message = str(caught.value)
    assert "training" in message
    assert "save_weights_for_sampler" in message and "sampler_weights" in message
    assert not wire.sent("create_sampling_session"), "nothing is sent for a path that cannot work"


def test_sampling_needs_a_model(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        with pytest.raises(ValueError, match="model_path=.*base_model="):
            client.create_sampling_client().result()
        with pytest.raises(ValueError, match="tinker://"):
            client.create_sampling_client(model_path="/local/sampler_weights/x").result()
    finally:
        client.close()


def test_mistaken_sample_arguments_raise_at_the_call_and_the_sampler_stays_usable(server: LocalServer) -> None:
    client = server_client(server)
    try:
        sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
        params = types.SamplingParams(max_tokens=2)
        with pytest.raises(tinkex.InvalidArgumentError, match=r"prompt: .*tokenize it first"):
            sampler.sample("the quick", 1, params)  # type: ignore[arg-type]
        with pytest.raises(tinkex.InvalidArgumentError, match=r"prompt: .*ModelInput.from_ints"):
            sampler.compute_logprobs([1, 2, 3])  # type: ignore[arg-type]
        with pytest.raises(tinkex.InvalidArgumentError, match=r"sampling_params.top_p"):
            sampler.sample(types.ModelInput.from_ints([1, 2]), 1, types.SamplingParams(top_p=1.5))
        with pytest.raises(tinkex.InvalidArgumentError, match=r"num_samples"):
            sampler.sample(types.ModelInput.from_ints([1, 2]), 0, params)
        result = sampler.sample(types.ModelInput.from_ints([1, 2]), 1, params).result(10)
    finally:
        client.close()
    assert len(result.sequences) == 1
    assert len(server.ledger.received("asample")) == 1, "nothing mistaken reached the server"


def test_a_sampler_path_this_client_cannot_parse_is_left_to_the_server(server: LocalServer) -> None:
    client = server_client(server)
    unusual = "tinker://run-x/sampler_weights/nested/name"  # a third-party server may serve such paths
    try:
        with pytest.raises(ValueError, match="training-state checkpoint"):
            client.create_sampling_client(model_path="tinker://run-x/weights/step-1").result()
        with pytest.raises(tinkex.APIStatusError):
            client.create_sampling_client(model_path=unusual).result()
    finally:
        client.close()
    assert len(server.ledger.received("create_sampling_session")) == 1, "only the path it could not judge was sent"
