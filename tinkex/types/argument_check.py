"""The check of a ``ModelInput`` argument, and :class:`InvalidArgumentError`, which every argument check raises.

Here, under ``tinkex.types``, because a type runs the check itself (``Datum`` refuses a ``model_input`` that is no
``ModelInput`` when it is built). :mod:`tinkex.validation` re-exports both (their import path since the start) and
holds the other checks, which need the types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pristine_transport.errors import PristineError

from .model_input import ModelInput

__all__ = ["InvalidArgumentError", "check_model_input", "describe_value", "is_int"]

_TOKENIZE_HINT = "tokenize it first: ModelInput.from_ints(tokenizer.encode(text))"


class InvalidArgumentError(PristineError, TypeError, ValueError):
    """An argument of a public call is wrong. ``argument`` names it (``prompt``, ``data[3]``,
    ``sampling_params.top_p``); the message says what was given and how to fix it."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument}: {problem}")
        self.argument = argument
        self.problem = problem

    def __reduce__(self) -> tuple[Any, ...]:  # rebuilt from both arguments in a worker process or a parent
        return (type(self), (self.argument, self.problem), self.__dict__)


def check_model_input(value: Any, argument: str = "prompt") -> ModelInput:
    """A ``ModelInput`` as is; anything else (a string, a token list, a dict) refused with the way to build one."""
    if isinstance(value, ModelInput):
        return value
    given = describe_value(value)
    if isinstance(value, str):
        raise InvalidArgumentError(argument, f"expected a tinkex.types.ModelInput, got {given}; {_TOKENIZE_HINT}")
    if isinstance(value, Sequence) and value and all(is_int(item) for item in value):
        raise InvalidArgumentError(
            argument,
            f"expected a tinkex.types.ModelInput, got {given} of token ids; wrap it: ModelInput.from_ints(...)",
        )
    raise InvalidArgumentError(
        argument,
        f"expected a tinkex.types.ModelInput, got {given}; build one with ModelInput.from_ints(tokens) or "
        "ModelInput(chunks=[...])",
    )


def is_int(value: Any) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def describe_value(value: Any) -> str:
    """``str 'hello wor…'``, ``list of 3``, ``dict``: enough to recognize the mistake, never a huge dump."""
    kind = type(value).__name__
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:20] + "…"
        return f"str {shown!r}"
    if isinstance(value, list | tuple):
        return f"{kind} of {len(value)}"
    return kind
