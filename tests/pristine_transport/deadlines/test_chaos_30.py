"""Under 30 % random faults on every endpoint, with the deadlines at their defaults, every operation still runs
exactly once and every caller gets its result, within a bound: nothing waits forever.

(A kill-and-restart of the server mid-run is not part of this test: LocalServer's ``state_dir`` persists runs and
checkpoints, not its futures or its replay cache, so a restart would answer in-flight futures with 404 and could
run a re-sent write twice: see docs/deadlines.md.)
"""

from __future__ import annotations

import asyncio
import time

import tinkex
from tinkex import types
from tinkex.testing import FaultRule, LocalServer

MODEL = "tinkex/fake-tiny"
STEPS = 8
SAMPLES = 24
BOUND_S = 90.0


def _faults() -> list[FaultRule]:
    return [
        FaultRule(endpoint="forward_backward", status=503, rate=0.15, after_execute=True),
        FaultRule(endpoint="forward_backward", drop_connection=True, rate=0.15, after_execute=True),
        FaultRule(endpoint="optim_step", drop_connection=True, rate=0.15, after_execute=True),
        FaultRule(endpoint="optim_step", status=400, body=b"", rate=0.15),  # a proxy's empty 400
        FaultRule(endpoint="asample", status=500, rate=0.1, after_execute=True),
        FaultRule(endpoint="asample", drop_connection=True, rate=0.1, after_execute=True),
        FaultRule(endpoint="asample", status=429, rate=0.1),
        FaultRule(endpoint="retrieve_future", status=408, rate=0.1, queue_state="paused_capacity"),
        FaultRule(endpoint="retrieve_future", status=502, rate=0.1),
        FaultRule(endpoint="retrieve_future", drop_connection=True, rate=0.05),
        FaultRule(endpoint="retrieve_future", kind="try_again", rate=0.05),
        FaultRule(endpoint="create_model", status=503, count=2),
        FaultRule(delay=0.05, rate=0.05),
    ]


def _datum(step: int) -> types.Datum:
    tokens = [(step * 5 + i) % 200 + 1 for i in range(10)]
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 9},
    )


def test_thirty_percent_faults_every_operation_once_and_nothing_hangs() -> None:
    rules = _faults()
    started = time.monotonic()
    with LocalServer(faults=rules, seed=11, base_models=(MODEL,), sample_inflight_limit=8) as server:
        client = tinkex.Client(api_key="tml-chaos", base_url=server.base_url, telemetry=False)
        try:
            training = client.create_lora_training_client(MODEL, rank=4)
            futures = []
            for step in range(STEPS):
                futures.append(training.forward_backward([_datum(step)], "cross_entropy"))
                futures.append(training.optim_step(types.AdamParams(learning_rate=1e-4)))
            assert len([f.result(timeout=BOUND_S) for f in futures]) == 2 * STEPS
            sampler = training.save_weights_and_get_sampling_client()

            async def sample_all() -> list[types.SampleResponse]:
                params = types.SamplingParams(max_tokens=3, seed=2)
                prompt = types.ModelInput.from_ints([3, 4, 5])
                return await asyncio.gather(*(sampler.sample_async(prompt, 1, params) for _ in range(SAMPLES)))

            assert len(asyncio.run(asyncio.wait_for(sample_all(), BOUND_S))) == SAMPLES
        finally:
            client.close()
        fired = sum(server.faults.fired(rule) for rule in rules)
        ledger = server.ledger
        assert fired >= 15, fired
        assert ledger.duplicates_executed() == []
        assert len(ledger.executions(endpoint="forward_backward")) == STEPS
        assert len(ledger.executions(endpoint="optim_step")) == STEPS
        assert len(ledger.executions(endpoint="asample")) == SAMPLES
    assert time.monotonic() - started < BOUND_S
