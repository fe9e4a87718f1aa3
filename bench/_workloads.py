"""The client-cost workloads, written once for any SDK with the official ``tinker`` API (standard library only).

``bench_client_cpu.py`` runs them on tinkex, ``official_sdk_cpu.py`` on the official ``tinker`` SDK in its own
venv, where tinkex is not installed: this module must import neither. Each SDK comes in as an ``Sdk`` adapter.

- ``train_sync`` / ``train_async``: ``SIZES.train_ops`` training requests, i.e. half as many steps of
  forward_backward (``SIZES.batch`` datums) + optim_step submitted back to back, then both results awaited.
- ``sample_sync``: ``SIZES.samples`` samples one after another, ``.sample(...).result()``.
- ``sample_async``: the same samples at once with ``asyncio.gather`` of ``sample_async``.
- ``inflight``: ``SIZES.inflight`` concurrent samples against a server that holds every result
  ``SIZES.inflight_latency_s``, so they all pile up; RSS growth and tracemalloc peak while they are in flight.

Each returns the SDK's ``info`` and its numbers as one flat dict (``worker_main`` prints it as a JSON line).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from _local_server import (
    BASE_MODEL,
    SIZES,
    RssPeak,
    Workload,
    measure,
    measure_async,
    traced_peak_mb,
)

__all__ = [
    "SHARED_WORKLOADS",
    "Sdk",
    "sampling_args",
    "workloads",
]


def _leave_open(client: object) -> None:
    """The official SDK's ``ServiceClient`` has nothing to close."""


async def _leave_open_async(client: object) -> None:
    """The official SDK's ``ServiceClient`` has nothing to close."""


@dataclass(frozen=True)
class Sdk:
    """One SDK as the workloads see it: its ``types`` module, a service client for a base URL, and the fields
    (``sdk``, ``version``) that head every result."""

    types: ModuleType
    service_client: Callable[[str], Any]
    info: dict[str, Any]
    close: Callable[[Any], None] = _leave_open
    aclose: Callable[[Any], Awaitable[None]] = _leave_open_async

    @contextmanager
    def session(self, base_url: str) -> Iterator[Any]:
        client = self.service_client(base_url)
        try:
            yield client
        finally:
            self.close(client)

    @asynccontextmanager
    async def async_session(self, base_url: str) -> AsyncIterator[Any]:
        client = self.service_client(base_url)
        try:
            yield client
        finally:
            await self.aclose(client)


# Token ids stay below 200: inside the vocabulary of every model the local server hosts (its tiny ones included).
def _datum_tokens() -> list[int]:
    return [(7 * i) % 200 + 1 for i in range(SIZES.datum_tokens + 1)]


def _prompt_tokens() -> list[int]:
    return [(11 * i) % 200 + 1 for i in range(SIZES.prompt_tokens)]


def _datums(sdk: Sdk) -> list[Any]:
    """Built from ints, so no tokenizer is loaded."""
    types, tokens = sdk.types, _datum_tokens()
    return [
        types.Datum(
            model_input=types.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
        )
        for _ in range(SIZES.batch)
    ]


def sampling_args(sdk: Sdk) -> tuple[Any, Any]:
    """The prompt and sampling parameters of every sample."""
    return sdk.types.ModelInput.from_ints(_prompt_tokens()), sdk.types.SamplingParams(max_tokens=SIZES.max_tokens)


def train_sync(sdk: Sdk, base_url: str) -> dict[str, Any]:
    with sdk.session(base_url) as client:
        training = client.create_lora_training_client(base_model=BASE_MODEL, rank=32)
        data, adam = _datums(sdk), sdk.types.AdamParams(learning_rate=1e-4)

        def steps(count: int) -> None:
            for _ in range(count):
                forward_backward = training.forward_backward(data, "cross_entropy")
                optim = training.optim_step(adam)
                forward_backward.result()
                optim.result()

        result = measure(lambda: steps(SIZES.warmup), lambda: steps(SIZES.train_ops // 2), SIZES.train_ops)
    return {**sdk.info, **result.as_dict()}


def train_async(sdk: Sdk, base_url: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with sdk.async_session(base_url) as client:
            training = await client.create_lora_training_client_async(base_model=BASE_MODEL, rank=32)
            data, adam = _datums(sdk), sdk.types.AdamParams(learning_rate=1e-4)

            async def steps(count: int) -> None:
                for _ in range(count):
                    forward_backward = await training.forward_backward_async(data, "cross_entropy")
                    optim = await training.optim_step_async(adam)
                    await forward_backward
                    await optim

            warmup, timed = lambda: steps(SIZES.warmup), lambda: steps(SIZES.train_ops // 2)
            result = await measure_async(warmup, timed, SIZES.train_ops)
        return {**sdk.info, **result.as_dict()}

    return asyncio.run(run())


def sample_sync(sdk: Sdk, base_url: str) -> dict[str, Any]:
    with sdk.session(base_url) as client:
        sampler = client.create_sampling_client(base_model=BASE_MODEL)
        prompt, params = sampling_args(sdk)

        def samples(count: int) -> None:
            for _ in range(count):
                sampler.sample(prompt, 1, params).result()

        result = measure(lambda: samples(SIZES.warmup), lambda: samples(SIZES.samples), SIZES.samples)
    return {**sdk.info, **result.as_dict()}


async def _gathered_samples(sampler: Any, prompt: Any, params: Any, count: int) -> None:
    await asyncio.gather(*(sampler.sample_async(prompt, 1, params) for _ in range(count)))


def sample_async(sdk: Sdk, base_url: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with sdk.async_session(base_url) as client:
            sampler = await client.create_sampling_client_async(base_model=BASE_MODEL)
            samples = functools.partial(_gathered_samples, sampler, *sampling_args(sdk))
            result = await measure_async(lambda: samples(SIZES.warmup), lambda: samples(SIZES.samples), SIZES.samples)
        return {**sdk.info, **result.as_dict()}

    return asyncio.run(run())


def inflight(sdk: Sdk, base_url: str) -> dict[str, Any]:
    """Memory with ``SIZES.inflight`` samples in flight (the server must hold results ``inflight_latency_s``)."""

    async def run() -> dict[str, Any]:
        async with sdk.async_session(base_url) as client:
            sampler = await client.create_sampling_client_async(base_model=BASE_MODEL)
            batch = functools.partial(_gathered_samples, sampler, *sampling_args(sdk))
            await batch(SIZES.warmup)
            with RssPeak() as rss:
                result = await measure_async(lambda: asyncio.sleep(0), lambda: batch(SIZES.inflight), SIZES.inflight)
            traced = await traced_peak_mb(lambda: batch(SIZES.inflight))
        return {**sdk.info, **result.as_dict(), **rss.as_dict(), "traced_peak_mb": traced}

    return asyncio.run(run())


_SHARED: dict[str, Callable[[Sdk, str], dict[str, Any]]] = {
    "train_sync": train_sync,
    "train_async": train_async,
    "sample_sync": sample_sync,
    "sample_async": sample_async,
    "inflight": inflight,
}
SHARED_WORKLOADS = tuple(_SHARED)


def workloads(sdk: Sdk) -> dict[str, Workload]:
    """Every shared workload, bound to ``sdk``: name -> run against a base URL."""
    return {name: functools.partial(workload, sdk) for name, workload in _SHARED.items()}
