"""Argument checks at the call: a wrong argument fails at once, naming the argument and the fix, before anything
is queued or sent, and the client stays usable.

Pure functions, called by the public methods (``SamplingClient.sample``, ``TrainingClient.forward_backward`` and
``forward``, ``Datum``). Each returns the value it accepted (so a call site reads ``data = check_data(data)``) or
raises :class:`InvalidArgumentError`, which is both a ``TypeError`` and a ``ValueError``: code that caught either
from the official SDK's late failures keeps working.

Types are imported inside the functions: ``tinkex.types`` itself calls these checks, and must be importable first.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from pristine_transport.errors import PristineError

if TYPE_CHECKING:
    from tinkex.types import Datum, ModelInput, SamplingParams

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

_TOKENIZE_HINT = "tokenize it first: ModelInput.from_ints(tokenizer.encode(text))"


class InvalidArgumentError(PristineError, TypeError, ValueError):
    """An argument of a public call is wrong. ``argument`` names it (``prompt``, ``data[3]``,
    ``sampling_params.top_p``); the message says what was given and how to fix it."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument}: {problem}")
        self.argument = argument


def check_model_input(value: Any, argument: str = "prompt") -> ModelInput:
    """A ``ModelInput`` as is; anything else (a string, a token list, a dict) refused with the way to build one."""
    from tinkex.types.model_input import ModelInput

    if isinstance(value, ModelInput):
        return value
    given = _describe(value)
    if isinstance(value, str):
        raise InvalidArgumentError(argument, f"expected a tinkex.types.ModelInput, got {given}; {_TOKENIZE_HINT}")
    if isinstance(value, Sequence) and value and all(_is_int(item) for item in value):
        raise InvalidArgumentError(
            argument,
            f"expected a tinkex.types.ModelInput, got {given} of token ids; wrap it: ModelInput.from_ints(...)",
        )
    raise InvalidArgumentError(
        argument,
        f"expected a tinkex.types.ModelInput, got {given}; build one with ModelInput.from_ints(tokens) or "
        "ModelInput(chunks=[...])",
    )


def check_data(data: Any, argument: str = "data", *, allow_empty: bool = False) -> list[Datum]:
    """A list (or sequence) of ``Datum``, non-empty unless ``allow_empty``; a single Datum, or an element that is
    not one, refused."""
    from tinkex.types.training import Datum

    if isinstance(data, Datum):
        raise InvalidArgumentError(argument, "expected a list of Datum, got a single Datum; pass [datum]")
    if isinstance(data, str | bytes | Mapping) or not isinstance(data, Sequence):
        raise InvalidArgumentError(argument, f"expected a list of Datum, got {_describe(data)}")
    if not data and not allow_empty:
        raise InvalidArgumentError(argument, "is empty; pass at least one Datum")
    for index, item in enumerate(data):
        if not isinstance(item, Datum):
            raise InvalidArgumentError(
                f"{argument}[{index}]",
                f"expected a tinkex.types.Datum, got {_describe(item)}; build one with "
                "Datum(model_input=ModelInput.from_ints(...), loss_fn_inputs={...})",
            )
    return list(data)


def check_loss_fn(loss_fn: Any, argument: str = "loss_fn", known: Sequence[str] = LOSS_FN_NAMES) -> str:
    """A known loss name; an unknown one refused with the valid names (and the closest, if one is close)."""
    if not isinstance(loss_fn, str):
        raise InvalidArgumentError(
            argument,
            f"expected a loss name (str), got {_describe(loss_fn)}; one of {', '.join(known)} "
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
        raise InvalidArgumentError(argument, f"expected a dict of str to float or None, got {_describe(config)}")
    for key, value in config.items():
        if not isinstance(key, str):
            raise InvalidArgumentError(argument, f"keys must be str, got {_describe(key)}")
        if not _is_number(value) or not math.isfinite(value):
            raise InvalidArgumentError(f"{argument}[{key!r}]", f"expected a finite number, got {value!r}")
    return dict(config)


def check_num_samples(num_samples: Any, argument: str = "num_samples") -> int:
    if not _is_int(num_samples) or num_samples < 1:
        raise InvalidArgumentError(argument, f"expected an int >= 1, got {num_samples!r}")
    return int(num_samples)


def check_sampling_params(params: Any, argument: str = "sampling_params") -> SamplingParams:
    """A ``SamplingParams`` whose set fields are in range: temperature >= 0, 0 < top_p <= 1, top_k -1 (off) or
    >= 1, max_tokens >= 1, seed an int, stop a string or a list of strings or of token ids."""
    from tinkex.types.sampling import SamplingParams

    if not isinstance(params, SamplingParams):
        raise InvalidArgumentError(
            argument,
            f"expected a tinkex.types.SamplingParams, got {_describe(params)}; e.g. SamplingParams(max_tokens=64)",
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
        if not _is_int(value) or (value != -1 and value < 1):
            return f"expected -1 (no limit) or an int >= 1, got {value!r}"
    elif name == "max_tokens":
        if not _is_int(value) or value < 1:
            return f"expected an int >= 1 or None, got {value!r}"
    elif name == "seed":
        if not _is_int(value):
            return f"expected an int or None, got {value!r}"
    elif name == "stop":
        if isinstance(value, str):
            return None
        if not isinstance(value, Sequence) or isinstance(value, bytes):
            return f"expected a string, a list of strings or a list of token ids, got {_describe(value)}"
        all_str = all(isinstance(item, str) for item in value)
        all_int = all(_is_int(item) for item in value)
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    """``str 'hello wor…'``, ``list of 3``, ``dict``: enough to recognize the mistake, never a huge dump."""
    kind = type(value).__name__
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:20] + "…"
        return f"str {shown!r}"
    if isinstance(value, list | tuple):
        return f"{kind} of {len(value)}"
    return kind
