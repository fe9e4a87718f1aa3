"""What LocalServer's tiny language model costs: a training step on 512 tokens and a 16-token sample.

Targets (issue 22, on the 2-core CI machine): a training step (forward_backward + optim_step) on 512 tokens under
50 ms, a 16-token sample under 20 ms. Measured twice: the model alone (``tinkex.testing.tiny_lm``, what the server
computes) and through the server (``tinkex.Client`` against a loopback ``LocalServer``: HTTP, futures, polling).

Run: ``python bench/bench_tiny_lm.py`` for a table (median and p90 of ``--repeats`` runs, milliseconds), or
``pytest bench/bench_tiny_lm.py --benchmark-enable`` (plain pytest runs only smoke-test it). A benchmark, not a
timed test: the numbers depend on what else the machine is doing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import tinkex
from tinkex import types
from tinkex.testing import LocalServer, tiny_lm

MODEL = "tinkex/fake-tiny"
TRAIN_TOKENS = 512
SAMPLE_TOKENS = 16
RANK = 32
TARGETS_MS = {"train step, 512 tokens": 50.0, "sample, 16 tokens": 20.0}


def _tokens(count: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(32, 127, count).tolist()  # printable bytes


class ModelAlone:
    """The arithmetic the server does for one request, without HTTP."""

    def __init__(self) -> None:
        self.base = tiny_lm.base_weights(MODEL, tiny_lm.DEFAULT_VOCAB_SIZE)
        self.state = tiny_lm.ModelState.fresh(self.base.vocab_size, RANK, ("attn", "mlp", "unembed"), seed=0)
        self.state.require_adapter()
        tokens = _tokens(TRAIN_TOKENS + 1, 1)
        self.batch = [tiny_lm.DatumInput(tokens[:-1], {"target_tokens": tokens[1:], "weights": [1.0] * TRAIN_TOKENS})]
        self.prompt = _tokens(32, 2)
        self.seed = 0

    def train_step(self) -> None:
        tiny_lm.run_builtin_loss(self.base, self.state, self.batch, "cross_entropy", None, backward=True)
        self.state.apply_optimizer(tiny_lm.AdamSettings(learning_rate=1e-4))

    def sample(self) -> None:
        self.seed += 1
        settings = tiny_lm.SamplingSettings(max_tokens=SAMPLE_TOKENS, stop_tokens=frozenset(), seed=self.seed)
        [drawn] = tiny_lm.sample(self.base, self.state.params, self.state.scale, self.prompt, 1, settings)
        assert len(drawn.tokens) == SAMPLE_TOKENS


class ThroughServer:
    """The same two operations as a client sees them: a request, its future, the result."""

    def __init__(self, server: LocalServer) -> None:
        self.client = tinkex.Client(api_key="tml-bench", base_url=server.base_url, telemetry=False)
        self.training = self.client.create_lora_training_client(MODEL, rank=RANK)
        tokens = _tokens(TRAIN_TOKENS + 1, 1)
        self.batch = [types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                                  loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * TRAIN_TOKENS})]
        self.sampler = self.training.save_weights_and_get_sampling_client()
        self.prompt = types.ModelInput.from_ints(_tokens(32, 2))
        self.seed = 0

    def train_step(self) -> None:
        fwd_bwd = self.training.forward_backward(self.batch, "cross_entropy")
        optim = self.training.optim_step(types.AdamParams(learning_rate=1e-4))
        fwd_bwd.result()
        optim.result()

    def sample(self) -> None:
        self.seed += 1
        params = types.SamplingParams(max_tokens=SAMPLE_TOKENS, stop=[], seed=self.seed)
        [sequence] = self.sampler.sample(self.prompt, 1, params).result().sequences
        assert len(sequence.tokens) == SAMPLE_TOKENS

    def close(self) -> None:
        self.client.close()


def _times_ms(operation: Callable[[], None], repeats: int) -> list[float]:
    operation()  # warm-up: first-call costs (base weights, caches) are not the steady state
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        operation()
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(repeats: int = 30) -> list[tuple[str, str, float, float]]:
    """(where, operation, median ms, p90 ms) for both operations, alone and through the server."""
    rows = []
    alone = ModelAlone()
    for name, operation in (("train step, 512 tokens", alone.train_step), ("sample, 16 tokens", alone.sample)):
        times = _times_ms(operation, repeats)
        rows.append(("model", name, statistics.median(times), statistics.quantiles(times, n=10)[-1]))
    with LocalServer(base_models=(MODEL,)) as server:
        remote = ThroughServer(server)
        try:
            for name, operation in (("train step, 512 tokens", remote.train_step), ("sample, 16 tokens", remote.sample)):
                times = _times_ms(operation, repeats)
                rows.append(("server", name, statistics.median(times), statistics.quantiles(times, n=10)[-1]))
        finally:
            remote.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    print(f"{'where':8} {'operation':24} {'median ms':>10} {'p90 ms':>8} {'target ms':>10}")
    for where, name, median, p90 in measure(args.repeats):
        print(f"{where:8} {name:24} {median:10.2f} {p90:8.2f} {TARGETS_MS[name]:10.0f}")
    return 0


# pytest-benchmark entry points (plain pytest runs them once, as a smoke test)


@pytest.fixture(scope="module")
def alone() -> ModelAlone:
    return ModelAlone()


@pytest.fixture(scope="module")
def remote() -> Iterator[ThroughServer]:
    with LocalServer(base_models=(MODEL,)) as server:
        through = ThroughServer(server)
        yield through
        through.close()


def test_model_train_step_512_tokens(benchmark: Any, alone: ModelAlone) -> None:
    benchmark(alone.train_step)


def test_model_sample_16_tokens(benchmark: Any, alone: ModelAlone) -> None:
    benchmark(alone.sample)


def test_server_train_step_512_tokens(benchmark: Any, remote: ThroughServer) -> None:
    benchmark(remote.train_step)


def test_server_sample_16_tokens(benchmark: Any, remote: ThroughServer) -> None:
    benchmark(remote.sample)


if __name__ == "__main__":
    raise SystemExit(main())
