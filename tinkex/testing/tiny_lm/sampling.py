"""Sampling from the model: temperature, top-k, top-p, stop tokens and strings, several samples, seeded.

Sample ``i`` of a request draws from its own generator seeded by ``(seed, i)``, so a seeded request gives the same
sequences every time, and the first samples of a larger request are those of a smaller one. ``temperature <= 0``
is greedy. The logprob reported for a sampled token is the model's own ``log p(token | context)`` (temperature 1,
no top-k / top-p), the same number ``forward`` and ``compute_logprobs`` give for that token, so an on-policy
importance ratio is exactly 1.

The sequences of a request advance together: one matrix pass per step scores every live sequence's window.

0.38's extra outputs come from the same numbers: ``target_prompt_logprobs`` and ``prompt_alt_tokens`` read the
prompt's table of logprobs (:func:`prompt_table`; the alternative draws, seeded, at the request's temperature, carry
the model's own logprobs as samples do), ``topk_sample_logprobs`` the top-k at each sampled token's position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from . import model
from .errors import ModelInputError
from .model import BaseWeights, Params
from .training import check_tokens

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "Sample",
    "SamplingSettings",
    "prompt_alt_tokens",
    "prompt_logprobs",
    "prompt_table",
    "sample",
    "target_prompt_logprobs",
    "topk_prompt_logprobs",
    "topk_sample_logprobs",
]

DEFAULT_MAX_TOKENS = 16


@dataclass(frozen=True)
class SamplingSettings:
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 1.0
    top_k: int = -1
    """<= 0: no limit."""
    top_p: float = 1.0
    stop_tokens: frozenset[int] = frozenset()
    stop_strings: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class Sample:
    tokens: list[int]
    logprobs: list[float]
    stop_reason: Literal["length", "stop"]


def _check(settings: SamplingSettings, num_samples: int) -> None:
    if num_samples < 1:
        raise ModelInputError(f"num_samples must be >= 1, got {num_samples}")
    if settings.max_tokens < 0:
        raise ModelInputError(f"sampling_params.max_tokens must be >= 0, got {settings.max_tokens}")
    if not 0 < settings.top_p <= 1:
        raise ModelInputError(f"sampling_params.top_p must be in (0, 1], got {settings.top_p}")
    if not np.isfinite(settings.temperature):
        raise ModelInputError(f"sampling_params.temperature must be finite, got {settings.temperature}")


def _choose(logprobs: np.ndarray, settings: SamplingSettings, draws: np.ndarray) -> np.ndarray:
    """One token per row of ``logprobs`` (rows, vocab) from the filtered, tempered distribution."""
    if settings.temperature <= 0:
        return logprobs.argmax(axis=1)
    scores = logprobs / settings.temperature
    vocab = scores.shape[1]
    if settings.top_k <= 0 and settings.top_p >= 1:  # no filter: draw in vocabulary order, no sort needed
        probs = model.probabilities(scores - scores.max(axis=1, keepdims=True))
        cumulative = np.cumsum(probs, axis=1)
        picks = (cumulative < draws[:, None] * cumulative[:, -1:]).sum(axis=1)
        return np.minimum(picks, vocab - 1)
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    probs = model.probabilities(ranked - ranked[:, :1])
    if 0 < settings.top_k < vocab:
        probs[:, settings.top_k :] = 0.0
    probs /= probs.sum(axis=1, keepdims=True)
    if settings.top_p < 1:
        before = np.cumsum(probs, axis=1) - probs  # mass of the likelier tokens: keep while it is below top_p
        probs[before >= settings.top_p] = 0.0
        probs /= probs.sum(axis=1, keepdims=True)
    cumulative = np.cumsum(probs, axis=1)
    picks = (cumulative < draws[:, None] * cumulative[:, -1:]).sum(axis=1)
    picks = np.minimum(picks, vocab - 1)
    return order[np.arange(len(order)), picks]


def sample(
    base: BaseWeights,
    params: Params,
    scale: float,
    prompt: Sequence[int],
    num_samples: int,
    settings: SamplingSettings,
    decode: Callable[[Sequence[int]], str] | None = None,
) -> list[Sample]:
    """``num_samples`` continuations of ``prompt``; ``decode`` turns tokens into text for ``stop_strings``."""
    _check(settings, num_samples)
    if settings.stop_strings and decode is None:
        raise ModelInputError("sampling_params.stop: string stop sequences need the default vocabulary (its text)")
    prompt_ids = check_tokens(prompt, base.vocab_size, "prompt")
    generators = [
        np.random.default_rng(model.name_seed("tinkex-tiny-lm-sample", settings.seed, i)) for i in range(num_samples)
    ]
    # Each sequence's window of its last tokens (newest first), starting from the prompt's last window.
    last_window = model.windows(prompt_ids, base.pad)[-1:] if len(prompt_ids) else np.full((1, model.WINDOW), base.pad)
    history = np.tile(last_window, (num_samples, 1))
    tokens: list[list[int]] = [[] for _ in range(num_samples)]
    logprobs: list[list[float]] = [[] for _ in range(num_samples)]
    reasons: list[Literal["length", "stop"]] = ["length"] * num_samples
    live = np.arange(num_samples)
    for _ in range(settings.max_tokens):
        if not len(live):
            break
        acts = model.forward(base, params, scale, history[live])
        step_logprobs = model.log_softmax(acts)
        draws = np.array([generators[i].random() for i in live])
        chosen = _choose(step_logprobs, settings, draws)
        still = []
        for row, (i, token) in enumerate(zip(live, chosen)):
            token = int(token)
            tokens[i].append(token)
            logprobs[i].append(float(step_logprobs[row, token]))
            history[i, 1:] = history[i, :-1]
            history[i, 0] = token
            stopped = token in settings.stop_tokens or (
                settings.stop_strings and any(stop in decode(tokens[i]) for stop in settings.stop_strings)  # type: ignore[misc]
            )
            if stopped:
                reasons[i] = "stop"
            else:
                still.append(i)
        live = np.array(still, dtype=np.int64)
    return [Sample(tokens[i], logprobs[i], reasons[i]) for i in range(num_samples)]


def prompt_logprobs(base: BaseWeights, params: Params, scale: float, prompt: Sequence[int]) -> list[float | None]:
    """Per prompt token, its logprob given the tokens before it; the first has no context, hence ``None``."""
    ids = check_tokens(prompt, base.vocab_size, "prompt")
    if len(ids) < 2:
        return [None] * len(ids)
    acts = model.forward(base, params, scale, model.windows(ids[:-1], base.pad))
    return [None, *map(float, model.token_logprobs(acts, ids[1:]))]


def topk_prompt_logprobs(
    base: BaseWeights, params: Params, scale: float, prompt: Sequence[int], k: int
) -> list[list[tuple[int, float]] | None]:
    """For each prompt position after the first, the ``k`` likeliest tokens there and their logprobs."""
    ids = check_tokens(prompt, base.vocab_size, "prompt")
    if len(ids) < 2:
        return [None] * len(ids)
    table = model.log_softmax(model.forward(base, params, scale, model.windows(ids[:-1], base.pad)))
    k = min(k, base.vocab_size)
    best = np.argsort(-table, axis=1, kind="stable")[:, :k]
    return [None, *([(int(t), float(row[t])) for t in picks] for row, picks in zip(table, best))]


def prompt_table(base: BaseWeights, params: Params, scale: float, prompt: Sequence[int]) -> np.ndarray:
    """The model's logprobs over the vocabulary at every prompt position after the first: ``(len(prompt) - 1,
    vocab)``, row ``i`` scoring position ``i + 1``."""
    ids = check_tokens(prompt, base.vocab_size, "prompt")
    if len(ids) < 2:
        return np.zeros((0, base.vocab_size))
    return model.log_softmax(model.forward(base, params, scale, model.windows(ids[:-1], base.pad)))


def target_prompt_logprobs(table: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float32 logprobs of ``targets`` (int ``[len(prompt) - 1, K]``, cell ``[i, j]`` scored at prompt position
    ``i + 1``; ``-1`` asks nothing and gets 0.0), from :func:`prompt_table`."""
    if targets.ndim != 2 or targets.shape[0] != table.shape[0]:
        raise ModelInputError(
            f"target_prompt_logprobs: expected shape [len(prompt) - 1, K] = [{table.shape[0]}, K], got "
            f"{list(targets.shape)}"
        )
    asked = targets >= 0
    beyond = targets[asked & (targets >= table.shape[1])]
    if beyond.size:
        raise ModelInputError(
            f"target_prompt_logprobs: token id {int(beyond[0])} is beyond the model's vocabulary of {table.shape[1]}"
        )
    found = np.zeros(targets.shape, dtype=np.float32)
    rows, columns = np.nonzero(asked)
    found[rows, columns] = table[rows, targets[rows, columns]]
    return found


