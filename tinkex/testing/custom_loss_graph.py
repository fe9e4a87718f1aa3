"""Run an uploaded custom loss (``create_custom_loss``): a traced graph rebuilt from an allowlist of operations.

The graph is plain data (torch.fx nodes: placeholder, call_function, call_method, output); nothing in it is
executed as code. Every ``call_function`` / ``call_method`` target must be in the allowlist below, checked when
the loss is uploaded, so a loss that the server cannot run fails at upload with a message naming the operation.
Values are numpy arrays: ``logprobs`` is the datum's per-token logprobs, every other input its ``loss_fn_inputs``
entry. The loss of a datum is the output reduced to a scalar.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .tiny_lm import BaseWeights, DatumInput, DatumOutput, ModelInputError, ModelState, run_logprob_loss

__all__ = ["check_graph", "evaluate", "logprob_gradient", "run_loss"]

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "operator.add": operator.add,
    "operator.sub": operator.sub,
    "operator.mul": operator.mul,
    "operator.truediv": operator.truediv,
    "operator.neg": operator.neg,
    "operator.pow": operator.pow,
    "torch.add": np.add,
    "torch.sub": np.subtract,
    "torch.mul": np.multiply,
    "torch.div": np.divide,
    "torch.neg": np.negative,
    "torch.exp": np.exp,
    "torch.log": np.log,
    "torch.abs": np.abs,
    "torch.sum": np.sum,
    "torch.mean": np.mean,
    "torch.minimum": np.minimum,
    "torch.maximum": np.maximum,
    "torch.clamp": lambda x, min=None, max=None: np.clip(x, min, max),
    "torch.sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
}
_METHODS: dict[str, Callable[..., Any]] = {
    "sum": np.sum,
    "mean": np.mean,
    "exp": np.exp,
    "log": np.log,
    "neg": np.negative,
    "abs": np.abs,
    "pow": np.power,
    "clamp": lambda x, min=None, max=None: np.clip(x, min, max),
}
_NODE_OPS = frozenset({"placeholder", "call_function", "call_method", "output"})


def check_graph(nodes: Sequence[Mapping[str, Any]], input_names: Sequence[str]) -> None:
    """Raise :class:`ModelInputError` naming the first node the server cannot run."""
    if not nodes or nodes[-1].get("op") != "output":
        raise ModelInputError("custom loss graph must end with an output node")
    for node in nodes:
        op, target, name = node.get("op"), node.get("target"), node.get("name")
        if op not in _NODE_OPS:
            raise ModelInputError(f"custom loss node {name!r}: op {op!r} is not supported")
        if op == "call_function" and target not in _FUNCTIONS:
            raise ModelInputError(f"custom loss node {name!r}: function {target!r} is not in the allowed operations")
        if op == "call_method" and target not in _METHODS:
            raise ModelInputError(f"custom loss node {name!r}: method {target!r} is not in the allowed operations")
        if op == "placeholder" and target not in input_names:
            raise ModelInputError(f"custom loss node {name!r}: placeholder {target!r} is not a declared input")


def _decode(value: Any, env: Mapping[str, Any]) -> Any:
    if isinstance(value, list):
        return [_decode(v, env) for v in value]
    if not isinstance(value, dict):
        return value
    if "ref" in value:
        return env[value["ref"]]
    if "tuple" in value:
        return tuple(_decode(v, env) for v in value["tuple"])
    if "float" in value:
        return float(value["float"])
    if "dict" in value:
        return {k: _decode(v, env) for k, v in value["dict"].items()}
    return None  # dtype / device / layout / memory_format: meaningless for numpy arrays


def evaluate(nodes: Sequence[Mapping[str, Any]], inputs: Mapping[str, np.ndarray]) -> float:
    """The loss the graph computes from ``inputs`` (``logprobs`` and the loss inputs), as a float."""
    env: dict[str, Any] = {}
    for node in nodes:
        op, name, target = node["op"], node["name"], node["target"]
        args = _decode(node.get("args") or [], env)
        kwargs = {key: _decode(value, env) for key, value in (node.get("kwargs") or {}).items()}
        try:
            if op == "placeholder":
                env[name] = inputs[target]
            elif op == "call_function":
                env[name] = _FUNCTIONS[target](*args, **kwargs)
            elif op == "call_method":
                env[name] = _METHODS[target](*args, **kwargs)
        except (ArithmeticError, KeyError, TypeError, ValueError) as exc:
            raise ModelInputError(f"custom loss node {name!r} ({target}) failed: {type(exc).__name__}: {exc}") from None
        if op == "output":
            result = float(np.sum(args[0]))
            if not math.isfinite(result):
                raise ModelInputError(f"custom loss produced a non-finite value ({result})")
            return result
    raise ModelInputError("custom loss graph has no output node")


def logprob_gradient(loss_at: Callable[[np.ndarray], float], logprobs: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """dLoss/dlogprob per token by central differences (in float64): the graph is data, not differentiable code,
    and a datum has few enough tokens that two evaluations per token are cheap."""
    base = np.asarray(logprobs, dtype=np.float64)
    gradient = np.zeros_like(base)
    for index in range(len(base)):
        shifted = base.copy()
        shifted[index] = base[index] + step
        above = loss_at(shifted)
        shifted[index] = base[index] - step
        gradient[index] = (above - loss_at(shifted)) / (2 * step)
    return gradient


def run_loss(
    base: BaseWeights, state: ModelState, data: Sequence[DatumInput], nodes: Sequence[Mapping[str, Any]], backward: bool
) -> tuple[list[DatumOutput], dict[str, float]]:
    """Forward (and backward) pass of the model under an uploaded loss: the graph gets the true logprobs, and its
    gradient in them flows back into the adapter like a built-in loss's. Each token's elementwise loss is the
    datum's loss spread evenly (the graph only gives the datum's total)."""

    def loss(index: int, datum: DatumInput, logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inputs = {name: np.asarray(values, dtype=np.float64) for name, values in datum.loss_inputs.items()}

        def loss_at(values: np.ndarray) -> float:
            return evaluate(nodes, {**inputs, "logprobs": values})

        total = loss_at(logprobs.astype(np.float64))
        gradient = logprob_gradient(loss_at, logprobs) if backward else np.zeros(len(logprobs))
        per_token = np.full(len(logprobs), total / len(logprobs)) if len(logprobs) else np.zeros(0)
        return per_token, gradient

    return run_logprob_loss(base, state, data, loss, ("target_tokens",), backward)
