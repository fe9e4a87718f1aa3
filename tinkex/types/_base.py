"""Struct bases shared by every Tinker wire type.

The official SDK 0.16.x dumps requests with ``exclude_unset=True``: a field the caller did not set is absent
from the JSON, an explicit ``None`` is ``null``. msgspec models "not set" with ``UNSET``, so request fields the
SDK only sends when set are declared ``T | UnsetType = UNSET`` and decorated with :func:`unset_reads_as`,
which makes attribute access return the documented default while the slot (and therefore the JSON) keeps
``UNSET``. Fields the SDK always sends keep an ordinary default and are always encoded.

Responses follow pydantic ``BaseModel`` semantics: unknown fields are ignored, missing required fields are
rejected, and (so a server emits minimal bodies) fields equal to their default are omitted when encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import msgspec
from msgspec import UNSET

__all__ = ["InferredUnion", "RequestStruct", "ResponseStruct", "unset_reads_as"]

_StructT = TypeVar("_StructT", bound=type[msgspec.Struct])


class RequestStruct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, repr_omit_defaults=True):
    """Request-side type (official ``StrictBase``): immutable, unknown fields rejected when decoded."""


class ResponseStruct(msgspec.Struct, omit_defaults=True, repr_omit_defaults=True):
    """Response-side type (official ``BaseModel``): unknown fields ignored, defaults omitted when encoded."""


class InferredUnion:
    """Base of a union whose wire form carries no reliable tag: the variant is inferred from the JSON object.

    msgspec only decodes unions of Structs when they are tagged, and the 0.16 wire omits the tags, so fields
    are annotated with the union base and :mod:`tinkex.types.codec` resolves the variant through its
    ``dec_hook``. Every variant subclasses the base, so ``isinstance(x, Base)`` works as a union check.
    """

    __slots__ = ()

    union_name: ClassVar[str]

    @classmethod
    def variant_for(cls, obj: dict[str, Any]) -> type[msgspec.Struct]:
        """The concrete Struct type that ``obj`` (a decoded JSON object) must be converted to."""
        raise NotImplementedError


def unset_reads_as(**defaults: Any) -> Callable[[_StructT], _StructT]:
    """Make each named ``UNSET``-defaulted field read as ``defaults[name]`` while it is unset.

    Encoding, decoding, equality and ``msgspec.structs.asdict`` still see the raw slot (``UNSET`` stays
    absent on the wire); only Python attribute access is redirected.
    """

    def install(cls: _StructT) -> _StructT:
        for name, default in defaults.items():
            slot = cls.__dict__.get(name)
            if slot is None or not hasattr(slot, "__get__"):
                raise TypeError(f"{cls.__name__} has no field {name!r} to give a read default")
            setattr(cls, name, _ReadDefault(slot, default))
        return cls

    return install


class _ReadDefault:
    """Descriptor over a Struct slot that substitutes a default for ``UNSET``."""

    __slots__ = ("_slot", "_default")

    def __init__(self, slot: Any, default: Any) -> None:
        self._slot = slot
        self._default = default

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = self._slot.__get__(instance, owner)
        return self._default if value is UNSET else value

    def __set__(self, instance: Any, value: Any) -> None:
        # Reached only for mutable structs: a frozen struct's __setattr__ raises before any descriptor.
        self._slot.__set__(instance, value)
