"""Client-side math of ``forward_backward_custom`` (docs/wire.md §10.2).

The TrainingClient drives the flow:

1. ``forward(prepare_forward_data(data), "cross_entropy")`` gives per-datum ``logprobs``;
2. ``compute_weights(data, forward_output, loss_fn)`` runs the user's loss on torch tensors
   of those logprobs, differentiates it and returns ``cross_entropy`` datums whose
   ``weights`` are ``-d loss / d logprobs`` (so the server's linear surrogate has the
   user's gradient), plus the user's metrics;
3. ``forward_backward(weighted_data, "cross_entropy")``, then ``merge_metrics``.

PyTorch is optional (``pip install 'tinkex[torch]'``) and imported only when a custom loss runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio.to_thread
import msgspec
from opentelemetry import trace

from tinkex.types import Datum, ForwardBackwardOutput, TensorData

if TYPE_CHECKING:
    import torch

__all__ = [
    "CUSTOM_LOSS_INPUT_KEYS",
    "LossFn",
    "LossFnResult",
    "compute_weights",
    "merge_metrics",
    "prepare_forward_data",
    "require_torch",
    "validate_custom_loss_data",
]

LossFnResult: TypeAlias = "tuple[torch.Tensor, Mapping[str, float]]"
# Synchronous loss functions run on a worker thread; async ones on the event loop.
LossFn: TypeAlias = (
    "Callable[[list[Datum], list[torch.Tensor]], LossFnResult | Awaitable[LossFnResult]]"
)

CUSTOM_LOSS_INPUT_KEYS = frozenset({"target_tokens", "weights"})
_TORCH_MISSING = "forward_backward_custom needs PyTorch, which is not installed: pip install 'tinkex[torch]'"

_tracer = trace.get_tracer("tinkex.custom_loss")


def require_torch() -> ModuleType:
    """The ``torch`` module, or an ImportError that says how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(_TORCH_MISSING) from exc
    return torch


def validate_custom_loss_data(data: Sequence[Datum], *, other_inputs: bool = False) -> None:
    """Each datum needs ``target_tokens``; besides it only ``weights``, unless ``other_inputs`` (a loss made by
    ``create_custom_loss`` reads other keys, which stay on the client)."""
    if not data:
        raise ValueError("forward_backward_custom needs at least one datum")
    for index, datum in enumerate(data):
        keys = set(datum.loss_fn_inputs)
        if "target_tokens" not in keys:
            raise ValueError(f"data[{index}].loss_fn_inputs has no 'target_tokens' (custom losses need it)")
        unexpected = keys - CUSTOM_LOSS_INPUT_KEYS
        if unexpected and not other_inputs:
            raise ValueError(
                f"data[{index}].loss_fn_inputs has {sorted(unexpected)}; custom losses accept only "
                f"{sorted(CUSTOM_LOSS_INPUT_KEYS)} (put other inputs in the loss function's closure)"
            )


def prepare_forward_data(data: Sequence[Datum], *, other_inputs: bool = False) -> list[Datum]:
    """Validated datums for the ``cross_entropy`` forward pass: only ``target_tokens`` and ``weights`` go to the
    server, with zero weights where absent."""
    validate_custom_loss_data(data, other_inputs=other_inputs)
    prepared = []
    for datum in data:
        inputs = datum.loss_fn_inputs
        if "weights" in inputs and len(inputs) == 2:
            prepared.append(datum)
            continue
        target = inputs["target_tokens"]
        weights = inputs.get("weights")
        if weights is None:
            length = len(target.data)
            weights = TensorData(data=[0.0] * length, dtype="float32", shape=[length])
        prepared.append(msgspec.structs.replace(datum, loss_fn_inputs={"target_tokens": target, "weights": weights}))
    return prepared


