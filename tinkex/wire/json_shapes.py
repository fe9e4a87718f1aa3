"""The JSON shapes of the 0.38 dialect: what official 0.38.0 puts on the wire for tinkex's request types.

0.38.0 dumps every request with ``exclude_unset=False, exclude_none=True``: each field goes out with its value or
its default (so ``type`` discriminators and all optimizer parameters are sent) and no field is ``null``. tinkex's
request types keep 0.16.1's rule in their slots (an unset field is ``UNSET``; its 0.38 default is the read default
:func:`tinkex.types._base.unset_reads_as` gave it), so this module fills those defaults in, drops ``None``, and
uses the wire names the types declare. Plain data inside (dicts, lists) is kept as it is.

Not every 0.38 request goes through that dump: the REST client writes a few bodies as literal dicts, where a
``None`` is sent as ``null`` because it means something (``ttl_seconds: null`` removes a checkpoint's expiry).
Those types (:data:`LITERAL_BODIES`) keep 0.16.1's encoding in both dialects.
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
from msgspec import UNSET

from tinkex.types import SetCheckpointTtlRequest, WeightsInfoRequest
from tinkex.types._base import _ReadDefault

__all__ = ["LITERAL_BODIES", "dump_038"]

LITERAL_BODIES: frozenset[type] = frozenset({SetCheckpointTtlRequest, WeightsInfoRequest})
"""Request types official 0.38 sends as literal dicts (``rest_client.py``), not through its exclude-none dump."""

_NO_DEFAULT = object()
_SCALARS: frozenset[type] = frozenset({int, float, str, bool, bytes, type(None)})
_PLAIN_LEAVES = (
    mi.IntType,
    mi.FloatType,
    mi.StrType,
    mi.BoolType,
    mi.BytesType,
    mi.NoneType,
    mi.LiteralType,
    mi.EnumType,
)
_PLAIN_CONTAINERS = (
    mi.ListType,
    mi.TupleType,
    mi.VarTupleType,
    mi.DictType,
    mi.SetType,
    mi.FrozenSetType,
    mi.UnionType,
)
_PLANS: dict[type, tuple[tuple[str, Any, bool], ...]] = {}


def _holds_no_struct(declared: mi.Type) -> bool:
    """Whether a value of type ``declared`` is data that ``dump_038`` would give back unchanged (as JSON): scalars
    and containers of them. A Struct, ``Any`` or a type msgspec does not describe may hold a request type."""
    if isinstance(declared, _PLAIN_LEAVES):
        return True
    if not isinstance(declared, _PLAIN_CONTAINERS):
        return False
    if isinstance(declared, mi.UnionType):
        return all(_holds_no_struct(member) for member in declared.types)
    if isinstance(declared, mi.DictType):
        return _holds_no_struct(declared.key_type) and _holds_no_struct(declared.value_type)
    if isinstance(declared, mi.TupleType):
        return all(_holds_no_struct(item) for item in declared.item_types)
    return _holds_no_struct(declared.item_type)


def _plan(cls: type[msgspec.Struct]) -> tuple[tuple[str, Any, bool], ...]:
    """Per field, in slot order: its wire name, the 0.38 default of an unset slot, and whether its declared type
    holds no Struct (its value is then sent as it is, without walking it). Computed once per type."""
    found = _PLANS.get(cls)
    if found is None:
        try:
            declared = {field.name: field.type for field in mi.type_info(cls).fields}  # type: ignore[union-attr]
        except (TypeError, ValueError, AttributeError):  # a type msgspec cannot describe: walk every field
            declared = {}
        entries = []
        for name, wire_name in zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True):
            default = _NO_DEFAULT
            for base in cls.__mro__:
                attribute = base.__dict__.get(name)
                if attribute is not None:
                    if isinstance(attribute, _ReadDefault):
                        default = attribute._default
                    break
            field_type = declared.get(name)
            entries.append((wire_name, default, field_type is not None and _holds_no_struct(field_type)))
        found = _PLANS[cls] = tuple(entries)
    return found


def dump_038(value: Any) -> Any:
    """``value`` as builtins in 0.38.0's request shape (bytes and other scalars are left to the JSON encoder).

    Data that holds no request type (a token list, a dict of numbers) is returned as it is rather than copied:
    the JSON encoder writes it the same either way, and walking it item by item was most of this function's
    cost."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        # astuple reads the slots themselves: a read default or alias must not leak in.
        for (wire_name, default, plain), item in zip(_plan(type(value)), msgspec.structs.astuple(value), strict=True):
            if item is UNSET:
                if default is _NO_DEFAULT:
                    continue
                item = default
            if item is None:
                continue
            out[wire_name] = item if plain else dump_038(item)
        return out
    kind = type(value)
    if kind is list or kind is tuple:
        if _SCALARS.issuperset(map(type, value)):
            return value
        return [dump_038(item) for item in value]
    if kind is dict:
        if _SCALARS.issuperset(map(type, value.values())):
            return value
        return {key: dump_038(item) for key, item in value.items()}
    return value
