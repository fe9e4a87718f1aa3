"""Forward and backward passes over a batch of data: true per-token logprobs, losses and adapter gradients.

Every position of every datum is scored in one matrix pass (positions are independent given their windows, see
:mod:`.model`). ``forward`` changes nothing; ``forward_backward`` adds the gradient of the batch's summed loss to the
run's pending gradient, which the next ``optim_step`` applies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from . import losses, model
from .errors import ModelInputError, TokenOutOfVocabulary
from .model import BaseWeights
from .state import ModelState

__all__ = ["DatumInput", "DatumOutput", "check_tokens", "score", "run_builtin_loss", "run_logprob_loss"]


@dataclass(frozen=True)
class DatumInput:
    """One datum, flattened: the model input tokens and the loss inputs as plain sequences."""

    tokens: Sequence[int]
    loss_inputs: Mapping[str, Sequence[float]]


@dataclass(frozen=True)
class DatumOutput:
    logprobs: list[float]
    elementwise_loss: list[float]


def check_tokens(tokens: Sequence[int] | np.ndarray, vocab_size: int, where: str) -> np.ndarray:
    """``tokens`` as int64, or :class:`TokenOutOfVocabulary` naming the first id outside ``[0, vocab_size)``."""
    array = np.asarray(tokens, dtype=np.float64 if len(tokens) == 0 else None)
    ids = array.astype(np.int64)
    bad = np.flatnonzero((ids < 0) | (ids >= vocab_size) | (ids != array))
    if len(bad):
        raise TokenOutOfVocabulary(f"{where}[{bad[0]}]", int(array[bad[0]]), vocab_size)
    return ids


def _inputs(datum: DatumInput, index: int, names: Sequence[str], vocab_size: int) -> np.ndarray:
    """The datum's targets (checked against the vocabulary) after checking every loss input's presence and length."""
    for name in names:
        if name not in datum.loss_inputs:
            raise ModelInputError(f"data[{index}].loss_fn_inputs is missing {name!r}")
    for name, values in datum.loss_inputs.items():
        if len(values) != len(datum.tokens):
            raise ModelInputError(
                f"data[{index}].loss_fn_inputs[{name!r}] has {len(values)} elements, "
                f"but model_input has {len(datum.tokens)} tokens"
            )
    return check_tokens(datum.loss_inputs["target_tokens"], vocab_size, f"data[{index}].loss_fn_inputs['target_tokens']")


@dataclass
class _Batch:
    windows: np.ndarray
    targets: np.ndarray
    bounds: list[tuple[int, int]]


def _batch(base: BaseWeights, data: Sequence[DatumInput], required: Sequence[str]) -> _Batch:
    windows, targets, bounds, start = [], [], [], 0
    for index, datum in enumerate(data):
        tokens = check_tokens(datum.tokens, base.vocab_size, f"data[{index}].model_input")
        targets.append(_inputs(datum, index, required, base.vocab_size))
        windows.append(model.windows(tokens, base.pad))
        bounds.append((start, start + len(tokens)))
        start += len(tokens)
    if not windows:
        return _Batch(np.zeros((0, model.WINDOW), dtype=np.int64), np.zeros(0, dtype=np.int64), [])
    return _Batch(np.concatenate(windows), np.concatenate(targets), bounds)


def score(base: BaseWeights, params: model.Params, scale: float, tokens: Sequence[int], targets: Sequence[int]) -> np.ndarray:
    """log p(targets[i] | tokens[..i]) for each position: what ``forward`` reports as ``logprobs``."""
    ids = check_tokens(tokens, base.vocab_size, "tokens")
    acts = model.forward(base, params, scale, model.windows(ids, base.pad))
    return model.token_logprobs(acts, check_tokens(targets, base.vocab_size, "targets"))


LogprobLoss = Callable[[int, DatumInput, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(datum index, datum, its logprobs) -> (elementwise loss, dLoss/dlogprobs)."""


def run_logprob_loss(
    base: BaseWeights,
    state: ModelState,
    data: Sequence[DatumInput],
    loss: LogprobLoss,
    required: Sequence[str],
    backward: bool,
) -> tuple[list[DatumOutput], dict[str, float]]:
    """Score the batch, apply ``loss`` per datum, and with ``backward`` accumulate the adapter's gradient."""
    state.require_adapter()
    batch = _batch(base, data, required)
    acts = model.forward(base, state.params, state.scale, batch.windows)
    logprobs = model.token_logprobs(acts, batch.targets)
    outputs: list[DatumOutput] = []
    d_logprobs = np.zeros_like(logprobs)
    total = 0.0
    for index, (datum, (start, end)) in enumerate(zip(data, batch.bounds)):
        elementwise, gradient = loss(index, datum, logprobs[start:end])
        d_logprobs[start:end] = gradient
        total += float(np.sum(elementwise))
        outputs.append(DatumOutput(logprobs=logprobs[start:end].tolist(), elementwise_loss=list(map(float, elementwise))))
    if backward:
        state.accumulate(model.backward(base, state.params, state.scale, acts, batch.targets, d_logprobs))
    return outputs, {"loss:sum": total}


def run_builtin_loss(
    base: BaseWeights,
    state: ModelState,
    data: Sequence[DatumInput],
    loss_fn: str,
    config: Mapping[str, float] | None,
    backward: bool,
) -> tuple[list[DatumOutput], dict[str, float]]:
    """``forward`` / ``forward_backward`` with one of :data:`.losses.LOSS_FUNCTIONS`."""
    settings = losses.loss_settings(loss_fn, config)

    def loss(index: int, datum: DatumInput, logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        terms = losses.loss_terms(loss_fn, logprobs, datum.loss_inputs, settings)
        return terms.elementwise, terms.d_logprobs

    return run_logprob_loss(base, state, data, loss, losses.required_inputs(loss_fn), backward)
