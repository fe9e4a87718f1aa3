"""Limits a 0.38 server sets in client/config, observed end to end: the chunk limits of forward / forward_backward
batches (``fwdbwd_max_chunk_len``, ``fwdbwd_max_chunk_bytes_count``) and the cap on samples in flight
(``sample_max_concurrent_requests``), each with the flag on and off."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import tinkex
from tinkex import types as t
from tinkex.chunking import MAX_CHUNK_BYTES_COUNT, MAX_CHUNK_LEN
from tinkex.testing import LocalServer
from tinkex.wire.server_limits import ChunkLimits, ConcurrencyCap, chunk_limits, sample_concurrency_cap

MODEL = "Qwen/Qwen3-8B"
DATA = [
    t.Datum(model_input=t.ModelInput.from_ints([1, 2, 3, i]), loss_fn_inputs={"target_tokens": [2, 3, 4, 5]})
    for i in range(5)
]
PROMPT = t.ModelInput.from_ints([1, 2, 3])
Flags = t.ClientConfigResponse


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (None, ChunkLimits(MAX_CHUNK_LEN, MAX_CHUNK_BYTES_COUNT)),  # a 0.16 server or forced 0.16
        (Flags(), ChunkLimits(1024, 5_000_000)),  # the official 0.38 defaults
        (Flags(fwdbwd_max_chunk_len=2), ChunkLimits(2, MAX_CHUNK_BYTES_COUNT)),
        (Flags(fwdbwd_max_chunk_bytes_count=100), ChunkLimits(MAX_CHUNK_LEN, 100)),
        (Flags(fwdbwd_max_chunk_len=0, fwdbwd_max_chunk_bytes_count=-1), ChunkLimits()),  # nonsense: ignored
    ],
)
def test_chunk_limits_table(flags: Flags | None, expected: ChunkLimits) -> None:
    assert chunk_limits(flags) == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (None, None),
        (Flags(), 2000),
        (Flags(sample_max_concurrent_requests=3), 3),
        (Flags(sample_max_concurrent_requests=0), None),
    ],
)
def test_sample_cap_table(flags: Flags | None, expected: int | None) -> None:
    assert sample_concurrency_cap(flags) == expected


def test_a_concurrency_cap_holds_no_more_than_its_limit_on_each_loop() -> None:
    async def peak(cap: ConcurrencyCap) -> int:
        inside = highest = 0

        async def one() -> None:
            nonlocal inside, highest
            async with cap.hold():
                inside += 1
                highest = max(highest, inside)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(*(one() for _ in range(10)))
        return highest

    capped = ConcurrencyCap(3)
    assert asyncio.run(peak(capped)) == 3
    assert asyncio.run(peak(capped)) == 3  # a second loop gets its own semaphore
    assert asyncio.run(peak(ConcurrencyCap(None))) == 10


@contextmanager
def _client(server: LocalServer, env: dict[str, str] | None = None) -> Iterator[tinkex.Client]:
    client = tinkex.Client(api_key="tml-limits", base_url=server.base_url, env=env or {}, telemetry=False)
    try:
        yield client
    finally:
        client.close()


@pytest.mark.parametrize(
    ("flags", "env", "chunks"),
    [
        (Flags(fwdbwd_max_chunk_len=2), {}, 3),  # 5 data, 2 per chunk
        (Flags(fwdbwd_max_chunk_bytes_count=1), {}, 5),  # every datum alone
        (Flags(), {}, 1),  # the official defaults: one chunk
        (Flags(fwdbwd_max_chunk_len=2), {"TINKEX_WIRE_DIALECT": "0.16"}, 1),  # forced 0.16 has no flags
    ],
)
def test_the_servers_chunk_limits_split_forward_backward_and_forward(
    flags: Flags, env: dict[str, str], chunks: int
) -> None:
    with LocalServer(client_config=flags) as server, _client(server, env) as client:
        training = client.create_lora_training_client(MODEL, rank=4)
        output = training.forward_backward(DATA, "cross_entropy").result(30)
        assert len(output.loss_fn_outputs) == len(DATA)
        executed = server.ledger.executions("forward_backward")
        assert len(executed) == chunks
        forward = training.forward(DATA, "cross_entropy").result(30)
        assert len(forward.loss_fn_outputs) == len(DATA)
        everything = [e for e in server.ledger.executions() if e.endpoint in ("forward_backward", "forward")]
        assert len(everything) == 2 * chunks
        seq_ids = [e.seq_id for e in everything]
        # Each batch's chunks have consecutive seq_ids, the batches in order; sent together (the flag is on in these
        # flags), a batch's chunks arrive, and so run on this server, in no set order.
        assert sorted(seq_ids[:chunks]) == list(range(1, chunks + 1)), "forward_backward's chunks first"
        assert sorted(seq_ids[chunks:]) == list(range(chunks + 1, 2 * chunks + 1)), "then forward's"


SAMPLE_LATENCY = 0.6


def _most_arrivals_within(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for later in times[i:] if later - start < window) for i, start in enumerate(times))


@pytest.mark.parametrize(("flags", "capped"), [(Flags(sample_max_concurrent_requests=3), True), (Flags(), False)])
def test_samples_in_flight_never_exceed_the_servers_cap(flags: Flags, capped: bool) -> None:
    """A sample stays in flight for SAMPLE_LATENCY (its future is not ready before), so with the cap at most 3
    asample requests can reach the server within any window shorter than that; without it all 20 arrive at once."""
    with LocalServer(client_config=flags, latency_by_endpoint={"asample": SAMPLE_LATENCY}) as server:
        with _client(server) as client:
            sampler = client.create_sampling_client(base_model=MODEL).result(30)
            pending = [sampler.sample(PROMPT, 1, t.SamplingParams(max_tokens=2, seed=i)) for i in range(20)]
            assert all(len(p.result(60).sequences) == 1 for p in pending)
        arrivals = [r.time for r in server.ledger.received("asample")]
        assert len(arrivals) == 20
        most = _most_arrivals_within(arrivals, SAMPLE_LATENCY * 0.8)
        if capped:
            assert most <= 3
        else:
            assert most > 3


def test_a_sampler_rebuilt_from_its_handle_keeps_the_servers_cap() -> None:
    """A client made from a handle has a session already and never created one: its first sample asks the
    handshake for the flags before taking the cap."""
    flags = Flags(sample_max_concurrent_requests=3)
    with LocalServer(client_config=flags, latency_by_endpoint={"asample": SAMPLE_LATENCY}) as server:
        with _client(server) as client:
            handle = client.create_sampling_client(base_model=MODEL).result(30).get_sampler_handle()
            rebuilt = tinkex.SamplingClient.from_sampler_handle(handle, api_key="tml-limits")
            try:
                pending = [rebuilt.sample(PROMPT, 1, t.SamplingParams(max_tokens=2, seed=i)) for i in range(10)]
                assert all(len(p.result(60).sequences) == 1 for p in pending)
            finally:
                rebuilt.holder.close()
        arrivals = [r.time for r in server.ledger.received("asample")]
        assert len(arrivals) == 10
        assert _most_arrivals_within(arrivals, SAMPLE_LATENCY * 0.8) <= 3


def test_a_sample_cancelled_while_it_waits_under_the_cap_is_never_sent() -> None:
    flags = Flags(sample_max_concurrent_requests=1)
    with LocalServer(client_config=flags, latency_by_endpoint={"asample": SAMPLE_LATENCY}) as server:
        with _client(server) as client:
            sampler = client.create_sampling_client(base_model=MODEL).result(30)

            async def one_runs_one_cancelled() -> int:
                params = t.SamplingParams(max_tokens=2)
                first = asyncio.ensure_future(sampler.sample_async(PROMPT, 1, params))
                queued = asyncio.ensure_future(sampler.sample_async(PROMPT, 1, params))
                await asyncio.sleep(SAMPLE_LATENCY / 3)
                queued.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await queued
                return len((await first).sequences)

            assert asyncio.run(one_runs_one_cancelled()) == 1
        assert len(server.ledger.received("asample")) == 1
