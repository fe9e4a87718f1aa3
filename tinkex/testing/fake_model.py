"""A deterministic stand-in for a LoRA-trained language model.

The model has one trainable parameter ``theta``. The log-probability of token ``t`` after token ``p`` is
``-exp(theta) * affinity(p, t)`` with ``affinity`` a fixed hash-derived value in [0.25, 1.25), so outputs differ
per token, are reproducible everywhere, and every loss is a smooth function of ``theta``.
``forward_backward`` accumulates dLoss/dtheta; ``optim_step`` applies Adam to ``theta`` with the learning rate
amplified by ``LEARNING_RATE_GAIN``, so that a demo loop at the usual 1e-4 shows the loss falling step by step.

Sampling draws tokens from the prompt's own vocabulary (so any tokenizer that produced the prompt can decode
the output), seeded, and stops on a stop token ("stop") or after ``max_tokens`` ("length"). String stop
sequences are accepted but never match: the fake model has no tokenizer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "LEARNING_RATE_GAIN",
    "LOSS_FUNCTIONS",
    "AdamSettings",
    "DatumInput",
    "DatumOutput",
    "FakeModelError",
    "ModelState",
    "Sample",
    "apply_optimizer",
    "prompt_logprobs",
    "run_loss",
    "sample",
    "topk_prompt_logprobs",
]

LEARNING_RATE_GAIN = 1000.0
DEFAULT_MAX_TOKENS = 16
LOSS_FUNCTIONS = ("cross_entropy", "importance_sampling", "ppo", "cispo", "dro")
_THETA_FLOOR = -12.0
_FALLBACK_VOCABULARY = tuple(range(32, 127))


class FakeModelError(ValueError):
    """The caller's input is wrong (a user error: the future resolves to category "user")."""


@dataclass
class ModelState:
    theta: float = 0.0
    grad: float = 0.0
    """dLoss/dtheta accumulated by forward_backward since the last optim_step."""
    pending_backward: int = 0
    adam_m: float = 0.0
    adam_v: float = 0.0
    step: int = 0

    @property
    def scale(self) -> float:
        return math.exp(self.theta)

    def snapshot(self, with_optimizer: bool = True) -> dict[str, float | int]:
        state = asdict(self)
        if not with_optimizer:
            for name in ("adam_m", "adam_v", "step"):
                state.pop(name)
        return state

    def restore(self, snapshot: Mapping[str, float | int], with_optimizer: bool) -> None:
        self.theta = float(snapshot["theta"])
        self.grad, self.pending_backward = 0.0, 0
        if with_optimizer:
            self.adam_m = float(snapshot.get("adam_m", 0.0))
            self.adam_v = float(snapshot.get("adam_v", 0.0))
            self.step = int(snapshot.get("step", 0))


def affinity(previous: int, token: int) -> float:
    """Fixed pseudo-random cost in [0.25, 1.25) of ``token`` following ``previous`` (a 32-bit integer mix)."""
    x = (previous * 0x9E3779B1 + token * 0x85EBCA77 + 0x27D4EB2F) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    x ^= x >> 12
    x = (x * 0x297A2D39) & 0xFFFFFFFF
    x ^= x >> 15
    return 0.25 + x / 2**32


def token_logprob(scale: float, previous: int, token: int) -> float:
    return -scale * affinity(previous, token)


@dataclass(frozen=True)
class DatumInput:
    """One datum, flattened: the model input tokens and the loss inputs as plain lists."""

    tokens: Sequence[int]
    loss_inputs: Mapping[str, Sequence[float]]


@dataclass(frozen=True)
class DatumOutput:
    logprobs: list[float]
    elementwise_loss: list[float]


def _input(datum: DatumInput, name: str, index: int, required: bool, default: float = 1.0) -> list[float]:
    values = datum.loss_inputs.get(name)
    if values is None:
        if required:
            raise FakeModelError(f"data[{index}].loss_fn_inputs is missing {name!r}")
        return [default] * len(datum.tokens)
    if len(values) != len(datum.tokens):
        raise FakeModelError(
            f"data[{index}].loss_fn_inputs[{name!r}] has {len(values)} elements, "
            f"but model_input has {len(datum.tokens)} tokens"
        )
    return [float(v) for v in values]


