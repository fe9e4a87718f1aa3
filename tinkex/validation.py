"""Argument checks at the call: a wrong argument fails at once, naming the argument and the fix, before anything
is queued or sent, and the client stays usable.

Pure functions, called by the public methods (``SamplingClient.sample``, ``TrainingClient.forward_backward`` and
``forward``, ``Datum``). Each returns the value it accepted (so a call site reads ``data = check_data(data)``) or
raises :class:`InvalidArgumentError`, which is both a ``TypeError`` and a ``ValueError``: code that caught either
from the official SDK's late failures keeps working.

``InvalidArgumentError`` and :func:`check_model_input` live in :mod:`tinkex.types.argument_check` (``Datum`` runs the
check when it is built) and are re-exported here, their import path.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .types.argument_check import InvalidArgumentError, check_model_input, describe_value, is_int
from .types.sampling import SamplingParams
from .types.training import Datum

__all__ = [
    "LOSS_FN_NAMES",
    "InvalidArgumentError",
    "check_data",
    "check_loss_fn",
    "check_loss_fn_config",
    "check_model_input",
    "check_num_samples",
    "check_sampling_params",
]

LOSS_FN_NAMES: Final = (
    "cross_entropy",
    "importance_sampling",
    "ppo",
    "cispo",
    "dro",
    "gspo",
    "stable_reinforce",
    "custom",
)
"""The loss names the service knows (``tinkex.types.LossFnType``)."""


def check_data(data: Any, argument: str = "data", *, allow_empty: bool = False) -> list[Datum]:
    """A list (or sequence) of ``Datum``, non-empty unless ``allow_empty``; a single Datum, or an element that is
    not one, refused."""
    if isinstance(data, Datum):
        raise InvalidArgumentError(argument, "expected a list of Datum, got a single Datum; pass [datum]")
    if isinstance(data, str | bytes | Mapping) or not isinstance(data, Sequence):
        raise InvalidArgumentError(argument, f"expected a list of Datum, got {describe_value(data)}")
    if not data and not allow_empty:
        raise InvalidArgumentError(argument, "is empty; pass at least one Datum")
    for index, item in enumerate(data):
        if not isinstance(item, Datum):
            raise InvalidArgumentError(
                f"{argument}[{index}]",
                f"expected a tinkex.types.Datum, got {describe_value(item)}; build one with "
                "Datum(model_input=ModelInput.from_ints(...), loss_fn_inputs={...})",
            )
    return list(data)


def check_loss_fn(loss_fn: Any, argument: str = "loss_fn", known: Sequence[str] = LOSS_FN_NAMES) -> str:
    """A known loss name; an unknown one refused with the valid names (and the closest, if one is close)."""
    if not isinstance(loss_fn, str):
        raise InvalidArgumentError(
            argument,
            f"expected a loss name (str), got {describe_value(loss_fn)}; one of {', '.join(known)} "
            "(a custom loss function goes to forward_backward_custom)",
        )
    if loss_fn in known:
        return loss_fn
    close = difflib.get_close_matches(loss_fn, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise InvalidArgumentError(argument, f"unknown loss {loss_fn!r}{hint}; one of {', '.join(known)}")


def check_loss_fn_config(config: Any, argument: str = "loss_fn_config") -> dict[str, float] | None:
    """None, or a mapping of names to finite numbers."""
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise InvalidArgumentError(argument, f"expected a dict of str to float or None, got {describe_value(config)}")
    for key, value in config.items():
        if not isinstance(key, str):
            raise InvalidArgumentError(argument, f"keys must be str, got {describe_value(key)}")
        if not _is_number(value) or not math.isfinite(value):
            raise InvalidArgumentError(f"{argument}[{key!r}]", f"expected a finite number, got {value!r}")
    return dict(config)


def check_num_samples(num_samples: Any, argument: str = "num_samples") -> int:
    if not is_int(num_samples) or num_samples < 1:
        raise InvalidArgumentError(argument, f"expected an int >= 1, got {num_samples!r}")
    return int(num_samples)


def check_sampling_params(params: Any, argument: str = "sampling_params") -> SamplingParams:
    """A ``SamplingParams`` whose set fields are in range: temperature >= 0, 0 < top_p <= 1, top_k -1 (off) or
    >= 1, max_tokens >= 1, seed an int, stop a string or a list of strings or of token ids."""
    if not isinstance(params, SamplingParams):
        raise InvalidArgumentError(
            argument,
            f"expected a tinkex.types.SamplingParams, got {describe_value(params)}; e.g. SamplingParams(max_tokens=64)",
        )
    for name, value in _set_fields(params).items():
        problem = _sampling_problem(name, value)
        if problem is not None:
            raise InvalidArgumentError(f"{argument}.{name}", problem)
    return params


def _sampling_problem(name: str, value: Any) -> str | None:
    """What is wrong with one set sampling parameter, or None."""
    if value is None and name in ("max_tokens", "seed", "stop"):
        return None
    if name == "temperature":
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            return f"expected a finite number >= 0 (0 is greedy), got {value!r}"
    elif name == "top_p":
        if not _is_number(value) or not 0 < value <= 1:
            return f"expected a number in (0, 1], got {value!r}"
    elif name == "top_k":
        if not is_int(value) or (value != -1 and value < 1):
            return f"expected -1 (no limit) or an int >= 1, got {value!r}"
    elif name == "max_tokens":
        if not is_int(value) or value < 1:
            return f"expected an int >= 1 or None, got {value!r}"
    elif name == "seed":
        if not is_int(value):
            return f"expected an int or None, got {value!r}"
    elif name == "stop":
        if isinstance(value, str):
            return None
        if not isinstance(value, Sequence) or isinstance(value, bytes):
            return f"expected a string, a list of strings or a list of token ids, got {describe_value(value)}"
        all_str = all(isinstance(item, str) for item in value)
        all_int = all(is_int(item) for item in value)
        if not (all_str or all_int):
            return "expected a list of strings or a list of token ids, not a mix"
    return None


def _set_fields(params: Any) -> dict[str, Any]:
    import msgspec

    fields: dict[str, Any] = {}
    for name in getattr(type(params), "__struct_fields__", ()):
        value = getattr(params, name, msgspec.UNSET)
        if value is not msgspec.UNSET:
            fields[name] = value
    return fields


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
