"""JSON encoding and decoding of the wire types.

Always decode through :func:`decode` / :func:`convert` (never bare ``msgspec.json.decode``): the untagged
unions (``ModelInputChunk``, ``TelemetryEvent``) are resolved by this module's ``dec_hook``. Errors are
``msgspec.ValidationError`` (a ``ValueError``) naming the type and the full field path, e.g.
``invalid ForwardBackwardRequest: Expected `int`, got `str` - at `$.forward_backward_input.data[0].model_input.chunks[0].tokens[1]```.
"""

from __future__ import annotations

import functools
import re
from typing import Any, TypeVar

import msgspec

from ._base import InferredUnion

__all__ = ["convert", "decode", "encode"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()

# msgspec appends " - at `$...`" once per dec_hook level; two adjacent paths are an inner path (relative to
# the union value) followed by the path of that value, and are merged into one.
_NESTED_PATHS = re.compile(r"^(?P<head>.*) - at `\$(?P<inner>[^`]*)` - at `\$(?P<outer>[^`]*)`$", re.DOTALL)


def encode(obj: Any) -> bytes:
    """Compact JSON; ``UNSET`` fields are absent, ``bytes`` are base64."""
    return _encoder.encode(obj)


def _dec_hook(type_: type, obj: Any) -> Any:
    if isinstance(type_, type) and issubclass(type_, InferredUnion):
        if not isinstance(obj, dict):
            raise TypeError(f"Expected `object` for {type_.union_name}, got `{type(obj).__name__}`")
        variant = type_.variant_for(obj)
        try:
            return msgspec.convert(obj, variant, dec_hook=_dec_hook)
        except msgspec.ValidationError as exc:
            # Re-raised as ValueError so msgspec appends the path of this value to the message.
            raise ValueError(str(exc)) from None
    raise NotImplementedError(f"no wire decoding for {type_!r}")


def _full_path_message(message: str) -> str:
    while (match := _NESTED_PATHS.match(message)) is not None:
        message = f"{match['head']} - at `${match['outer']}{match['inner']}`"
    return message


def _invalid(type_: Any, exc: msgspec.ValidationError) -> msgspec.ValidationError:
    """``exc`` prefixed with the target type's name and with its nested paths merged into one."""
    name = getattr(type_, "__name__", None) or repr(type_)
    return msgspec.ValidationError(f"invalid {name}: {_full_path_message(str(exc))}")


@functools.lru_cache(maxsize=None)
def _decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(type_, dec_hook=_dec_hook)


def decode(data: bytes | str, type_: type[T]) -> T:
    """Decode JSON into ``type_``. Malformed JSON raises ``msgspec.DecodeError``; a shape mismatch
    (unknown field in a request, missing required field, wrong type) raises ``msgspec.ValidationError``."""
    try:
        result: T = _decoder(type_).decode(data)
    except msgspec.ValidationError as exc:
        raise _invalid(type_, exc) from None
    return result


def convert(obj: Any, type_: type[T]) -> T:
    """Like :func:`decode` but from already-parsed builtins (dicts, lists, base64 strings for bytes)."""
    try:
        result: T = msgspec.convert(obj, type_, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise _invalid(type_, exc) from None
    return result
