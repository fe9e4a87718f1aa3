"""The local server's range checks: what a strict server refuses before anything runs.

Decoding (msgspec) already checks shapes and types; these rules check values, with the ranges of the official
types: sampling parameters (shared with the client's own checks in :mod:`tinkex.validation`, so both sides agree),
``num_samples``, the LoRA rank, optimizer parameters and empty training batches. A refused request is answered 400
with ``{"detail": "<field>: <problem and allowed range>"}`` and runs nothing; nothing reaches the fake model out of
range (where it would overflow and answer 500).

:func:`request_problem` is a pure function of the endpoint name and the decoded body (tested by a table);
:func:`refusal` wraps it as the app's reply.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from msgspec import UNSET

from tinkex.validation import InvalidArgumentError, check_sampling_params

from .replies import Reply, error_reply

__all__ = ["ADAM_RANGES", "refusal", "request_problem"]

Range = tuple[float, bool, float, bool]
"""(low, low included, high, high included)."""

ADAM_RANGES: Final[dict[str, Range]] = {
    "learning_rate": (0.0, True, math.inf, False),
    "beta1": (0.0, True, 1.0, False),
    "beta2": (0.0, True, 1.0, False),
    "eps": (0.0, False, math.inf, False),
    "weight_decay": (0.0, True, math.inf, False),
    "grad_clip_norm": (0.0, True, math.inf, False),
}
"""Adam's parameters (and those other optimizer families share): the official ``Field(ge=0)`` / ``lt=1`` bounds."""


def refusal(endpoint: str, body: Any) -> Reply | None:
    """The 400 reply for a request out of range, or ``None`` if it may run."""
    problem = request_problem(endpoint, body)
    return None if problem is None else error_reply(400, problem)


def request_problem(endpoint: str, body: Any) -> str | None:
    """``"<field>: <what is wrong>"`` for the first value out of range, or ``None``."""
    rule = _RULES.get(endpoint)
    return rule(body) if rule is not None else None


def _sample(body: Any) -> str | None:
    if body.num_samples < 1:
        return f"num_samples: expected an int >= 1, got {body.num_samples}"
    if body.topk_prompt_logprobs < 0:
        return f"topk_prompt_logprobs: expected an int >= 0, got {body.topk_prompt_logprobs}"
    if not body.prompt.chunks:
        return "prompt: is empty; send at least one token"
    try:
        check_sampling_params(body.sampling_params)
    except InvalidArgumentError as exc:
        return str(exc)
    return None


def _create_model(body: Any) -> str | None:
    lora = body.lora_config
    if lora is not UNSET and lora is not None and lora.rank < 1:
        return f"lora_config.rank: expected an int >= 1, got {lora.rank}"
    return None


def _loss(field: str) -> Callable[[Any], str | None]:
    def check(body: Any) -> str | None:
        if not hasattr(body, field):  # 0.38's forward sent to forward_backward (protobuf forward_only)
            return _loss("forward_input")(body) if field != "forward_input" else None
        if not getattr(body, field).data:
            return f"{field}.data: is empty; send at least one Datum"
        return None

    return check


def _optim_step(body: Any) -> str | None:
    params = body.optim_params
    if params is UNSET or params is None:
        return None
    where = "adam_params" if body.adam_params is not UNSET else "optimizer_params"
    for name, bounds in ADAM_RANGES.items():
        value = getattr(params, name, None)
        if value is None or value is UNSET:
            continue
        problem = _outside(value, bounds)
        if problem is not None:
            return f"{where}.{name}: {problem}"
    return None


def _outside(value: Any, bounds: Range) -> str | None:
    low, low_in, high, high_in = bounds
    allowed = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return f"expected a number in {allowed}, got {value!r}"
    below = value < low or (value == low and not low_in)
    above = value > high or (value == high and not high_in)
    return f"expected a number in {allowed}, got {value!r}" if below or above else None


_RULES: Final[dict[str, Callable[[Any], str | None]]] = {
    "asample": _sample,
    "create_model": _create_model,
    "forward": _loss("forward_input"),
    "forward_backward": _loss("forward_backward_input"),
    "optim_step": _optim_step,
}
