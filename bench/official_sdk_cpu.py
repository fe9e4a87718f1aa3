"""Client CPU and memory of the official ``tinker`` SDK on the same workload as ``bench_client_cpu.py``.

Run with the official SDK's own venv (outside the repo), never the repo's:

    python3 -m venv /tmp/official-venv && /tmp/official-venv/bin/pip install tinker==0.16.1
    /tmp/official-venv/bin/python bench/official_sdk_cpu.py --workload train_sync [--base-url URL]

One workload per process, its numbers printed as one JSON line. Without ``--base-url`` it starts the local server
(``python -m tinkex.testing`` with the repo's venv python) in a subprocess. ``python bench/bench_client_cpu.py
--official-python /tmp/official-venv/bin/python`` runs every workload of both SDKs three times and prints a table.

The official SDK reads ``TINKER_BASE_URL`` / ``TINKER_API_KEY`` / ``TINKER_TELEMETRY`` from the environment; this
script sets them. Prompts and datums are built from ints, so no tokenizer is loaded.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local_server import (  # noqa: E402  (the bench dir is put on the path just above)
    API_KEY,
    BASE_MODEL,
    SIZES,
    RssPeak,
    Workload,
    datum_tokens,
    measure,
    measure_async,
    prompt_tokens,
    traced_peak_mb,
    worker_main,
)


def _service_client(base_url: str) -> Any:
    os.environ.update({"TINKER_BASE_URL": base_url, "TINKER_API_KEY": API_KEY, "TINKER_TELEMETRY": "0"})
    os.environ.pop("TINKER_SUBPROCESS_SAMPLING", None)  # sampling must run in this process to be measured
    import tinker

    return tinker.ServiceClient()


def _sdk_info() -> dict[str, Any]:
    import tinker

    return {"sdk": "tinker", "version": tinker.__version__}


def _datums() -> list[Any]:
    from tinker import types

    tokens = datum_tokens()
    return [
        types.Datum(
            model_input=types.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
        )
        for _ in range(SIZES.batch)
    ]


def _sampling_args() -> tuple[Any, Any]:
    from tinker import types

    return types.ModelInput.from_ints(prompt_tokens()), types.SamplingParams(max_tokens=SIZES.max_tokens)


# workloads ---------------------------------------------------------------------------------------------------
def train_sync(base_url: str) -> dict[str, Any]:
    from tinker import types

    training = _service_client(base_url).create_lora_training_client(base_model=BASE_MODEL, rank=32)
    data, adam = _datums(), types.AdamParams(learning_rate=1e-4)

    def steps(count: int) -> None:
        for _ in range(count):
            forward_backward = training.forward_backward(data, "cross_entropy")
            optim = training.optim_step(adam)
            forward_backward.result()
            optim.result()

    result = measure(lambda: steps(SIZES.warmup), lambda: steps(SIZES.train_ops // 2), SIZES.train_ops)
    return {**_sdk_info(), **result.as_dict()}


def train_async(base_url: str) -> dict[str, Any]:
    from tinker import types

    async def run() -> dict[str, Any]:
        service = _service_client(base_url)
        training = await service.create_lora_training_client_async(base_model=BASE_MODEL, rank=32)
        data, adam = _datums(), types.AdamParams(learning_rate=1e-4)

        async def steps(count: int) -> None:
            for _ in range(count):
                forward_backward = await training.forward_backward_async(data, "cross_entropy")
                optim = await training.optim_step_async(adam)
                await forward_backward
                await optim

        result = await measure_async(lambda: steps(SIZES.warmup), lambda: steps(SIZES.train_ops // 2), SIZES.train_ops)
        return {**_sdk_info(), **result.as_dict()}

    return asyncio.run(run())


def sample_sync(base_url: str) -> dict[str, Any]:
    sampler = _service_client(base_url).create_sampling_client(base_model=BASE_MODEL)
    prompt, params = _sampling_args()

    def samples(count: int) -> None:
        for _ in range(count):
            sampler.sample(prompt, 1, params).result()

    result = measure(lambda: samples(SIZES.warmup), lambda: samples(SIZES.samples), SIZES.samples)
    return {**_sdk_info(), **result.as_dict()}


def sample_async(base_url: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        sampler = await _service_client(base_url).create_sampling_client_async(base_model=BASE_MODEL)
        prompt, params = _sampling_args()

        async def samples(count: int) -> None:
            await asyncio.gather(*(sampler.sample_async(prompt, 1, params) for _ in range(count)))

        result = await measure_async(lambda: samples(SIZES.warmup), lambda: samples(SIZES.samples), SIZES.samples)
        return {**_sdk_info(), **result.as_dict()}

    return asyncio.run(run())


def inflight(base_url: str) -> dict[str, Any]:
    """Memory with ``SIZES.inflight`` samples in flight (the server must hold results ``inflight_latency_s``)."""

    async def run() -> dict[str, Any]:
        sampler = await _service_client(base_url).create_sampling_client_async(base_model=BASE_MODEL)
        prompt, params = _sampling_args()

        async def batch(count: int) -> None:
            await asyncio.gather(*(sampler.sample_async(prompt, 1, params) for _ in range(count)))

        await batch(SIZES.warmup)
        with RssPeak() as rss:
            result = await measure_async(lambda: asyncio.sleep(0), lambda: batch(SIZES.inflight), SIZES.inflight)
        traced = await traced_peak_mb(lambda: batch(SIZES.inflight))
        return {**_sdk_info(), **result.as_dict(), **rss.as_dict(), "traced_peak_mb": traced}

    return asyncio.run(run())


WORKLOADS: dict[str, Workload] = {
    "train_sync": train_sync,
    "train_async": train_async,
    "sample_sync": sample_sync,
    "sample_async": sample_async,
    "inflight": inflight,
}

if __name__ == "__main__":
    sys.exit(worker_main(WORKLOADS))
