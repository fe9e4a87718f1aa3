"""The built-in losses, per token, with the formulas and ``loss_fn_config`` keys of Tinker's "Loss Functions" docs.

Each loss maps the model's logprobs ``lp`` of the target tokens (and the datum's ``loss_fn_inputs``) to an
elementwise loss; the datum's loss is their sum and ``loss:sum`` the sum over the batch. With
``ratio = exp(lp - q)`` (``q``: the sampler's ``logprobs``) and ``A`` the ``advantages``:

=====================  ============================================================  ===========================
loss                   elementwise loss                                              dLoss/dlp
=====================  ============================================================  ===========================
cross_entropy          ``-w * lp``  (``w``: ``weights``, 1 if absent)                 ``-w``
importance_sampling    ``-ratio * A``                                                ``-ratio * A``
ppo                    ``-min(ratio * A, clip(ratio, lo, hi) * A)``                  ``-ratio * A`` where the
                                                                                     unclipped term is the min,
                                                                                     else 0
cispo                  ``-sg(clip(ratio, lo, hi)) * lp * A``                          ``-clip(ratio, lo, hi) * A``
dro                    ``-(lp * A - beta / 2 * (lp - q) ** 2)``                       ``-(A - beta * (lp - q))``
=====================  ============================================================  ===========================

``lo`` / ``hi`` are ``loss_fn_config``'s ``clip_low_threshold`` / ``clip_high_threshold`` (default 0.8 / 1.2, the
docs' epsilon of 0.2); ``beta`` is ``dro``'s (default 0.05). ``sg`` is stop-gradient. A config key the loss does
not take is refused, naming the keys it does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ModelInputError

__all__ = ["CONFIG_KEYS", "LOSS_FUNCTIONS", "LossTerms", "loss_settings", "loss_terms", "required_inputs"]

LOSS_FUNCTIONS = ("cross_entropy", "importance_sampling", "ppo", "cispo", "dro")
CONFIG_KEYS: Mapping[str, Mapping[str, float]] = {
    "cross_entropy": {},
    "importance_sampling": {},
    "ppo": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
    "cispo": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
    "dro": {"beta": 0.05},
}
"""Each loss's ``loss_fn_config`` keys and their defaults."""
_REQUIRED_INPUTS = {
    "cross_entropy": ("target_tokens",),
    "importance_sampling": ("target_tokens", "logprobs", "advantages"),
    "ppo": ("target_tokens", "logprobs", "advantages"),
    "cispo": ("target_tokens", "logprobs", "advantages"),
    "dro": ("target_tokens", "logprobs", "advantages"),
}


def required_inputs(loss_fn: str) -> tuple[str, ...]:
    return _REQUIRED_INPUTS[loss_fn]


def loss_settings(loss_fn: str, config: Mapping[str, float] | None) -> dict[str, float]:
    """The loss's settings: its defaults overridden by ``config``; an unknown loss or key is a user error."""
    if loss_fn not in CONFIG_KEYS:
        raise ModelInputError(f"unknown loss_fn {loss_fn!r}; expected one of {', '.join(LOSS_FUNCTIONS)} or 'custom'")
    defaults = CONFIG_KEYS[loss_fn]
    unknown = sorted(set(config or {}) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) if defaults else "none"
        raise ModelInputError(f"loss_fn_config key(s) {unknown} do not apply to {loss_fn!r} (it takes: {allowed})")
    settings = {**defaults, **{k: float(v) for k, v in (config or {}).items()}}
    if loss_fn in ("ppo", "cispo") and settings["clip_low_threshold"] > settings["clip_high_threshold"]:
        raise ModelInputError(
            f"loss_fn_config: clip_low_threshold {settings['clip_low_threshold']} is above clip_high_threshold "
            f"{settings['clip_high_threshold']}"
        )
    return settings


@dataclass(frozen=True)
class LossTerms:
    elementwise: np.ndarray
    d_logprobs: np.ndarray
    """dLoss/dlp per token: what the model's backward pass starts from."""


def loss_terms(
    loss_fn: str, logprobs: np.ndarray, inputs: Mapping[str, Sequence[float] | np.ndarray], settings: Mapping[str, float]
) -> LossTerms:
    """One datum's elementwise loss and its gradient in the logprobs (``settings`` from :func:`loss_settings`)."""
    lp = logprobs
    if loss_fn == "cross_entropy":
        weights = np.asarray(inputs["weights"], dtype=lp.dtype) if "weights" in inputs else np.ones_like(lp)
        return LossTerms(-weights * lp, -weights)
    q = np.asarray(inputs["logprobs"], dtype=lp.dtype)
    advantages = np.asarray(inputs["advantages"], dtype=lp.dtype)
    ratio = np.exp(lp - q)
    if loss_fn == "importance_sampling":
        return LossTerms(-ratio * advantages, -ratio * advantages)
    if loss_fn in ("ppo", "cispo"):
        clipped = np.clip(ratio, settings["clip_low_threshold"], settings["clip_high_threshold"])
        if loss_fn == "cispo":
            return LossTerms(-clipped * lp * advantages, -clipped * advantages)
        unclipped_term, clipped_term = ratio * advantages, clipped * advantages
        # The gradient flows through whichever term is the min; a clipped ratio is constant in lp. Where the ratio
        # is inside the clip range both terms are the same function of lp.
        inside = (ratio >= settings["clip_low_threshold"]) & (ratio <= settings["clip_high_threshold"])
        active = inside | (unclipped_term <= clipped_term)
        return LossTerms(-np.minimum(unclipped_term, clipped_term), np.where(active, -ratio * advantages, 0.0))
    if loss_fn == "dro":
        beta = settings["beta"]
        return LossTerms(-(lp * advantages - 0.5 * beta * (lp - q) ** 2), -(advantages - beta * (lp - q)))
    raise ModelInputError(f"unknown loss_fn {loss_fn!r}; expected one of {', '.join(LOSS_FUNCTIONS)}")
