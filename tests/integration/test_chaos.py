"""Under a tenth of requests failing, every operation executes exactly once and every caller gets its result."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

import tinkex
from tinkex import types
from tinkex.testing import FaultRule, LocalServer

MODEL = "tinkex/fake-tiny"
STEPS = 12
SAMPLES = 40


def _faults() -> list[FaultRule]:
    return [
        # the operation ran, then its answer was lost: a retry must not run it again
        FaultRule(endpoint="forward_backward", status=503, rate=0.08, after_execute=True),
        FaultRule(endpoint="optim_step", drop_connection=True, rate=0.08, after_execute=True),
        FaultRule(endpoint="asample", status=500, rate=0.05, after_execute=True),
        FaultRule(endpoint="asample", drop_connection=True, rate=0.04, after_execute=True),
        FaultRule(endpoint="asample", status=429, rate=0.05),
        FaultRule(endpoint="asample", status=408, rate=0.03),
        FaultRule(endpoint="retrieve_future", status=408, rate=0.05, queue_state="paused_capacity"),
        FaultRule(endpoint="retrieve_future", status=502, rate=0.04),
        FaultRule(endpoint="retrieve_future", drop_connection=True, rate=0.03),
        FaultRule(endpoint="retrieve_future", kind="try_again", rate=0.05),
        FaultRule(endpoint="create_model", status=503, count=1),
        FaultRule(delay=0.05, rate=0.05),
    ]


def _datum(step: int) -> types.Datum:
    tokens = [(step * 7 + i) % 250 + 1 for i in range(12)]
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 11},
    )


def _h2c() -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport(http2=True, http1=False)


def _httpx_http1() -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport()


@pytest.mark.parametrize(
    ("backend", "transport"),
    [("aiohttp", None), ("pyqwest", None), (None, _httpx_http1), (None, _h2c)],
    ids=["manifest-aiohttp", "manifest-pyqwest", "httpx-http1", "httpx-h2c"],
)
def test_every_operation_runs_exactly_once_under_faults(
    backend: str | None, transport: Callable[[], httpx.AsyncBaseTransport] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend is not None:  # the manifest's base transport, picked the way a user picks it
        monkeypatch.setenv("TINKEX_HTTP_BACKEND", backend)
    rules = _faults()
    with LocalServer(faults=rules, seed=7, base_models=(MODEL,), sample_inflight_limit=16) as server:
        client = tinkex.Client(api_key="tml-chaos", base_url=server.base_url, telemetry=False, transport=transport)
        try:
            training = client.create_lora_training_client(MODEL, rank=4)
            futures = []
            for step in range(STEPS):
                futures.append(training.forward_backward([_datum(step)], "cross_entropy"))
                futures.append(training.optim_step(types.AdamParams(learning_rate=1e-4)))
            results = [f.result(timeout=120) for f in futures]
            assert len(results) == 2 * STEPS

            saved = training.save_weights_for_sampler("chaos").result(timeout=60)
            sampler = client.create_sampling_client(model_path=saved.path)

            async def sample_all() -> list[types.SampleResponse]:
                prompt = types.ModelInput.from_ints([5, 6, 7])
                params = types.SamplingParams(max_tokens=4, seed=1)
                return await asyncio.gather(*(sampler.sample_async(prompt, 1, params) for _ in range(SAMPLES)))

            samples = asyncio.run(sample_all())
            assert len(samples) == SAMPLES and all(len(s.sequences) == 1 for s in samples)
        finally:
            client.close()

        assert sum(server.faults.fired(rule) for rule in rules) >= 10  # the run really went through faults
        ledger = server.ledger
        assert ledger.duplicates_executed() == []
        assert len(ledger.executions(endpoint="forward_backward")) == STEPS
        assert len(ledger.executions(endpoint="optim_step")) == STEPS
        assert len(ledger.executions(endpoint="asample")) == SAMPLES