async def compute_weights(
    data: Sequence[Datum], forward_output: ForwardBackwardOutput, loss_fn: LossFn, *, other_inputs: bool = False
) -> tuple[list[Datum], dict[str, float]]:
    """``cross_entropy`` datums with ``weights = -grad`` of the user's loss, and its metrics."""
    validate_custom_loss_data(data, other_inputs=other_inputs)
    torch = await anyio.to_thread.run_sync(require_torch)  # the first import of torch takes a second
    logprob_values = _forward_logprobs(data, forward_output)
    with _tracer.start_as_current_span("tinkex.custom_loss") as span:
        span.set_attribute("tinkex.custom_loss.datums", len(data))
        logprobs = [torch.tensor(values, dtype=torch.float32, requires_grad=True) for values in logprob_values]
        user_data = list(data)
        if inspect.iscoroutinefunction(loss_fn):
            result = await loss_fn(user_data, logprobs)
        else:
            result = await anyio.to_thread.run_sync(_call_sync, loss_fn, user_data, logprobs)
        if not isinstance(result, tuple) or len(result) != 2:
            raise ValueError(f"loss_fn must return (loss, metrics), got {_describe(result)}")
        loss, metrics = result
        gradients = await anyio.to_thread.run_sync(_gradients, torch, loss, logprobs)
    weighted = [
        msgspec.structs.replace(
            datum,
            loss_fn_inputs={
                "target_tokens": datum.loss_fn_inputs["target_tokens"],
                "weights": TensorData.from_torch(-gradient),
            },
        )
        for datum, gradient in zip(data, gradients, strict=True)
    ]
    return weighted, _float_metrics(metrics)


def merge_metrics(output: ForwardBackwardOutput, metrics: Mapping[str, float]) -> ForwardBackwardOutput:
    """``output`` with the user's metrics added; on a name clash the user's value wins (as the SDK)."""
    return msgspec.structs.replace(output, metrics={**output.metrics, **metrics})


def _call_sync(loss_fn: LossFn, data: list[Datum], logprobs: list[torch.Tensor]) -> object:
    result = loss_fn(data, logprobs)
    if inspect.isawaitable(result):
        raise TypeError("loss_fn returned an awaitable from a plain function; declare it 'async def'")
    return result


def _gradients(torch: ModuleType, loss: Any, logprobs: list[torch.Tensor]) -> list[torch.Tensor]:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar torch.Tensor as its loss, got {_describe(loss)}")
    if not loss.requires_grad:
        raise ValueError("the loss returned by loss_fn does not depend on the logprobs (it has no gradient)")
    loss.reshape(()).backward()
    # A logprob the loss never touched has gradient zero; autograd leaves it as None.
    return [
        (logprob.grad if logprob.grad is not None else torch.zeros_like(logprob)).detach() for logprob in logprobs
    ]


def _forward_logprobs(data: Sequence[Datum], forward_output: ForwardBackwardOutput) -> list[list[float]]:
    outputs = forward_output.loss_fn_outputs
    if len(outputs) != len(data):
        raise ValueError(f"forward returned {len(outputs)} loss_fn_outputs for {len(data)} datums")
    logprobs = []
    for index, (datum, output) in enumerate(zip(data, outputs, strict=True)):
        if "logprobs" not in output:
            raise ValueError(f"forward loss_fn_outputs[{index}] has no 'logprobs' (keys: {sorted(output)})")
        values = [float(value) for value in output["logprobs"].data]
        expected = len(datum.loss_fn_inputs["target_tokens"].data)
        if len(values) != expected:
            raise ValueError(
                f"forward loss_fn_outputs[{index}].logprobs has {len(values)} values for {expected} target_tokens"
            )
        logprobs.append(values)
    return logprobs


def _float_metrics(metrics: object) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise ValueError(f"loss_fn must return (loss, metrics: dict[str, float]), got metrics {_describe(metrics)}")
    converted = {}
    for name, value in metrics.items():
        try:
            converted[str(name)] = float(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"loss_fn metric {name!r} is not a number: {_describe(value)}") from exc
    return converted


def _describe(value: object) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")
