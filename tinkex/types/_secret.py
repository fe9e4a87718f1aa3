"""Reprs of wire types that carry a credential (access tokens): the value is masked, its presence shown."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["repr_masking"]

_MASK = "'***'"


def repr_masking(obj: msgspec.Struct, secret_fields: frozenset[str]) -> str:
    """``Type(field=value, ...)`` like msgspec's ``repr_omit_defaults`` repr, with ``secret_fields`` masked."""
    values = msgspec.structs.asdict(obj)
    parts: list[str] = []
    for field in msgspec.structs.fields(obj):
        value: Any = values[field.name]
        if value is msgspec.UNSET or (field.default is not msgspec.NODEFAULT and value == field.default):
            continue
        shown = _MASK if field.name in secret_fields and value is not None else repr(value)
        parts.append(f"{field.name}={shown}")
    return f"{type(obj).__name__}({', '.join(parts)})"
