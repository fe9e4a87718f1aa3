"""Struct bases shared by every Tinker wire type, and the pydantic-like behaviour user code can see.

The official SDK 0.16.x dumps requests with ``exclude_unset=True``: a field the caller did not set is absent
from the JSON, an explicit ``None`` is ``null``. msgspec models "not set" with ``UNSET``, so request fields the
SDK only sends when set are declared ``T | UnsetType = UNSET`` and decorated with :func:`unset_reads_as`,
which makes attribute access return the documented default while the slot (and therefore the JSON) keeps
``UNSET``. Fields the SDK always sends keep an ordinary default and are always encoded.

Responses follow pydantic ``BaseModel`` semantics: unknown fields are ignored, missing required fields are
rejected, and (so a server emits minimal bodies) fields equal to their default are omitted when encoding.

The official types are pydantic models, which convert what they are given at construction. These Structs do
the same in a generated ``__post_init__`` (see :class:`_Model`): a value that already has its field's exact
type costs one ``type(v) is int``-style test; containers are copied (so a caller's later change to its list
cannot alter a queued request) by a strict ``msgspec.convert``; anything else (numpy and torch scalars and
arrays, tuples, nested dicts, strings and enums for literals) goes through a lax ``msgspec.convert``, and what
cannot be converted raises :class:`ValidationError` naming the type, the field and the value. The pydantic
methods user code calls (``model_dump``, ``model_validate``, ``model_copy``, ``model_fields``, ...) are here
too, written on msgspec.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import enum
import functools
import re
import sys
import threading
import types as pytypes
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "FieldInfo",
    "InferredUnion",
    "RequestStruct",
    "ResponseStruct",
    "ValidationError",
    "decode_hook",
    "full_path_message",
    "official_dataclass",
    "DECODING",
    "unset_reads_as",
    "unset_reads_attribute",
]

_StructT = TypeVar("_StructT", bound=type[msgspec.Struct])
_ModelT = TypeVar("_ModelT", bound="_Model")

_REPR_LIMIT = 120


class ValidationError(msgspec.ValidationError):
    """A value given to a wire type (constructor, ``model_validate``) that cannot become its field's type.

    A ``ValueError`` (as pydantic's ``ValidationError`` is) and a ``msgspec.ValidationError``, so code that
    catches either keeps working. ``field`` is the path inside the type (``"tokens[3]"``), ``""`` for the whole
    object.
    """

    def __init__(self, type_name: str, field: str, value: Any, reason: str) -> None:
        self.type_name = type_name
        self.field = field
        self.reason = reason
        where = f"{type_name}.{field}" if field else type_name
        super().__init__(f"invalid {where}: {reason}; given {_short_repr(value)}")


def _short_repr(value: Any) -> str:
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    return f"{text} of type {name}"


class InferredUnion:
    """Base of a union whose wire form carries no reliable tag: the variant is inferred from the JSON object.

    msgspec only decodes unions of Structs when they are tagged, and the 0.16 wire omits the tags, so fields
    are annotated with the union base and :func:`decode_hook` resolves the variant. Every variant subclasses
    the base, so ``isinstance(x, Base)`` works as a union check.
    """

    __slots__ = ()

    union_name: ClassVar[str]
    """The union's name in error messages: the name of the class that declares the union (its variants, being
    Structs, keep their union's)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not issubclass(cls, msgspec.Struct):
            cls.union_name = cls.__name__

    @classmethod
    def variant_for(cls, obj: dict[str, Any]) -> type[msgspec.Struct]:
        """The concrete Struct type that ``obj`` (a decoded JSON object) must be converted to."""
        raise NotImplementedError


# --- decoding hooks shared with codec -----------------------------------------------------------------------
# msgspec appends " - at `$...`" once per dec_hook level; two adjacent paths are an inner path (relative to
# the union value) followed by the path of that value, and are merged into one.
_NESTED_PATHS = re.compile(r"^(?P<head>.*) - at `\$(?P<inner>[^`]*)` - at `\$(?P<outer>[^`]*)`$", re.DOTALL)
_PATH = re.compile(r"^(?P<head>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)


def full_path_message(message: str) -> str:
    """A msgspec error message with the paths appended by nested ``dec_hook`` levels merged into one."""
    while (match := _NESTED_PATHS.match(message)) is not None:
        message = f"{match['head']} - at `${match['outer']}{match['inner']}`"
    return message


def decode_hook(type_: Any, obj: Any) -> Any:
    """msgspec ``dec_hook`` for the wire types: resolves :class:`InferredUnion` variants from a JSON object and
    passes through a value that already is an instance of the wanted type (a chunk given to a ModelInput)."""
    if isinstance(type_, type):
        if isinstance(obj, type_):
            return obj
        if issubclass(type_, InferredUnion):
            if not isinstance(obj, dict):
                raise TypeError(f"Expected `object` for {type_.union_name}, got `{type(obj).__name__}`")
            variant = type_.variant_for(obj)
            try:
                return msgspec.convert(obj, variant, dec_hook=decode_hook)
            except msgspec.ValidationError as exc:
                # Re-raised as ValueError so msgspec appends the path of this value to the message.
                raise ValueError(str(exc)) from None
    raise NotImplementedError(f"no wire decoding for {type_!r}")


def _lax_decode_hook(type_: Any, obj: Any) -> Any:
    # Like decode_hook, but nested union variants are built from plain values leniently too.
    if isinstance(type_, type) and issubclass(type_, InferredUnion) and isinstance(obj, dict):
        variant = type_.variant_for(obj)
        try:
            return msgspec.convert(obj, variant, strict=False, dec_hook=_lax_decode_hook)
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from None
    return decode_hook(type_, obj)


# --- conversion of what a constructor was given ---------------------------------------------------------------
def _plain(value: Any) -> Any:
    """``value`` with numpy/torch scalars and arrays, tuples, ranges and enums turned into plain Python values
    (recursively), which lax ``msgspec.convert`` then fits to the field's type. Structs are kept as they are."""
    kind = type(value)
    if kind in (int, float, str, bool, bytes) or value is None or isinstance(value, msgspec.Struct):
        return value
    if kind is list or kind is tuple or kind is range:
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    # numpy and torch objects can only exist if someone imported them, so never import them here.
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        return value.tolist()  # for a numpy scalar, the Python scalar
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _convert_error(type_name: str, field: str, value: Any, exc: Exception) -> ValidationError:
    message = full_path_message(str(exc))
    match = _PATH.match(message)
    path = ""
    if match is not None:
        # The value was converted inside a one-field holder (see _holder): its path starts with "[0]".
        message, path = match["head"], match["path"].removeprefix("[0]")
    nested = _NESTED_ERROR.match(message)
    if nested is not None:  # a nested type's own ValidationError, re-raised by msgspec as its message
        path, message = f"{path}.{nested['field']}", nested["reason"]
    return ValidationError(type_name, f"{field}{path}".lstrip("."), value, message)


_NESTED_ERROR = re.compile(r"^invalid \w+\.(?P<field>[^:]+): (?P<reason>.*); given .*$", re.DOTALL)


@functools.lru_cache(maxsize=None)
def _holder(type_: Any) -> type[msgspec.Struct]:
    """A one-field array-like Struct around ``type_``. msgspec caches what it learns about a Struct type but not
    about a bare ``list[int]``, so converting ``(value,)`` to the holder costs about half as much."""
    return msgspec.defstruct("_Holder", [("value", type_)], array_like=True)


def _convert_field(owner: type, name: str, value: Any, type_: Any) -> Any:
    """``value`` as a fresh object of ``type_``: a strict (cheap, copying) conversion first, a lax one after
    :func:`_plain` if that fails."""
    holder = _holder(type_)
    try:
        return msgspec.convert((value,), holder, dec_hook=decode_hook).value
    except (msgspec.ValidationError, TypeError, ValueError):
        pass
    try:
        return msgspec.convert((_plain(value),), holder, strict=False, dec_hook=_lax_decode_hook).value
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise _convert_error(owner.__name__, name, value, exc) from None


def _convert_field_leniently(owner: type, name: str, value: Any, type_: Any) -> Any:
    """:func:`_convert_field` for the types that are unvalidated dataclasses in the official SDK: what cannot be
    converted is kept (as plain Python values), as the official dataclass keeps anything it is given."""
    try:
        return _convert_field(owner, name, value, type_)
    except ValidationError:
        return _plain(value)


# --- the generated __post_init__ ---------------------------------------------------------------------------
_SCALAR_NAMES: dict[Any, str] = {int: "int", float: "float", str: "str", bool: "bool", bytes: "bytes"}


def _union_members(type_: Any) -> tuple[Any, ...]:
    if typing.get_origin(type_) in (typing.Union, pytypes.UnionType):
        return typing.get_args(type_)
    return (type_,)


def _member_test(member: Any, index: int, namespace: dict[str, Any]) -> str | None:
    """A cheap Python expression over ``v`` that is true when ``v`` needs no conversion to ``member``
    (``None``: a container or an unusual type, which always goes through :func:`_convert_field`)."""
    if member is type(None):
        return "v is None"
    if member is UnsetType:
        return "v is UNSET"
    if member is Any or member is object:
        return "True"
    if member in _SCALAR_NAMES:
        return f"type(v) is {_SCALAR_NAMES[member]}"
    if typing.get_origin(member) is Literal:
        namespace[f"L{index}"] = frozenset(typing.get_args(member))
        namespace[f"LT{index}"] = frozenset(type(arg) for arg in typing.get_args(member))
        return f"(type(v) in LT{index} and v in L{index})"
    if isinstance(member, type) and (issubclass(member, (msgspec.Struct, InferredUnion))):
        namespace[f"C{index}"] = member
        return f"isinstance(v, C{index})"
    if isinstance(member, type) and (issubclass(member, enum.Enum) or member is datetime):
        namespace[f"C{index}"] = member
        return f"type(v) is C{index}"
    return None


def _compile_validator(cls: type[msgspec.Struct]) -> Callable[[Any], None]:
    """``cls``'s field check as one generated function (as dataclasses generates ``__init__``): per field, a
    chain of exact-type tests, and a call to :func:`_convert_field` when none holds or the field is a
    container (always copied). Then the class's ``_after_conversion`` method, if it has one: a check across
    converted values (pydantic's "after" validator), where a class's own ``__post_init__`` runs before."""
    convert = _convert_field_leniently if cls in _LENIENT else _convert_field
    namespace: dict[str, Any] = {
        "UNSET": UNSET,
        "convert": convert,
        "strict": msgspec.convert,
        "hook": decode_hook,
        "owner": cls,
        "all_of": _all_instances,
    }
    lines = ["def validate(self):"]
    fields = msgspec.structs.fields(cls)
    wrapped = {info.name for info in fields if not isinstance(vars(cls).get(info.name), pytypes.MemberDescriptorType)}
    if wrapped:
        # Some slots sit under a descriptor (unset_reads_as): read every raw slot at once, UNSET stays UNSET.
        lines.append("    raw = astuple(self)")
        namespace["astuple"] = msgspec.structs.astuple
    counter = 0
    for position, info in enumerate(fields):
        tests: list[str] = []
        container = False
        for member in sorted(_union_members(info.type), key=_test_order):
            test = _member_test(member, counter, namespace)
            counter += 1
            if test is None:
                container = True
            else:
                tests.append(test)
        if "True" in tests:
            continue
        index = counter
        counter += 1
        namespace[f"T{index}"] = info.type
        # Written straight into the slot (frozen or not, under any descriptor): a C call.
        namespace[f"S{index}"] = _slot(cls, info.name).__set__
        lines.append(f"    v = raw[{position}]" if wrapped else f"    v = self.{info.name}")
        indent = "    "
        if tests:
            lines.append(f"    if not ({' or '.join(tests)}):")
            indent = "        "
        items = _struct_list_items(info.type)
        if items is not None:
            # A list of Structs (chunks, datums, sequences): short, so checking the items here beats msgspec.
            namespace[f"I{index}"] = items
            lines += [
                f"{indent}if type(v) is list and all_of(v, I{index}):",
                f"{indent}    S{index}(self, v.copy())",
                f"{indent}else:",
                f"{indent}    S{index}(self, convert(owner, {info.name!r}, v, T{index}))",
            ]
        elif container:
            # A container is always copied; the strict conversion (inline, the common case) checks and copies.
            # The decode hook is passed only where needed: msgspec is slower with one.
            namespace[f"H{index}"] = _holder(info.type)
            hook = ", dec_hook=hook" if _needs_decode_hook(info.type) else ""
            lines += [
                f"{indent}try:",
                f"{indent}    v = strict((v,), H{index}{hook}).value",
                f"{indent}except Exception:",
                f"{indent}    v = convert(owner, {info.name!r}, v, T{index})",
                f"{indent}S{index}(self, v)",
            ]
        else:
            lines.append(f"{indent}S{index}(self, convert(owner, {info.name!r}, v, T{index}))")
    after = getattr(cls, "_after_conversion", None)
    if after is not None:
        namespace["after"] = after
        lines.append("    after(self)")
    if len(lines) == 1:
        lines.append("    pass")
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from the class's own field types only
    validator: Callable[[Any], None] = namespace["validate"]
    return validator


def _test_order(member: Any) -> int:
    # The cheapest and most frequent tests first: an unset or None field is the common case.
    return 0 if member is UnsetType else 1 if member is type(None) else 2


def _struct_list_items(type_: Any) -> tuple[type, ...] | None:
    """For ``list[A]`` / ``list[A | B]`` of Struct or union-base classes, those classes (else ``None``)."""
    if typing.get_origin(type_) is not list:
        return None
    (item,) = typing.get_args(type_)
    members = _union_members(item)
    if all(isinstance(m, type) and issubclass(m, (msgspec.Struct, InferredUnion)) for m in members):
        return tuple(members)
    return None


def _all_instances(values: list[Any], classes: tuple[type, ...]) -> bool:
    for value in values:
        if not isinstance(value, classes):
            return False
    return True


def _needs_decode_hook(type_: Any) -> bool:
    """Whether converting to ``type_`` may need :func:`decode_hook` (a union base, or a type msgspec does not
    know); Struct fields inside are handled by their own ``__post_init__``."""
    if type_ is Any or type_ is type(None) or type_ is UnsetType or type_ is datetime or type_ in _SCALAR_NAMES:
        return False
    if isinstance(type_, type):
        return issubclass(type_, InferredUnion) or not issubclass(type_, (msgspec.Struct, enum.Enum))
    if typing.get_origin(type_) is Literal:
        return False
    return any(_needs_decode_hook(arg) for arg in typing.get_args(type_))


def _slot(cls: type, name: str) -> pytypes.MemberDescriptorType:
    """The member descriptor of field ``name``'s slot, under any descriptor that wraps it (``_ReadDefault`` and
    the like keep the slot they wrap as ``_slot``)."""
    for klass in cls.__mro__:
        descriptor = vars(klass).get(name)
        if descriptor is None:
            continue
        while not isinstance(descriptor, pytypes.MemberDescriptorType) and hasattr(descriptor, "_slot"):
            descriptor = descriptor._slot
        if isinstance(descriptor, pytypes.MemberDescriptorType):
            return descriptor
        break
    raise TypeError(f"{cls.__name__}.{name} is not a Struct field slot")


_GETTERS: dict[tuple[type, str], Callable[[Any], Any]] = {}


def _raw(obj: msgspec.Struct, name: str) -> Any:
    key = (type(obj), name)
    getter = _GETTERS.get(key)
    if getter is None:
        getter = _GETTERS[key] = _slot(type(obj), name).__get__
    return getter(obj)


_OWN_POST_INIT: dict[type, Callable[[Any], None]] = {}


class DecodingState(threading.local):
    """Per thread: whether the Structs being built have values that are already checked."""

    trusted = False
    """While true, Structs built on this thread skip the field check: set by :mod:`codec`'s decode and convert
    (msgspec has just checked every value against the field types, and its lists are fresh) and by
    ``model_construct`` (the caller vouches for the values)."""


DECODING = DecodingState()


def _install_post_init(cls: type) -> None:
    """Give ``cls`` a ``__post_init__`` that runs the class's own one (if it or a base defines one) and then
    the generated field check, compiled on first use (the field annotations may name types defined later)."""
    own = cls.__dict__.get("__post_init__")
    if own is None:
        own = next((_OWN_POST_INIT[base] for base in cls.__mro__[1:] if base in _OWN_POST_INIT), None)
    if own is not None:
        _OWN_POST_INIT[cls] = own
    compiled: list[Callable[[Any], None]] = []
    after = getattr(cls, "_after_conversion", None)
    decoding = DECODING

    def __post_init__(self: Any) -> None:
        if own is not None:
            own(self)
        if decoding.trusted:
            # Built by msgspec from JSON it has just validated: fresh lists, exact types. Only the checks
            # across fields remain.
            if after is not None:
                after(self)
            return
        if compiled:
            compiled[0](self)
            return
        try:
            validator = _compile_validator(cls)
        except NameError:
            # Constructed while its module is still being imported (a default built at import time): the
            # annotations cannot be resolved yet, so this one instance is not checked.
            return
        compiled.append(validator)
        validator(self)

    __post_init__.__qualname__ = f"{cls.__qualname__}.__post_init__"
    cls.__post_init__ = __post_init__  # type: ignore[attr-defined]


# --- pydantic's public methods -------------------------------------------------------------------------------
class FieldInfo:
    """What ``Model.model_fields[name]`` returns (pydantic's attribute names): the annotation without msgspec's
    ``UnsetType``, the official default (``...`` when required) and the default factory, if any."""

    __slots__ = ("annotation", "default", "default_factory")

    def __init__(self, annotation: Any, default: Any, default_factory: Callable[[], Any] | None) -> None:
        self.annotation = annotation
        self.default = default
        self.default_factory = default_factory

    def is_required(self) -> bool:
        return self.default is Ellipsis and self.default_factory is None

    def get_default(self, *, call_default_factory: bool = False) -> Any:
        if self.default_factory is not None:
            return self.default_factory() if call_default_factory else None
        return self.default

    def __repr__(self) -> str:
        annotation = self.annotation
        name = annotation.__name__ if isinstance(annotation, type) else repr(annotation).replace("typing.", "")
        text = f"annotation={name} required={self.is_required()}"
        if self.default_factory is not None:
            return f"{text} default_factory={getattr(self.default_factory, '__name__', self.default_factory)}"
        return text if self.is_required() else f"{text} default={self.default!r}"


def _without_unset(type_: Any) -> Any:
    members = _union_members(type_)
    if UnsetType not in members:
        return type_
    kept = tuple(member for member in members if member is not UnsetType)
    return kept[0] if len(kept) == 1 else typing.Union[kept]  # noqa: UP007 - built from a runtime tuple


_FIELDS_CACHE: dict[type, dict[str, FieldInfo]] = {}


def _model_fields(cls: type[msgspec.Struct]) -> dict[str, FieldInfo]:
    cached = _FIELDS_CACHE.get(cls)
    if cached is not None:
        return cached
    fields: dict[str, FieldInfo] = {}
    for info in msgspec.structs.fields(cls):
        factory = None if info.default_factory is msgspec.NODEFAULT else info.default_factory
        default: Any = Ellipsis if info.default is msgspec.NODEFAULT or factory is not None else info.default
        if default is UNSET:
            default = _read_default_of(cls, info.name)
        fields[info.name] = FieldInfo(_without_unset(info.type), default, factory)
    _FIELDS_CACHE[cls] = fields
    return fields


def _read_default_of(cls: type, name: str) -> Any:
    slot = vars(cls).get(name)
    return slot._default if isinstance(slot, _ReadDefault) else None


class _ModelFieldsDescriptor:
    """``model_fields`` readable on the class and on instances, as in pydantic."""

    def __get__(self, instance: Any, owner: type[msgspec.Struct]) -> dict[str, FieldInfo]:
        return _model_fields(owner)


def _field_selected(name: str, include: Any, exclude: Any) -> bool:
    if include is not None and name not in include:
        return False
    if exclude is None or name not in exclude:
        return True
    # pydantic's dict form: {"field": True} drops the field, {"field": {...}} only parts of it.
    return isinstance(exclude, Mapping) and exclude[name] is not True


def _nested(selection: Any, name: str) -> Any:
    if isinstance(selection, Mapping):
        inner = selection.get(name)
        return inner if isinstance(inner, (Mapping, set, frozenset)) else None
    return None


class _DumpOptions(typing.NamedTuple):
    exclude_unset: bool
    exclude_defaults: bool
    exclude_none: bool
    json: bool
    """JSON mode: a float field holding an int (an official default such as ``temperature = 1``) dumps as a
    float, as pydantic's float serializer writes it."""


def _dump_struct(obj: msgspec.Struct, options: _DumpOptions, include: Any, exclude: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fields = _model_fields(type(obj))
    for name, field in fields.items():
        if not _field_selected(name, include, exclude):
            continue
        value = _raw(obj, name)
        if value is UNSET:
            if options.exclude_unset:
                continue
            value = getattr(obj, name)  # the official value of an unset field (its read default)
            if value is UNSET:  # no official counterpart
                continue
        if options.exclude_none and value is None:
            continue
        if options.exclude_defaults and field.default is not Ellipsis and value == field.default:
            continue
        if options.json and type(value) is int and field.annotation is float:
            value = float(value)
        out[name] = _dump_value(value, options, _nested(include, name), _nested(exclude, name))
    return out


def _dump_value(value: Any, options: _DumpOptions, include: Any, exclude: Any) -> Any:
    if type(value) is bytes:
        # The official types serialize every bytes field (ImageChunk.data, DmelChunk.dmel) as base64 text.
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, msgspec.Struct):
        return _dump_struct(value, options, include, exclude)
    if type(value) is list:
        # pydantic's {index: ...} selections on a list ("__all__" for every item).
        include = include.get("__all__", include) if isinstance(include, Mapping) else include
        exclude = exclude.get("__all__", exclude) if isinstance(exclude, Mapping) else exclude
        return [
            _dump_value(item, options, _nested(include, index), _nested(exclude, index))
            for index, item in enumerate(value)
            if _field_selected(index, include, exclude)  # type: ignore[arg-type]
        ]
    if type(value) is dict:
        return {
            key: _dump_value(item, options, _nested(include, key), _nested(exclude, key))
            for key, item in value.items()
            if _field_selected(key, include, exclude)
        }
    return value


class _Model(msgspec.Struct):
    """The behaviour both bases share: construction-time conversion and pydantic's methods."""

    model_fields: ClassVar[dict[str, FieldInfo]] = _ModelFieldsDescriptor()  # type: ignore[assignment]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _install_post_init(cls)

    # pydantic: model_dump(mode=..., include=..., exclude=..., exclude_unset=..., ...)
    def model_dump(
        self,
        *,
        mode: Literal["python", "json"] | str = "python",
        include: Iterable[str] | Mapping[str, Any] | None = None,
        exclude: Iterable[str] | Mapping[str, Any] | None = None,
        by_alias: bool | None = None,
        exclude_unset: bool = False,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        round_trip: bool = False,
        warnings: bool | str = True,
    ) -> dict[str, Any]:
        """The fields as a dict, nested types as dicts, unset request fields as their official defaults
        (left out with ``exclude_unset``). ``mode="json"`` gives JSON values (ISO datetimes, base64 bytes).
        ``by_alias``, ``round_trip`` and ``warnings`` are accepted for pydantic's signature: no field has an
        alias and nothing here warns."""
        if mode not in ("python", "json"):
            raise ValueError(f"model_dump mode must be 'python' or 'json', got {mode!r}")
        options = _DumpOptions(exclude_unset, exclude_defaults, exclude_none, mode == "json")
        include = set(include) if include is not None and not isinstance(include, Mapping) else include
        exclude = set(exclude) if exclude is not None and not isinstance(exclude, Mapping) else exclude
        dumped = _dump_struct(self, options, include, exclude)
        if mode == "json":
            result: dict[str, Any] = msgspec.to_builtins(dumped)
            return result
        return dumped

    def model_dump_json(
        self,
        *,
        indent: int | None = None,
        include: Iterable[str] | Mapping[str, Any] | None = None,
        exclude: Iterable[str] | Mapping[str, Any] | None = None,
        by_alias: bool | None = None,
        exclude_unset: bool = False,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        round_trip: bool = False,
        warnings: bool | str = True,
    ) -> str:
        """``model_dump(mode="json")`` as compact JSON text (or indented by ``indent`` spaces)."""
        dumped = self.model_dump(
            mode="json",
            include=include,
            exclude=exclude,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
        )
        encoded = msgspec.json.encode(dumped)
        if indent is not None:
            encoded = msgspec.json.format(encoded, indent=indent)
        return encoded.decode()

    @classmethod
    def model_validate(
        cls: type[_ModelT],
        obj: Any,
        *,
        strict: bool | None = None,
        from_attributes: bool | None = None,
        context: Any | None = None,
    ) -> _ModelT:
        """``obj`` (a mapping, or an instance returned as it is) as this type, converted as the constructor
        converts; :class:`ValidationError` when it does not fit. ``strict=True`` turns off lax conversion;
        ``from_attributes`` reads the fields from any object's attributes."""
        if isinstance(obj, cls):
            return obj
        if from_attributes and not isinstance(obj, Mapping):
            obj = {name: getattr(obj, name) for name in _model_fields(cls) if hasattr(obj, name)}
        try:
            if strict:
                return msgspec.convert(obj, cls, dec_hook=decode_hook)
            return msgspec.convert(_plain(obj), cls, strict=False, dec_hook=_lax_decode_hook)
        except ValidationError:
            raise
        except (msgspec.ValidationError, TypeError, ValueError) as exc:
            raise _convert_error(cls.__name__, "", obj, exc) from None

    @classmethod
    def model_validate_json(
        cls: type[_ModelT], json_data: str | bytes | bytearray, *, strict: bool | None = None, context: Any = None
    ) -> _ModelT:
        """Parse JSON text and :meth:`model_validate` the result; malformed JSON is a :class:`ValidationError`
        too (as in pydantic)."""
        try:
            data = msgspec.json.decode(json_data)
        except msgspec.DecodeError as exc:
            raise ValidationError(cls.__name__, "", json_data, f"invalid JSON: {exc}") from None
        return cls.model_validate(data, strict=strict)

    def model_copy(self: _ModelT, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> _ModelT:
        """A copy with ``update`` applied (converted like constructor arguments); ``deep`` copies nested
        values too."""
        copied = msgspec.structs.replace(self, **update) if update else copy.copy(self)
        return copy.deepcopy(copied) if deep else copied

    @classmethod
    def model_construct(cls: type[_ModelT], _fields_set: set[str] | None = None, **values: Any) -> _ModelT:
        """An instance from ``values`` without the field check or conversion, as in pydantic: for values that
        are already right (tinkex's own constructors use it for numbers fresh from ``ndarray.tolist()``).
        A type's own ``__post_init__`` and cross-field checks still run; missing fields take their defaults;
        ``_fields_set`` is accepted for pydantic's signature (unset request fields are those not passed)."""
        previous, DECODING.trusted = DECODING.trusted, True
        try:
            return cls(**values)
        finally:
            DECODING.trusted = previous

    def __repr__(self) -> str:
        # pydantic's form: every field, unset request fields as their official default.
        fields = _model_fields(type(self))
        parts = ", ".join(f"{name}={getattr(self, name)!r}" for name in fields)
        return f"{type(self).__name__}({parts})"

    def __str__(self) -> str:
        return repr(self)


class RequestStruct(_Model, frozen=True, forbid_unknown_fields=True, repr_omit_defaults=True):
    """Request-side type (official ``StrictBase``): immutable, unknown fields rejected when decoded."""


class ResponseStruct(_Model, omit_defaults=True, repr_omit_defaults=True):
    """Response-side type (official ``BaseModel``): unknown fields ignored, defaults omitted when encoded."""


# --- unset fields reading as the official default --------------------------------------------------------------
def unset_reads_as(**defaults: Any) -> Callable[[_StructT], _StructT]:
    """Make each named ``UNSET``-defaulted field read as ``defaults[name]`` while it is unset.

    Encoding, decoding, equality and ``msgspec.structs.asdict`` still see the raw slot (``UNSET`` stays
    absent on the wire); Python attribute access, ``model_dump`` and ``repr`` see the default.
    """
    return _read_while_unset(_ReadDefault, defaults)


def unset_reads_attribute(**others: str) -> Callable[[_StructT], _StructT]:
    """Make each named ``UNSET``-defaulted field read as the attribute ``others[name]`` while it is unset (a field
    that reads as the one its value came under by a legacy name); the raw slot as with :func:`unset_reads_as`."""
    return _read_while_unset(_ReadAttribute, others)


def _read_while_unset(
    reader: Callable[[Any, Any], _ReadWhileUnset], values: Mapping[str, Any]
) -> Callable[[_StructT], _StructT]:
    def install(cls: _StructT) -> _StructT:
        for name, value in values.items():
            slot = cls.__dict__.get(name)
            if slot is None or not hasattr(slot, "__get__"):
                raise TypeError(f"{cls.__name__} has no field {name!r} to give a read default")
            setattr(cls, name, reader(slot, value))
        _FIELDS_CACHE.pop(cls, None)
        return cls

    return install


class _ReadWhileUnset:
    """Descriptor over a Struct slot that reads something else while the slot is ``UNSET``: what ``_value`` says,
    as each subclass reads it."""

    __slots__ = ("_slot", "_value")

    def __init__(self, slot: Any, value: Any) -> None:
        self._slot = slot
        self._value = value

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = self._slot.__get__(instance, owner)
        return self._while_unset(instance) if value is UNSET else value

    def __set__(self, instance: Any, value: Any) -> None:
        # Reached only for mutable structs: a frozen struct's __setattr__ raises before any descriptor.
        self._slot.__set__(instance, value)

    def _while_unset(self, instance: Any) -> Any:
        raise NotImplementedError


class _ReadDefault(_ReadWhileUnset):
    """Reads a fixed default (the official one) while unset."""

    __slots__ = ()

    @property
    def _default(self) -> Any:
        return self._value

    def _while_unset(self, instance: Any) -> Any:
        return self._value


class _ReadAttribute(_ReadWhileUnset):
    """Reads the instance's attribute named by ``_value`` while unset."""

    __slots__ = ()

    def _while_unset(self, instance: Any) -> Any:
        return getattr(instance, self._value)


# --- the types that are dataclasses in the official SDK -----------------------------------------------------
_LENIENT: set[type] = set()


def official_dataclass(cls: _StructT) -> _StructT:
    """Mark ``cls`` as a type the official SDK (0.38) declares as a plain dataclass rather than a pydantic
    model (``Datum``, ``ForwardBackwardInput``, the forward requests, ``SampleResponse``, ...).

    Such a type validates nothing, so here too a value that cannot be converted to its field's type is kept
    rather than rejected (numpy scalars, tuples and nested dicts are still converted, lists still copied): a
    loss name the client does not know reaches the server, as with the official SDK. And
    ``dataclasses.replace``, ``dataclasses.fields`` and ``dataclasses.is_dataclass`` work on it: they read
    ``__dataclass_fields__``, here the fields of a shadow dataclass with the same names, types and defaults.
    On an instance, a field still ``UNSET`` is presented as a ``ClassVar`` (which ``replace`` skips), so
    ``replace(obj, x=...)`` leaves it unset rather than sending its default explicitly; it can still be given
    to ``replace`` by name.
    """
    _LENIENT.add(cls)
    setattr(cls, "__dataclass_fields__", _DataclassFields())  # noqa: B010 - a class attribute, not a field
    return cls


class _DataclassFields:
    def __init__(self) -> None:
        self._by_unset: dict[tuple[type, frozenset[str]], dict[str, dataclasses.Field[Any]]] = {}

    def __get__(self, instance: Any, owner: type[msgspec.Struct]) -> dict[str, dataclasses.Field[Any]]:
        names = tuple(owner.__struct_fields__)
        unset = frozenset() if instance is None else frozenset(n for n in names if _raw(instance, n) is UNSET)
        key = (owner, unset)
        fields = self._by_unset.get(key)
        if fields is None:
            fields = self._by_unset[key] = _shadow_fields(owner, unset)
        return fields


def _shadow_fields(cls: type[msgspec.Struct], unset: frozenset[str]) -> dict[str, dataclasses.Field[Any]]:
    specs: list[tuple[str, Any, dataclasses.Field[Any]]] = []
    for name, info in _model_fields(cls).items():
        annotation = ClassVar[Any] if name in unset else info.annotation
        if name in unset:
            field = dataclasses.field(default=None)
        elif info.default_factory is not None:
            field: dataclasses.Field[Any] = dataclasses.field(default_factory=info.default_factory)
        elif info.default is Ellipsis:
            field = dataclasses.field()
        elif type(info.default).__hash__ is None:  # dataclasses refuses a mutable default: give it as a factory
            field = dataclasses.field(default_factory=functools.partial(copy.copy, info.default))
        else:
            field = dataclasses.field(default=info.default)
        specs.append((name, annotation, field))
    # Required fields first, as a dataclass demands; kw_only so the order does not matter to callers.
    specs.sort(key=lambda spec: spec[2].default is not dataclasses.MISSING or spec[2].default_factory is not dataclasses.MISSING)  # type: ignore[misc]
    shadow = dataclasses.make_dataclass(cls.__name__, specs, kw_only=True)
    return dict(shadow.__dataclass_fields__)  # type: ignore[attr-defined]
