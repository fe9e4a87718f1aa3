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
from msgspec import UNSET

from tinkex.types import SetCheckpointTtlRequest, WeightsInfoRequest
from tinkex.types._base import _raw, _ReadDefault

__all__ = ["LITERAL_BODIES", "dump_038"]

LITERAL_BODIES: frozenset[type] = frozenset({SetCheckpointTtlRequest, WeightsInfoRequest})
"""Request types official 0.38 sends as literal dicts (``rest_client.py``), not through its exclude-none dump."""

_NO_DEFAULT = object()
_FIELDS: dict[type, tuple[tuple[str, str, Any], ...]] = {}


def _fields(cls: type[msgspec.Struct]) -> tuple[tuple[str, str, Any], ...]:
    """(attribute name, wire name, 0.38 default of an unset slot) per field, computed once per type."""
    found = _FIELDS.get(cls)
    if found is None:
        entries = []
        for name, wire_name in zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True):
            default = _NO_DEFAULT
            for base in cls.__mro__:
                attribute = base.__dict__.get(name)
                if attribute is not None:
                    if isinstance(attribute, _ReadDefault):
                        default = attribute._default
                    break
            entries.append((name, wire_name, default))
        found = _FIELDS[cls] = tuple(entries)
    return found


def dump_038(value: Any) -> Any:
    """``value`` as builtins in 0.38.0's request shape (bytes and other scalars are left to the JSON encoder)."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        for name, wire_name, default in _fields(type(value)):
            item = _raw(value, name)  # the slot itself: a read default or alias must not leak in
            if item is UNSET and default is not _NO_DEFAULT:
                item = default
            if item is UNSET or item is None:
                continue
            out[wire_name] = dump_038(item)
        return out
    if type(value) is list or type(value) is tuple:
        return [dump_038(item) for item in value]
    if type(value) is dict:
        return {key: dump_038(item) for key, item in value.items()}
    return value
