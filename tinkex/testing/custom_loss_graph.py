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

from .fake_model import DatumInput, DatumOutput, FakeModelError, ModelState, token_logprob

__all__ = ["check_graph", "evaluate", "run_loss", "theta_gradient"]

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
    """Raise :class:`FakeModelError` naming the first node the server cannot run."""
    if not nodes or nodes[-1].get("op") != "output":
        raise FakeModelError("custom loss graph must end with an output node")
    for node in nodes:
        op, target, name = node.get("op"), node.get("target"), node.get("name")
        if op not in _NODE_OPS:
            raise FakeModelError(f"custom loss node {name!r}: op {op!r} is not supported")
        if op == "call_function" and target not in _FUNCTIONS:
            raise FakeModelError(f"custom loss node {name!r}: function {target!r} is not in the allowed operations")
        if op == "call_method" and target not in _METHODS:
            raise FakeModelError(f"custom loss node {name!r}: method {target!r} is not in the allowed operations")
        if op == "placeholder" and target not in input_names:
            raise FakeModelError(f"custom loss node {name!r}: placeholder {target!r} is not a declared input")


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
            raise FakeModelError(f"custom loss node {name!r} ({target}) failed: {type(exc).__name__}: {exc}") from None
        if op == "output":
            result = float(np.sum(args[0]))
            if not math.isfinite(result):
                raise FakeModelError(f"custom loss produced a non-finite value ({result})")
            return result
    raise FakeModelError("custom loss graph has no output node")


def theta_gradient(loss_at: Callable[[float], float], step: float = 1e-4) -> float:
    """dLoss/dtheta of the fake model, whose logprobs scale as ``e**theta``: ``loss_at(f)`` is the loss with every
    logprob multiplied by ``f``; a central difference in ``log f`` gives the derivative."""
    return (loss_at(math.exp(step)) - loss_at(math.exp(-step))) / (2 * step)


def run_loss(
    state: ModelState, data: Sequence[DatumInput], nodes: Sequence[Mapping[str, Any]], backward: bool
) -> tuple[list[DatumOutput], dict[str, float]]:
    """Forward (and backward) pass of the fake model under an uploaded loss: per-datum outputs and ``loss:sum``."""
    scale = state.scale
    outputs: list[DatumOutput] = []
    total_loss = grad = 0.0
    for index, datum in enumerate(data):
        targets = datum.loss_inputs.get("target_tokens")
        if targets is None:
            raise FakeModelError(f"data[{index}].loss_fn_inputs is missing 'target_tokens'")
        logprobs = np.array([token_logprob(scale, p, int(t)) for p, t in zip(datum.tokens, targets)])
        inputs = {name: np.asarray(values, dtype=np.float64) for name, values in datum.loss_inputs.items()}

        def loss_at(factor: float, inputs: dict[str, np.ndarray] = inputs, logprobs: np.ndarray = logprobs) -> float:
            return evaluate(nodes, {**inputs, "logprobs": logprobs * factor})

        loss = loss_at(1.0)
        if backward:
            grad += theta_gradient(loss_at)
        total_loss += loss
        per_token = [loss / len(logprobs)] * len(logprobs) if len(logprobs) else []
        outputs.append(DatumOutput(logprobs=logprobs.tolist(), elementwise_loss=per_token))
    if backward:
        state.grad += grad
        state.pending_backward += 1
    return outputs, {"loss:sum": total_loss}
