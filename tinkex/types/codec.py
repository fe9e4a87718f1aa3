"""JSON encoding and decoding of the wire types.

Always decode through :func:`decode` / :func:`convert` (never bare ``msgspec.json.decode``): the untagged
unions (``ModelInputChunk``, ``TelemetryEvent``) are resolved by ``_base.decode_hook``. Errors are
``msgspec.ValidationError`` (a ``ValueError``) naming the type and the full field path, e.g.
``invalid ForwardBackwardRequest: Expected `int`, got `str` - at `$.forward_backward_input.data[0].model_input.chunks[0].tokens[1]```.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import msgspec

from ._base import DECODING, decode_hook, full_path_message

__all__ = ["convert", "decode", "encode"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    """Compact JSON; ``UNSET`` fields are absent, ``bytes`` are base64."""
    return _encoder.encode(obj)


def _invalid(type_: Any, exc: msgspec.ValidationError) -> msgspec.ValidationError:
    """``exc`` prefixed with the target type's name and with its nested paths merged into one."""
    name = getattr(type_, "__name__", None) or repr(type_)
    return msgspec.ValidationError(f"invalid {name}: {full_path_message(str(exc))}")


@functools.lru_cache(maxsize=None)
def _decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(type_, dec_hook=decode_hook)


def decode(data: bytes | str, type_: type[T]) -> T:
    """Decode JSON into ``type_``. Malformed JSON raises ``msgspec.DecodeError``; a shape mismatch
    (unknown field in a request, missing required field, wrong type) raises ``msgspec.ValidationError``."""
    previous, DECODING.trusted = DECODING.trusted, True  # msgspec validates: Structs skip their own check
    try:
        result: T = _decoder(type_).decode(data)
    except msgspec.ValidationError as exc:
        raise _invalid(type_, exc) from None
    finally:
        DECODING.trusted = previous
    return result


def convert(obj: Any, type_: type[T]) -> T:
    """Like :func:`decode` but from already-parsed builtins (dicts, lists, base64 strings for bytes)."""
    previous, DECODING.trusted = DECODING.trusted, True
    try:
        result: T = msgspec.convert(obj, type_, dec_hook=decode_hook)
    except msgspec.ValidationError as exc:
        raise _invalid(type_, exc) from None
    finally:
        DECODING.trusted = previous
    return result
