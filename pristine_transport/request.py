"""Building blocks of a request: the NotGiven / Omit sentinels, querystring encoding, header merging, JSON bodies.

Querystrings follow the Stainless ``Querystring`` rules the official SDKs use: ``True``/``False`` become
``true``/``false``, ``None`` is dropped, nested mappings become ``a[b]=…`` and lists are encoded per the
endpoint's array format (``comma``: ``a=1,2``; ``repeat``: ``a=1&a=2``; ``brackets``: ``a[]=1&a[]=2``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final, Literal, Self

import httpx
import msgspec

__all__ = [
    "NOT_GIVEN",
    "ArrayFormat",
    "NotGiven",
    "Omit",
    "encode_query",
    "json_body",
    "merge_body",
    "merge_headers",
    "merge_query",
    "omit",
]

ArrayFormat = Literal["comma", "repeat", "brackets"]


class _Sentinel:
    """A falsy singleton that pickles back to its module-level name."""

    _name: ClassVar[str]

    def __new__(cls) -> Self:
        instance = cls.__dict__.get("_instance")
        if instance is None:
            instance = super().__new__(cls)
            cls._instance = instance
        return instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


class NotGiven(_Sentinel):
    """The caller did not pass this argument (distinct from an explicit ``None``, which may mean JSON null)."""

    _name = "NOT_GIVEN"


class Omit(_Sentinel):
    """As a header or query value: remove the default that an earlier layer of the merge would have sent."""

    _name = "omit"


NOT_GIVEN: Final = NotGiven()
omit: Final = Omit()

HeaderLayer = Mapping[str, "str | Omit"] | httpx.Headers | None
QueryLayer = Mapping[str, Any] | None


def merge_headers(*layers: HeaderLayer) -> dict[str, str]:
    """Merge header mappings case-insensitively, later layers winning; an ``omit`` value removes the header.

    The result keeps the spelling of the layer that set each header last.
    """
    merged: dict[str, tuple[str, str]] = {}
    for layer in layers:
        if not layer:
            continue
        for name, value in layer.items():
            key = name.lower()
            if isinstance(value, Omit):
                merged.pop(key, None)
            else:
                merged[key] = (name, value)
    return dict(merged.values())


def merge_query(*layers: QueryLayer) -> dict[str, Any]:
    """Merge query mappings (exact key match), later layers winning; an ``omit`` value removes the parameter."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            _overlay(merged, layer)
    return merged


def merge_body(body: Any, *layers: Mapping[str, Any] | None) -> Any:
    """``body`` with the keys of each later layer set over it (``omit`` removes a key). Without extra keys the body
    is returned as is (a Struct stays a Struct); otherwise it must be a JSON object."""
    extra = [layer for layer in layers if layer]
    if not extra:
        return body
    merged = msgspec.to_builtins(body) if body is not NOT_GIVEN else {}
    if not isinstance(merged, dict):
        raise TypeError(f"extra body keys need a JSON object body, got {type(body).__name__}")
    for layer in extra:
        _overlay(merged, layer)
    return merged


def _overlay(merged: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, Omit):
            merged.pop(key, None)
        else:
            merged[key] = value


def encode_query(params: QueryLayer, array_format: ArrayFormat = "comma") -> list[tuple[str, str]]:
    """Flatten ``params`` into ``(name, value)`` pairs for httpx (which percent-encodes them)."""
    if array_format not in ("comma", "repeat", "brackets"):
        raise ValueError(f"array_format must be 'comma', 'repeat' or 'brackets', got {array_format!r}")
    pairs: list[tuple[str, str]] = []
    if params:
        for name, value in params.items():
            _encode_value(name, value, array_format, pairs)
    return pairs


def _encode_value(key: str, value: Any, array_format: ArrayFormat, out: list[tuple[str, str]]) -> None:
    if value is None or isinstance(value, (Omit, NotGiven)):
        return
    if isinstance(value, Mapping):
        for sub_key, sub_value in value.items():
            _encode_value(f"{key}[{sub_key}]", sub_value, array_format, out)
    elif isinstance(value, (list, tuple)):
        _encode_array(key, value, array_format, out)
    else:
        out.append((key, _primitive(value)))


def _encode_array(key: str, items: Iterable[Any], array_format: ArrayFormat, out: list[tuple[str, str]]) -> None:
    present = [item for item in items if item is not None]
    if array_format == "comma":
        if present:
            out.append((key, ",".join(_primitive(item) for item in present)))
        return
    item_key = f"{key}[]" if array_format == "brackets" else key
    for item in present:
        _encode_value(item_key, item, array_format, out)


def _primitive(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


_JSON_ENCODER: Final = msgspec.json.Encoder()


def json_body(obj: Any) -> bytes:
    """``obj`` (plain data or msgspec Structs) as compact JSON bytes. Unset Struct fields are left out by msgspec."""
    return _JSON_ENCODER.encode(obj)
