"""Optimizer choice at model creation (``OptimizerConfig``) and per-step hyper-parameters (``OptimParams``).

0.38 added optimizer families: a model is created with an ``OptimizerConfig`` (AdamW by default, or Dimuon),
and each ``optim_step`` carries that family's ``OptimParams``. ``AdamParams`` (the only kind 0.16 knows) has no
``type`` key; every other family's params are tagged with ``type``. A family this SDK does not know decodes to
the base class, which keeps only ``type`` (msgspec cannot keep arbitrary extra keys).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from msgspec import UNSET, UnsetType

from ._base import RequestStruct, unset_reads_as
from ._tagged import TypeTaggedUnion

__all__ = [
    "AdamOptimizerConfig",
    "AdamParams",
    "DimuonOptimizerConfig",
    "DimuonParams",
    "OptimParams",
    "OptimParamsBase",
    "OptimizerConfig",
    "OptimizerConfigBase",
]


class OptimizerConfig(TypeTaggedUnion):
    """``AdamOptimizerConfig | OptimizerConfigBase``: the optimizer family a training model is created with."""

    __slots__ = ()


class OptimizerConfigBase(RequestStruct, OptimizerConfig, kw_only=True, forbid_unknown_fields=False):
    """Any optimizer family, named by ``type`` (an unknown family's other keys are dropped)."""

    type: str


class AdamOptimizerConfig(OptimizerConfigBase, kw_only=True, forbid_unknown_fields=True):
    type: Literal["adamw"] = "adamw"


class DimuonOptimizerConfig(OptimizerConfigBase, kw_only=True, forbid_unknown_fields=True):
    """Selects the Dimuon optimizer for a training model."""

    type: Literal["dimuon"] = "dimuon"
    version: Literal[1] = 1


OptimizerConfig.register(AdamOptimizerConfig, DimuonOptimizerConfig, unknown=OptimizerConfigBase)


class OptimParams(TypeTaggedUnion):
    """``AdamParams | OptimParamsBase``: one optimizer step's hyper-parameters. Adam's carry no ``type``."""

    __slots__ = ()


@unset_reads_as(learning_rate=1e-4, beta1=0.9, beta2=0.95, eps=1e-12, weight_decay=0.0, grad_clip_norm=0.0)
class AdamParams(RequestStruct, OptimParams, kw_only=True):
    """Adam hyper-parameters. Only the ones passed are sent (the server applies the rest, as 0.16 does);
    reading an unpassed one gives the documented default."""

    learning_rate: float | UnsetType = UNSET
    beta1: float | UnsetType = UNSET
    beta2: float | UnsetType = UNSET
    eps: float | UnsetType = UNSET
    weight_decay: float | UnsetType = UNSET
    grad_clip_norm: float | UnsetType = UNSET


class OptimParamsBase(RequestStruct, OptimParams, kw_only=True, forbid_unknown_fields=False):
    """Any non-Adam family's step parameters, named by ``type`` (an unknown family's other keys are dropped)."""

    type: str


class DimuonParams(OptimParamsBase, kw_only=True, forbid_unknown_fields=True):
    """Hyper-parameters for one Dimuon optimizer step."""

    type: Literal["dimuon"] = "dimuon"
    learning_rate: float
    """Step size, >= 0."""
    grad_clip_norm: float = 0.0
    """Maximum global gradient norm; nonpositive disables clipping."""
    beta1: float = 0.9
    """EMA coefficient of the momentum, in [0, 1)."""

    def _after_conversion(self) -> None:
        _check_finite(self, ("learning_rate", "grad_clip_norm", "beta1"))
        if self.learning_rate < 0:
            raise ValueError(f"DimuonParams.learning_rate must be >= 0, got {self.learning_rate}")
        if not 0 <= self.beta1 < 1:
            raise ValueError(f"DimuonParams.beta1 must be in [0, 1), got {self.beta1}")


def _check_finite(obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{type(obj).__name__}.{name} must be finite, got {value}")


OptimParams.register(DimuonParams, untagged=AdamParams, unknown=OptimParamsBase)
