"""The dispatch byte budgets a 0.38 server sets in client/config (``sample_dispatch_bytes_semaphore_size``,
``fwdbwd_dispatch_bytes_semaphore_size``) become the byte limits of the manifest's ``sample`` and ``train`` pools;
observed end to end: with a budget of one byte, each submit waits until the one before it was answered."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import tinkex
from tinkex import types as t
from tinkex.config import load_tinker_manifest
from tinkex.testing import FaultRule, LocalServer
from tinkex.wire.server_limits import manifest_with_dispatch_budgets

MANIFEST = load_tinker_manifest()
MODEL = "Qwen/Qwen3-8B"
PROMPT = t.ModelInput.from_ints([1, 2, 3])
DATUM = t.Datum(model_input=t.ModelInput.from_ints([1, 2, 3, 4]), loss_fn_inputs={"target_tokens": [2, 3, 4, 5]})
Flags = t.ClientConfigResponse
SUBMIT_DELAY = 0.4
"""Every submit's answer is held this long by the server: a submit waiting for another's bytes arrives later."""


@pytest.mark.parametrize(
    ("flags", "sample_bytes", "train_bytes"),
    [
        (None, MANIFEST.pools["sample"].max_bytes, MANIFEST.pools["train"].max_bytes),  # no flags: the manifest's
        (Flags(), 10_485_760, 50_000_000),  # the official 0.38 defaults
        (Flags(sample_dispatch_bytes_semaphore_size=7, fwdbwd_dispatch_bytes_semaphore_size=9), 7, 9),
        (Flags(sample_dispatch_bytes_semaphore_size=0, fwdbwd_dispatch_bytes_semaphore_size=-1), 5_242_880, None),
    ],
)
def test_dispatch_budgets_table(flags: Flags | None, sample_bytes: int | None, train_bytes: int | None) -> None:
    limited = manifest_with_dispatch_budgets(flags, MANIFEST)
    assert limited.pools["sample"].max_bytes == sample_bytes
    assert limited.pools["train"].max_bytes == train_bytes
    assert limited.pools["sample"].max_concurrency == MANIFEST.pools["sample"].max_concurrency  # the rest kept
    assert MANIFEST.pools["sample"].max_bytes == 5_242_880, "the manifest itself is unchanged"


def _closest_arrivals(times: list[float]) -> float:
    times = sorted(times)
    return min(later - earlier for earlier, later in zip(times, times[1:]))


@contextmanager
def _client(server: LocalServer) -> Iterator[tinkex.Client]:
    client = tinkex.Client(api_key="tml-budgets", base_url=server.base_url, env={}, telemetry=False)
    try:
        yield client
    finally:
        client.close()


@pytest.mark.parametrize(
    ("flags", "one_at_a_time"), [(Flags(sample_dispatch_bytes_semaphore_size=1), True), (Flags(), False)]
)
def test_the_servers_sample_budget_limits_asample_submits(flags: Flags, one_at_a_time: bool) -> None:
    slow_submits = FaultRule(endpoint="asample", delay=SUBMIT_DELAY, count=100)
    with LocalServer(client_config=flags, faults=[slow_submits]) as server, _client(server) as client:
        sampler = client.create_sampling_client(base_model=MODEL).result(30)
        pending = [sampler.sample(PROMPT, 1, t.SamplingParams(max_tokens=2, seed=i)) for i in range(5)]
        assert all(len(p.result(60).sequences) == 1 for p in pending)
        closest = _closest_arrivals([r.time for r in server.ledger.received("asample")])
    if one_at_a_time:
        assert closest >= SUBMIT_DELAY * 0.8
    else:
        assert closest < SUBMIT_DELAY * 0.5


@pytest.mark.parametrize(
    ("flags", "one_at_a_time"), [(Flags(fwdbwd_dispatch_bytes_semaphore_size=1), True), (Flags(), False)]
)
def test_the_servers_fwdbwd_budget_limits_forward_backward_submits(flags: Flags, one_at_a_time: bool) -> None:
    """Two models (their requests are not ordered with each other) share the holder's train pool."""
    slow_submits = FaultRule(endpoint="forward_backward", delay=SUBMIT_DELAY, count=100)
    with LocalServer(client_config=flags, faults=[slow_submits]) as server, _client(server) as client:
        models = [client.create_lora_training_client(MODEL, rank=4) for _ in range(3)]
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            steps = list(pool.map(lambda m: m.forward_backward([DATUM], "cross_entropy"), models))
        assert all(len(step.result(60).loss_fn_outputs) == 1 for step in steps)
        closest = _closest_arrivals([r.time for r in server.ledger.received("forward_backward")])
    if one_at_a_time:
        assert closest >= SUBMIT_DELAY * 0.8
    else:
        assert closest < SUBMIT_DELAY * 0.5
