"""Unions told apart by a ``type`` key (or another tag key) whose variants keep ``type`` as an ordinary field.

The official SDK declares these variants as pydantic models with ``type: Literal[...] = "..."``, so ``type``
is a field user code can read and pass. msgspec's own tagged unions would hide it, so these unions go through
:class:`~tinkex.types._base.InferredUnion` instead: :mod:`tinkex.types.codec` resolves the variant from the
``type`` value. Variants that are encoded by a server must always send ``type`` (``omit_defaults=False``),
or the reader could not tell them apart.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from ._base import InferredUnion

__all__ = ["TypeTaggedUnion", "type_tag_of"]


def type_tag_of(variant: type[msgspec.Struct], key: str = "type") -> str:
    """The default of ``variant``'s ``key`` field (normally ``type``): the value that selects it."""
    for field in msgspec.structs.fields(variant):
        if field.name == key and isinstance(field.default, str):
            return field.default
    raise TypeError(f"{variant.__name__} has no `{key}` field with a string default to select it by")


class TypeTaggedUnion(InferredUnion):
    """Base of a union whose variant is named by the ``type`` key. Subclass it, then call
    :meth:`register` with the variants (each subclasses the union) once they are defined."""

    __slots__ = ()

    tag_key: ClassVar[str] = "type"
    """The key naming the variant (``type`` unless a union says otherwise)."""
    _variants_by_type: ClassVar[dict[str, type[msgspec.Struct]]] = {}
    _untagged_variant: ClassVar[type[msgspec.Struct] | None] = None
    """Chosen when the object has no ``type`` key (``None``: such an object is an error)."""
    _unknown_variant: ClassVar[type[msgspec.Struct] | None] = None
    """Chosen for a ``type`` value no variant claims (``None``: such an object is an error)."""

    @classmethod
    def register(
        cls,
        *variants: type[msgspec.Struct],
        untagged: type[msgspec.Struct] | None = None,
        unknown: type[msgspec.Struct] | None = None,
    ) -> None:
        cls._variants_by_type = {type_tag_of(variant, cls.tag_key): variant for variant in variants}
        cls._untagged_variant = untagged
        cls._unknown_variant = unknown

    @classmethod
    def variant_for(cls, obj: dict[str, Any]) -> type[msgspec.Struct]:
        key = cls.tag_key
        if key not in obj:
            if cls._untagged_variant is not None:
                return cls._untagged_variant
            raise ValueError(f"{cls.union_name} needs a `{key}` key, one of {sorted(cls._variants_by_type)}")
        tag = obj[key]
        variant = cls._variants_by_type.get(tag) if isinstance(tag, str) else None
        if variant is not None:
            return variant
        if cls._unknown_variant is not None and isinstance(tag, str):
            return cls._unknown_variant
        raise ValueError(f"unknown {cls.union_name} {key} {tag!r}: expected one of {sorted(cls._variants_by_type)}")
