"""What a rollout worker does with a ``SamplingClient`` it was handed: the functions run in worker processes
(``multiprocessing`` with fork or spawn, ``ProcessPoolExecutor``, Ray tasks and actors), so they live in a module
that every start method can import by name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tinkex import types
from tinkex.sampling_client import SamplingClient

MODEL = "tinkex/fake-tiny"
MAX_TOKENS = 6  # small: sampling cost grows with it, and the point here is many workers, not long answers
SAMPLES_PER_WORKER = 4
WORKER_DEADLINE_S = 60.0
"""How long one sample may take in a worker before the worker gives up (a hang fails the test instead)."""


@dataclass(frozen=True)
class Rollout:
    """One worker's answers, as it sends them back to the parent (pickled)."""

    worker: int
    pid: int
    prompts: list[str]
    responses: list[types.SampleResponse]
    session_id: str | None
    sampling_session_id: str


def prompt_text(worker: int, index: int) -> str:
    return f"worker {worker} prompt {index}:"


def sampling_params(worker: int, index: int) -> types.SamplingParams:
    """Seeded, so the parent can check each answer is the one its prompt gets (not another worker's)."""
    return types.SamplingParams(max_tokens=MAX_TOKENS, temperature=1.0, seed=1000 * worker + index)


def rollout(sampler: SamplingClient, worker: int, samples: int = SAMPLES_PER_WORKER) -> Rollout:
    """Sample ``samples`` prompts one after another, as an RL worker does: tokenizer, prompt, sample, decode."""
    tokenizer = sampler.get_tokenizer()  # the base model travelled with the client: no server call
    prompts, responses = [], []
    for index in range(samples):
        text = prompt_text(worker, index)
        prompt = types.ModelInput.from_ints(tokenizer.encode(text))
        response = sampler.sample(prompt, 1, sampling_params(worker, index)).result(timeout=WORKER_DEADLINE_S)
        tokenizer.decode(response.sequences[0].tokens)  # what a reward function reads
        prompts.append(text)
        responses.append(response)
    return Rollout(
        worker=worker,
        pid=os.getpid(),
        prompts=prompts,
        responses=responses,
        session_id=sampler.holder.known_session_id(),
        sampling_session_id=sampler.sampling_session_id,
    )


def rollout_into_queue(queue: Any, sampler: SamplingClient, worker: int, samples: int) -> None:
    """``multiprocessing.Process`` target: the rollout, or the error it raised, into ``queue``."""
    try:
        queue.put(rollout(sampler, worker, samples))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test with it
        queue.put((worker, f"{type(exc).__name__}: {exc}"))


def sample_when_told(queue: Any, sampler: SamplingClient, go: Any) -> None:
    """``multiprocessing.Process`` target: once ``go`` is set, sample once; into ``queue`` "ok" or the error."""
    go.wait(WORKER_DEADLINE_S)
    prompt = types.ModelInput.from_ints([1, 2, 3])
    try:
        sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2)).result(timeout=WORKER_DEADLINE_S)
    except Exception as exc:  # noqa: BLE001 - the parent reads what happened
        queue.put(f"{type(exc).__name__}: {exc}")
        return
    queue.put("ok")


class RolloutActor:
    """A Ray actor's class (wrapped with ``ray.remote`` by the test): holds the client across calls."""

    def __init__(self, sampler: SamplingClient, worker: int) -> None:
        self.sampler = sampler
        self.worker = worker

    def rollout(self, samples: int) -> Rollout:
        return rollout(self.sampler, self.worker, samples)