def run_loss(
    state: ModelState,
    data: Sequence[DatumInput],
    loss_fn: str,
    config: Mapping[str, float] | None,
    backward: bool,
) -> tuple[list[DatumOutput], dict[str, float]]:
    """Forward (and optionally backward) pass: per-datum outputs and ``{"loss:sum": ...}``."""
    if loss_fn not in LOSS_FUNCTIONS:
        raise FakeModelError(f"unknown loss_fn {loss_fn!r}; expected one of {', '.join(LOSS_FUNCTIONS)}")
    settings = dict(config or {})
    clip_low = float(settings.get("clip_low_threshold", 0.8))
    clip_high = float(settings.get("clip_high_threshold", 1.2))
    beta = float(settings.get("beta", 0.05))
    scale = state.scale
    outputs: list[DatumOutput] = []
    total_loss = 0.0
    grad = 0.0
    for index, datum in enumerate(data):
        targets = [int(t) for t in _input(datum, "target_tokens", index, required=True)]
        logprobs = [token_logprob(scale, prev, target) for prev, target in zip(datum.tokens, targets)]
        losses: list[float] = []
        if loss_fn == "cross_entropy":
            weights = _input(datum, "weights", index, required=False)
            for lp, w in zip(logprobs, weights):
                losses.append(-w * lp)
                grad += -w * lp  # d(-w*lp)/dtheta = -w*lp, since dlp/dtheta = lp
        else:
            sampled = _input(datum, "logprobs", index, required=True)
            advantages = _input(datum, "advantages", index, required=True)
            for lp, q, adv in zip(logprobs, sampled, advantages):
                ratio = math.exp(lp - q)
                clipped = min(max(ratio, clip_low), clip_high)
                if loss_fn == "importance_sampling":
                    losses.append(-ratio * adv)
                    grad += -ratio * adv * lp
                elif loss_fn == "ppo":
                    unclipped_active = ratio * adv <= clipped * adv
                    losses.append(-min(ratio * adv, clipped * adv))
                    grad += -ratio * adv * lp if unclipped_active else 0.0
                elif loss_fn == "cispo":
                    losses.append(-clipped * adv * lp)
                    grad += -clipped * adv * lp
                else:  # dro
                    losses.append(-(adv * lp - beta / 2 * (lp - q) ** 2))
                    grad += -(adv - beta * (lp - q)) * lp
        total_loss += sum(losses)
        outputs.append(DatumOutput(logprobs=logprobs, elementwise_loss=losses))
    if backward:
        state.grad += grad
        state.pending_backward += 1
    return outputs, {"loss:sum": total_loss}


@dataclass(frozen=True)
class AdamSettings:
    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0


def apply_optimizer(state: ModelState, adam: AdamSettings) -> dict[str, float]:
    """One Adam step on the accumulated gradient; without a backward pass since the last step it changes nothing."""
    if state.pending_backward == 0:
        return {}
    grad = state.grad
    grad_norm = abs(grad)
    if adam.grad_clip_norm > 0 and grad_norm > adam.grad_clip_norm:
        grad *= adam.grad_clip_norm / grad_norm
    state.step += 1
    state.adam_m = adam.beta1 * state.adam_m + (1 - adam.beta1) * grad
    state.adam_v = adam.beta2 * state.adam_v + (1 - adam.beta2) * grad * grad
    m_hat = state.adam_m / (1 - adam.beta1**state.step)
    v_hat = state.adam_v / (1 - adam.beta2**state.step)
    rate = adam.learning_rate * LEARNING_RATE_GAIN
    update = rate * (m_hat / (math.sqrt(v_hat) + adam.eps) + adam.weight_decay * state.theta)
    state.theta = max(_THETA_FLOOR, state.theta - update)
    state.grad, state.pending_backward = 0.0, 0
    return {"grad_norm:mean": grad_norm}


@dataclass(frozen=True)
class Sample:
    tokens: list[int]
    logprobs: list[float]
    stop_reason: Literal["length", "stop"]


def sample(
    scale: float,
    prompt: Sequence[int],
    num_samples: int,
    seed: str,
    max_tokens: int | None,
    stop_tokens: frozenset[int],
    temperature: float,
    top_k: int,
) -> list[Sample]:
    """``num_samples`` seeded continuations of ``prompt``; ``temperature <= 0`` is greedy."""
    vocabulary = list(dict.fromkeys(prompt)) or list(_FALLBACK_VOCABULARY)
    if top_k > 0:
        vocabulary = vocabulary[:top_k]
    limit = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    samples: list[Sample] = []
    for index in range(num_samples):
        rng = random.Random(f"{seed}:{index}")
        previous = prompt[-1] if prompt else 0
        tokens: list[int] = []
        logprobs: list[float] = []
        stop_reason: Literal["length", "stop"] = "length"
        while len(tokens) < limit:
            scores = [token_logprob(scale, previous, candidate) for candidate in vocabulary]
            if temperature <= 0:
                token = vocabulary[max(range(len(vocabulary)), key=scores.__getitem__)]
            else:
                weights = [math.exp(score / temperature) for score in scores]
                token = rng.choices(vocabulary, weights=weights)[0]
            tokens.append(token)
            logprobs.append(token_logprob(scale, previous, token))
            previous = token
            if token in stop_tokens:
                stop_reason = "stop"
                break
        samples.append(Sample(tokens=tokens, logprobs=logprobs, stop_reason=stop_reason))
    return samples


def prompt_logprobs(scale: float, prompt: Sequence[int]) -> list[float | None]:
    """Per prompt token; the first has no context, hence ``None``."""
    return [None] + [token_logprob(scale, prev, token) for prev, token in zip(prompt, prompt[1:])]


def topk_prompt_logprobs(scale: float, prompt: Sequence[int], k: int) -> list[list[tuple[int, float]] | None]:
    """For each prompt position after the first, the ``k`` likeliest tokens from the prompt's vocabulary."""
    vocabulary = list(dict.fromkeys(prompt))
    result: list[list[tuple[int, float]] | None] = [None]
    for previous in prompt[:-1]:
        ranked = sorted(((t, token_logprob(scale, previous, t)) for t in vocabulary), key=lambda p: -p[1])
        result.append(ranked[:k])
    return result
