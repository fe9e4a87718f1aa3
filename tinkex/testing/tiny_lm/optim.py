"""Adam with decoupled weight decay (AdamW) on the adapter: the optimizer of 0.38's ``AdamParams``.

Gradients are summed over every ``forward_backward`` since the last step. A step clips them to
``grad_clip_norm`` (global L2 norm, 0 = off), updates the moments, and applies
``p -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p)`` with bias-corrected moments. Another optimizer
family (0.38's ``DimuonParams``, or any ``type`` this server does not know) is refused with
:class:`~.errors.UnsupportedOptimizer`, which names it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .errors import ModelInputError, UnsupportedOptimizer

__all__ = ["AdamSettings", "adam_step", "adam_settings"]


@dataclass(frozen=True)
class AdamSettings:
    """``AdamParams``' fields with the official defaults."""

    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0


def adam_settings(params: Any) -> AdamSettings:
    """The settings of one ``optim_step``'s params: an ``AdamParams`` (read field by field, unset ones at their
    defaults); anything carrying another optimizer ``type`` is refused."""
    family = getattr(params, "type", None)
    if isinstance(family, str) and family not in ("adam", "adamw"):
        raise UnsupportedOptimizer(family)
    defaults = AdamSettings()
    values = {f.name: float(getattr(params, f.name, getattr(defaults, f.name))) for f in fields(AdamSettings)}
    settings = AdamSettings(**values)
    problems = [name for name, value in values.items() if not math.isfinite(value)]
    if problems:
        raise ModelInputError(f"adam_params: {', '.join(problems)} must be finite")
    if settings.learning_rate < 0:
        raise ModelInputError(f"adam_params.learning_rate must be >= 0, got {settings.learning_rate}")
    if not (0 <= settings.beta1 < 1 and 0 <= settings.beta2 < 1):
        raise ModelInputError(f"adam_params: beta1 and beta2 must be in [0, 1), got {settings.beta1}, {settings.beta2}")
    return settings


def adam_step(
    params: MutableMapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    first_moment: MutableMapping[str, np.ndarray],
    second_moment: MutableMapping[str, np.ndarray],
    step: int,
    settings: AdamSettings,
) -> float:
    """Update ``params`` and the moments in place as step number ``step`` (1 for the first); returns the gradient's
    global norm before clipping."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    factor = settings.grad_clip_norm / norm if 0 < settings.grad_clip_norm < norm else 1.0
    b1, b2 = settings.beta1, settings.beta2
    correction1, correction2 = 1.0 - b1**step, 1.0 - b2**step
    for name, param in params.items():
        grad = grads[name] * factor if name in grads else np.zeros_like(param)
        m = first_moment.setdefault(name, np.zeros_like(param))
        v = second_moment.setdefault(name, np.zeros_like(param))
        m *= b1
        m += (1.0 - b1) * grad
        v *= b2
        v += (1.0 - b2) * grad * grad
        update = (m / correction1) / (np.sqrt(v / correction2) + settings.eps)
        if settings.weight_decay:
            update += settings.weight_decay * param
        param -= settings.learning_rate * update
    return norm