def prompt_alt_tokens(
    table: np.ndarray, k: int, temperature: float, seed: int | str
) -> tuple[np.ndarray, np.ndarray]:
    """``k`` draws with replacement at every prompt position after the first, at ``temperature`` (<= 0: the
    likeliest token each time), seeded: int64 tokens and their float32 logprobs (the model's own, as for samples),
    both ``[len(prompt) - 1, k]``."""
    if k < 1:
        raise ModelInputError(f"prompt_alt_tokens_k must be >= 1, got {k}")
    rows = table.shape[0]
    if temperature <= 0:
        tokens = np.repeat(table.argmax(axis=1)[:, None], k, axis=1)
    else:
        scores = table / temperature
        probs = model.probabilities(scores - scores.max(axis=1, keepdims=True))
        cumulative = np.cumsum(probs, axis=1)
        draws = np.random.default_rng(model.name_seed("tinkex-tiny-lm-alt", seed)).random((rows, k))
        tokens = np.array(
            [np.searchsorted(cumulative[row], draws[row] * cumulative[row, -1], side="right") for row in range(rows)],
            dtype=np.int64,
        ).reshape(rows, k)
        tokens = np.minimum(tokens, table.shape[1] - 1)
    logprobs = np.take_along_axis(table, tokens, axis=1).astype(np.float32)
    return tokens.astype(np.int64), logprobs


def topk_sample_logprobs(
    base: BaseWeights, params: Params, scale: float, prompt: Sequence[int], tokens: Sequence[int], k: int
) -> list[list[tuple[int, float]] | None]:
    """For each sampled token, the ``k`` likeliest tokens at its position (its context: the prompt and the tokens
    sampled before it) and their logprobs."""
    if not tokens:
        return []
    return topk_prompt_logprobs(base, params, scale, [*prompt, *tokens], k)[len(prompt):]
