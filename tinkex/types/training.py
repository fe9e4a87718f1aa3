"""Training data and the forward / forward_backward / optim_step wire types (`tinker-wire.md` §1.3, §1.6)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from ._base import RequestStruct, ResponseStruct, unset_reads_as
from .model_input import ModelInput
from .tensor import TensorData, TensorDtype

__all__ = [
    "AdamParams",
    "Datum",
    "ForwardBackwardInput",
    "ForwardBackwardOutput",
    "ForwardBackwardRequest",
    "ForwardRequest",
    "LossFnInputs",
    "LossFnOutput",
    "LossFnType",
    "OptimStepRequest",
    "OptimStepResponse",
]

LossFnType = Literal["cross_entropy", "importance_sampling", "ppo", "cispo", "dro"]
LossFnInputs = dict[str, TensorData]
TensorInput = TensorData | Sequence[int] | Sequence[float] | Any
"""What ``Datum.loss_fn_inputs`` accepts per key: TensorData, a (nested) list, a numpy array or a torch tensor."""
LossFnOutput = dict[str, TensorData]

# Wire dtype of a plain-list loss_fn_input, by key (official `types/datum.py`).
_DTYPE_BY_KEY: dict[str, TensorDtype] = {
    "target_tokens": "int64",
    "weights": "float32",
    "advantages": "float32",
    "logprobs": "float32",
    "clip_low_threshold": "float32",
    "clip_high_threshold": "float32",
}


def _tensor_from_sequence(key: str, values: list[Any] | tuple[Any, ...]) -> TensorData:
    kinds = {type(v) for v in values}
    if kinds <= {int, float}:  # the common flat case needs no numpy
        dtype = _DTYPE_BY_KEY.get(key) or ("float32" if float in kinds else "int64")
        data: list[int | float] = [float(v) for v in values] if dtype == "float32" else [int(v) for v in values]
        return TensorData(data=data, dtype=dtype, shape=[len(data)])
    import numpy as np

    try:
        array = np.asarray(values)
    except ValueError as exc:
        raise ValueError(f"loss_fn_inputs[{key!r}] must be a rectangular numeric array") from exc
    if array.dtype.kind not in "biuf":
        raise ValueError(f"loss_fn_inputs[{key!r}] must be numeric, got values of dtype {array.dtype}")
    # Unknown keys keep the kind of their values: floats -> float32, integers/bools -> int64.
    dtype = _DTYPE_BY_KEY.get(key) or ("float32" if array.dtype.kind == "f" else "int64")
    return TensorData.from_numpy(array.astype(np.int64 if dtype == "int64" else np.float32))


def _to_tensor_data(key: str, value: Any) -> TensorData:
    if isinstance(value, TensorData):
        return value
    # A numpy array or torch tensor can only exist if someone imported numpy or torch, so never import them here.
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return TensorData.from_numpy(value)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return TensorData.from_torch(value)
    if isinstance(value, (list, tuple)):
        return _tensor_from_sequence(key, value)
    raise TypeError(
        f"loss_fn_inputs[{key!r}] has unsupported type {type(value).__name__}: "
        "expected TensorData, list, numpy array or torch tensor"
    )


class Datum(RequestStruct, kw_only=True):
    """One training example. ``loss_fn_inputs`` values may be given as TensorData, lists, numpy arrays or
    torch tensors; they are stored as TensorData with ``shape`` filled."""

    loss_fn_inputs: LossFnInputs
    model_input: ModelInput

    if TYPE_CHECKING:
        # What the constructor accepts; __post_init__ turns every value into TensorData.
        def __init__(self, *, loss_fn_inputs: Mapping[str, TensorInput], model_input: ModelInput) -> None: ...

    def __post_init__(self) -> None:
        inputs = self.loss_fn_inputs
        if all(isinstance(value, TensorData) for value in inputs.values()):
            return
        converted = {key: _to_tensor_data(key, value) for key, value in inputs.items()}
        msgspec.structs.force_setattr(self, "loss_fn_inputs", converted)


class ForwardBackwardInput(RequestStruct, kw_only=True):
    data: list[Datum]
    loss_fn: LossFnType
    loss_fn_config: dict[str, float] | None = None


@unset_reads_as(learning_rate=1e-4, beta1=0.9, beta2=0.95, eps=1e-12, weight_decay=0.0, grad_clip_norm=0.0)
class AdamParams(RequestStruct, kw_only=True):
    """Adam hyper-parameters. Only the ones passed are sent (the server applies the rest); reading an
    unpassed one gives the documented default."""

    learning_rate: float | UnsetType = UNSET
    beta1: float | UnsetType = UNSET
    beta2: float | UnsetType = UNSET
    eps: float | UnsetType = UNSET
    weight_decay: float | UnsetType = UNSET
    grad_clip_norm: float | UnsetType = UNSET


@unset_reads_as(type="forward")
class ForwardRequest(RequestStruct, kw_only=True):
    forward_input: ForwardBackwardInput
    model_id: str
    seq_id: int
    type: Literal["forward"] | UnsetType = UNSET


@unset_reads_as(type="forward_backward")
class ForwardBackwardRequest(RequestStruct, kw_only=True):
    forward_backward_input: ForwardBackwardInput
    model_id: str
    seq_id: int
    type: Literal["forward_backward"] | UnsetType = UNSET


@unset_reads_as(type="optim_step")
class OptimStepRequest(RequestStruct, kw_only=True):
    adam_params: AdamParams
    model_id: str
    seq_id: int
    type: Literal["optim_step"] | UnsetType = UNSET


class ForwardBackwardOutput(ResponseStruct, kw_only=True):
    loss_fn_output_type: str
    loss_fn_outputs: list[LossFnOutput]
    metrics: dict[str, float]
    """Every key is ``"<name>:<reduction>"`` (see :mod:`tinkex.chunking`)."""


class OptimStepResponse(ResponseStruct, kw_only=True):
    metrics: dict[str, float] | None = None
    type: Literal["optim_step"] | None = None
