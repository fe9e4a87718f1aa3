"""Training data and the forward / forward_backward / optim_step wire types (`docs/wire.md` §1.3, §1.6)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from ._base import RequestStruct, ResponseStruct, official_dataclass, unset_reads_as, unset_reads_attribute
from .argument_check import check_model_input
from .model_input import ModelInput
from .optimizer import AdamParams, OptimParams
from .provenance import ProvenanceSpans, check_span_tiling
from .tensor import TensorData, TensorDtype, flat_tensor_data

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

LossFnType = Literal[
    "cross_entropy", "importance_sampling", "ppo", "cispo", "dro", "gspo", "stable_reinforce", "custom"
]
"""0.16 knows the first five; 0.38 adds ``gspo``, ``stable_reinforce`` and ``custom`` (a custom-loss upload)."""
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
    "sequence_ratio_mask": "float32",
}


def _tensor_from_sequence(key: str, values: list[Any] | tuple[Any, ...]) -> TensorData:
    flat = flat_tensor_data(values, _DTYPE_BY_KEY.get(key))  # the common flat case needs no numpy
    if flat is not None:
        return flat
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


@official_dataclass
@unset_reads_as(model_input_spans=None, loss_fn_input_spans=None)
class Datum(RequestStruct, kw_only=True):
    """One training example. ``loss_fn_inputs`` values may be given as TensorData, lists, numpy arrays or
    torch tensors; they are stored as TensorData with ``shape`` filled.

    [0.38] ``model_input_spans`` / ``loss_fn_input_spans`` (set together, via :meth:`with_provenance`) say
    which sampled sequences the tokens came from; they are sent only when set.
    """

    loss_fn_inputs: LossFnInputs = msgspec.field(default_factory=dict)
    model_input: ModelInput
    model_input_spans: ProvenanceSpans | None | UnsetType = UNSET
    """Consecutive runs tiling ``model_input`` (lengths sum to its length)."""
    loss_fn_input_spans: ProvenanceSpans | None | UnsetType = UNSET
    """Consecutive runs tiling ``loss_fn_inputs["target_tokens"]``."""

    if TYPE_CHECKING:
        # What the constructor accepts; __post_init__ turns every value into TensorData.
        def __init__(
            self,
            *,
            loss_fn_inputs: Mapping[str, TensorInput] = ...,
            model_input: ModelInput,
            model_input_spans: ProvenanceSpans | None = ...,
            loss_fn_input_spans: ProvenanceSpans | None = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        if not isinstance(self.model_input, ModelInput):
            # Official 0.38 keeps a list or a string here and fails far away, when the batch is sent.
            check_model_input(self.model_input, "Datum.model_input")
        if (self.model_input_spans is None) != (self.loss_fn_input_spans is None):
            raise ValueError("Datum provenance comes as a pair: set both model_input_spans and loss_fn_input_spans, or neither")
        inputs = self.loss_fn_inputs
        if all(isinstance(value, TensorData) for value in inputs.values()):
            return
        converted = {key: _to_tensor_data(key, value) for key, value in inputs.items()}
        msgspec.structs.force_setattr(self, "loss_fn_inputs", converted)

    @classmethod
    def convert_tensors(cls, data: Any) -> Any:
        """0.16's pre-validation hook, callable directly: a copy of the ``data`` mapping (Datum's keyword
        arguments) with every ``loss_fn_inputs`` value turned into TensorData; anything else is returned as is."""
        if not isinstance(data, Mapping) or not isinstance(data.get("loss_fn_inputs"), Mapping):
            return data
        converted = {key: _to_tensor_data(key, value) for key, value in data["loss_fn_inputs"].items()}
        return {**data, "loss_fn_inputs": converted}

    def with_provenance(self, model_input: ProvenanceSpans, loss_fn_inputs: ProvenanceSpans) -> Datum:
        """A copy carrying provenance for both fields. ``model_input`` spans must tile the input tokens and
        ``loss_fn_inputs`` spans ``loss_fn_inputs["target_tokens"]`` (when it is one-dimensional); a miscount
        fails here rather than as a request error."""
        check_span_tiling("model_input", model_input, self.model_input.length)
        target_tokens = self.loss_fn_inputs.get("target_tokens")
        shape = target_tokens.shape if target_tokens is not None else None
        if isinstance(shape, list) and len(shape) == 1:
            check_span_tiling("loss_fn_inputs", loss_fn_inputs, shape[0])
        return msgspec.structs.replace(
            self, model_input_spans=list(model_input), loss_fn_input_spans=list(loss_fn_inputs)
        )


@official_dataclass
class ForwardBackwardInput(RequestStruct, kw_only=True):
    data: list[Datum]
    loss_fn: LossFnType
    loss_fn_config: dict[str, float | str] | None = None
    """Loss parameters (e.g. PPO clip thresholds; [0.38] also strings, e.g. StableReinforce settings)."""


@official_dataclass
class ForwardRequest(RequestStruct, kw_only=True):
    forward_input: ForwardBackwardInput
    model_id: str
    seq_id: int | None = None


@official_dataclass
class ForwardBackwardRequest(RequestStruct, kw_only=True):
    forward_backward_input: ForwardBackwardInput
    model_id: str
    seq_id: int | None = None


@unset_reads_as(adam_params=None, type="optim_step")
@unset_reads_attribute(optim_params="adam_params")
class OptimStepRequest(RequestStruct, kw_only=True):
    """One optimizer step. Pass ``optim_params`` (0.38) or ``adam_params`` (0.16), not both.

    On the wire Adam parameters go under ``adam_params`` (what every server accepts) and any other family's
    under ``optimizer_params`` (0.38's key); an ``AdamParams`` given as ``optim_params`` is moved to
    ``adam_params``. ``optim_params`` always reads as the step's parameters, whichever way they came.
    """

    adam_params: AdamParams | UnsetType = UNSET
    optim_params: OptimParams | UnsetType = msgspec.field(default=UNSET, name="optimizer_params")
    model_id: str
    seq_id: int | None = None
    type: Literal["optim_step"] | UnsetType = UNSET

    def _after_conversion(self) -> None:
        raw = msgspec.structs.asdict(self)
        adam, other = raw["adam_params"], raw["optim_params"]
        if adam is not UNSET and other is not UNSET:
            raise ValueError("OptimStepRequest takes optim_params or the legacy adam_params, not both")
        if adam is UNSET and other is UNSET:
            raise ValueError("OptimStepRequest needs optim_params (or the legacy adam_params)")
        if isinstance(other, AdamParams):
            msgspec.structs.force_setattr(self, "adam_params", other)
            msgspec.structs.force_setattr(self, "optim_params", UNSET)


@official_dataclass
class ForwardBackwardOutput(ResponseStruct, kw_only=True):
    loss_fn_output_type: str
    loss_fn_outputs: list[LossFnOutput]
    metrics: dict[str, float] = msgspec.field(default_factory=dict)
    """Every key is ``"<name>:<reduction>"`` (see :mod:`tinkex.chunking`)."""


class OptimStepResponse(ResponseStruct, kw_only=True):
    metrics: dict[str, float] | None = None
