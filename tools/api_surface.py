"""Dump the public surface of a Tinker SDK (official ``tinker`` or ``tinkex``) as JSON, and compare two dumps.

Run it in the official package's own venv to record what user code can see::

    /path/to/venv/bin/python tools/api_surface.py dump tinker > tests/tinkex/compat/surface/tinker-0.38.0.json

The file records, for the client classes, every public method with its parameters (name, kind, default) and
return annotation; for every class exported by ``<package>.types``, its fields (canonical annotation, default);
for the exceptions at the package top level, their bases; and the names each module exports.
``tests/tinkex/compat/test_api_parity.py`` dumps tinkex the same way and compares (``compare`` below).

The script imports nothing of tinkex, so it runs unchanged in a venv that only has the official package.
"""

from __future__ import annotations
import __future__

import dataclasses
import enum
import importlib
import inspect
import json
import sys
import types as pytypes
import typing
from collections.abc import Callable
from typing import Any

CLIENT_CLASSES = ("ServiceClient", "TrainingClient", "SamplingClient", "RestClient", "APIFuture")
"""The classes whose methods user code calls; ``compare`` gates on their signatures."""

REQUIRED = "<required>"


# --- canonical forms --------------------------------------------------------------------------------------
def canonical_type(tp: Any) -> str:
    """An annotation as a string that is equal for equivalent pydantic, dataclass and msgspec declarations.

    ``Optional``/``Union``/``|`` become a sorted ``A | B``; msgspec's ``UnsetType`` (tinkex's "not set") is
    dropped; ``List``/``Sequence`` read as ``list``, ``Dict``/``Mapping`` as ``dict``.
    """
    if isinstance(tp, str):
        return tp.replace("typing.", "").replace("Optional[", "None | ").strip()
    if tp is type(None) or tp is None:
        return "None"
    if tp is Any:
        return "Any"
    if getattr(tp, "__value__", None) is not None and type(tp).__name__ == "TypeAliasType":
        return canonical_type(tp.__value__)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return canonical_type(args[0])
    if origin in (typing.Union, pytypes.UnionType):
        parts = sorted({canonical_type(arg) for arg in args} - {"UnsetType"})
        return " | ".join(parts)
    if origin is typing.Literal:
        return "Literal[" + ", ".join(sorted(repr(arg) for arg in args)) + "]"
    if origin is not None:
        name = _ORIGIN_NAMES.get(origin, getattr(origin, "__name__", str(origin)))
        if not args:
            return name
        return f"{name}[{', '.join(canonical_type(arg) for arg in args)}]"
    if isinstance(tp, type):
        return _ORIGIN_NAMES.get(tp, tp.__name__)
    return str(tp).replace("typing.", "")


_ORIGIN_NAMES: dict[Any, str] = {
    list: "list",
    tuple: "tuple",
    dict: "dict",
    set: "set",
    frozenset: "frozenset",
    typing.Sequence: "list",
    typing.MutableSequence: "list",
    typing.Mapping: "dict",
    typing.MutableMapping: "dict",
}
for _abc_name, _plain in (("Sequence", "list"), ("MutableSequence", "list"), ("Mapping", "dict"),
                          ("MutableMapping", "dict"), ("Iterable", "Iterable")):
    import collections.abc as _abc

    _ORIGIN_NAMES[getattr(_abc, _abc_name)] = _plain


def canonical_default(value: Any) -> str:
    """A default as a comparable string (floats that equal ints compare equal: ``1`` and ``1.0``)."""
    if value is inspect.Parameter.empty:
        return REQUIRED
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float) and value.is_integer():
        return repr(int(value))
    if isinstance(value, enum.Enum):
        return repr(value.value)
    if isinstance(value, (int, float, str, bytes)):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return repr(value)
    return f"<{type(value).__name__}>"


# --- callables ---------------------------------------------------------------------------------------------
def describe_callable(fn: Callable[..., Any], drop_first: bool) -> dict[str, Any]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return {"params": None, "returns": None, "is_async": False}
    params = list(signature.parameters.values())
    if drop_first and params:
        params = params[1:]
    returns = signature.return_annotation
    return {
        "params": [
            {"name": p.name, "kind": p.kind.name, "default": canonical_default(p.default)} for p in params
        ],
        "returns": None if returns is inspect.Signature.empty else _annotation_name(returns),
        "is_async": inspect.iscoroutinefunction(inspect.unwrap(fn)),
    }


def _annotation_name(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else canonical_type(annotation)
    return text.replace("types.", "").replace("'", "")


def describe_class(cls: type) -> dict[str, Any]:
    """Public methods and properties of ``cls`` (its own and inherited, ``object``'s excluded)."""
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[:-1]):
        for name, raw in vars(klass).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(raw, property):
                members[name] = {"property": True}
            elif isinstance(raw, (staticmethod, classmethod)):
                members[name] = describe_callable(getattr(cls, name), drop_first=False)
            elif inspect.isfunction(raw):
                members[name] = describe_callable(raw, drop_first=True)
    return dict(sorted(members.items()))


# --- types -------------------------------------------------------------------------------------------------
def describe_fields(cls: type) -> dict[str, Any] | None:
    """Field name -> canonical annotation and default, for pydantic models, dataclasses and msgspec Structs."""
    model_fields = getattr(cls, "model_fields", None)
    if isinstance(model_fields, dict) and model_fields:
        out = {}
        for name, info in model_fields.items():
            default = getattr(info, "default", inspect.Parameter.empty)
            factory = getattr(info, "default_factory", None)
            if factory is not None:
                default = factory()
            elif type(default).__name__ == "PydanticUndefinedType" or default is Ellipsis:
                default = inspect.Parameter.empty
            out[name] = {"type": canonical_type(info.annotation), "default": canonical_default(default)}
        return out
    if dataclasses.is_dataclass(cls):
        hints = _type_hints(cls)
        out = {}
        for f in dataclasses.fields(cls):
            if f.name.startswith("_"):
                continue
            if f.default is not dataclasses.MISSING:
                default: Any = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = inspect.Parameter.empty
            out[f.name] = {"type": canonical_type(hints.get(f.name, f.type)), "default": canonical_default(default)}
        return out
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and isinstance(cls, type) and issubclass(cls, msgspec.Struct):
        hints = _type_hints(cls)
        out = {}
        for f in msgspec.structs.fields(cls):
            default = f.default
            if f.default_factory is not msgspec.NODEFAULT:
                default = f.default_factory()
            if default is msgspec.NODEFAULT:
                default = inspect.Parameter.empty
            elif default is msgspec.UNSET:
                # tinkex: an unset request field reads as its documented default (``unset_reads_as``).
                default = getattr(vars(cls).get(f.name), "_default", None)
            out[f.name] = {"type": canonical_type(hints.get(f.name, f.type)), "default": canonical_default(default)}
        return out
    return None


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:
        return {}


def describe_type_export(obj: Any) -> dict[str, Any]:
    if isinstance(obj, type):
        if issubclass(obj, enum.Enum):
            return {"kind": "enum", "members": sorted(str(m.value) for m in obj)}
        if issubclass(obj, BaseException):
            return {"kind": "exception", "bases": _exception_bases(obj)}
        fields = describe_fields(obj)
        if fields is not None:
            return {"kind": "model", "fields": fields, "methods": sorted(_public_methods(obj))}
        return {"kind": "class", "methods": sorted(_public_methods(obj))}
    if callable(obj) and not typing.get_origin(obj):
        return {"kind": "function"}
    return {"kind": "alias", "value": canonical_type(obj)}


def _public_methods(cls: type) -> set[str]:
    skip = {"model_config", "model_fields", "model_computed_fields"}
    return {n for n in dir(cls) if not n.startswith("_") and n not in skip and callable(getattr(cls, n, None))}


def _exception_bases(cls: type) -> list[str]:
    return [base.__name__ for base in cls.__mro__[1:] if base not in (object, BaseException, Exception)]


# --- the dump ----------------------------------------------------------------------------------------------
def dump(package_name: str) -> dict[str, Any]:
    package = importlib.import_module(package_name)
    types_module = importlib.import_module(f"{package_name}.types")
    version = getattr(package, "__version__", "?")
    exported = list(getattr(package, "__all__", [n for n in dir(package) if not n.startswith("_")]))
    type_names = [
        name
        for name in getattr(types_module, "__all__", dir(types_module))
        if not name.startswith("_")
        and not inspect.ismodule(obj := getattr(types_module, name, None))
        and not isinstance(obj, __future__._Feature)  # ``from __future__ import annotations`` leaks a name
    ]
    return {
        "package": package_name,
        "version": version,
        "exports": sorted(exported),
        "clients": {name: describe_class(cls) for name in CLIENT_CLASSES if (cls := _find_class(package, name))},
        "types": {name: describe_type_export(getattr(types_module, name)) for name in sorted(type_names)},
        "exceptions": _exception_tree(package, exported),
    }


def _find_class(package: pytypes.ModuleType, name: str) -> type | None:
    """A top-level export, else the class of that name in ``lib.public_interfaces`` (0.16.1's RestClient)."""
    found = getattr(package, name, None)
    if found is None:
        module_name = name.replace("Client", "_client").lower()
        try:
            module = importlib.import_module(f"{package.__name__}.lib.public_interfaces.{module_name}")
        except ImportError:
            return None
        found = getattr(module, name, None)
    return found if isinstance(found, type) else None


def _exception_tree(package: pytypes.ModuleType, exported: list[str]) -> dict[str, list[str]]:
    """Each exported exception -> the other exported exceptions it subclasses (by export name, so an alias
    such as ``TinkerError = PristineError`` counts as the same class)."""
    classes = {
        name: obj
        for name in exported
        if isinstance(obj := getattr(package, name, None), type) and issubclass(obj, BaseException)
    }
    return {
        name: sorted(other for other, base in classes.items() if other != name and issubclass(cls, base))
        for name, cls in sorted(classes.items())
    }


# --- the comparison ----------------------------------------------------------------------------------------
def signature_problem(official: dict[str, Any], ours: dict[str, Any] | None) -> str | None:
    """Why ``ours`` cannot stand in for ``official`` (None when it can).

    Every official parameter must exist in ours at the same position (when it can be passed positionally),
    with the same name and default, and a kind that accepts every call the official accepts. Extra
    parameters of ours must have defaults (and come after the official positional ones). A ``**kwargs`` of
    ours does not stand in for a missing named parameter.
    """
    if ours is None:
        return "missing"
    if ours.get("property") or official.get("property"):
        return None if ours.get("property") == official.get("property") else "property vs method"
    if official["params"] is None or ours["params"] is None:
        return None
    theirs = official["params"]
    mine = {p["name"]: (i, p) for i, p in enumerate(ours["params"])}
    for index, param in enumerate(theirs):
        if param["kind"] in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            if not any(p["kind"] == param["kind"] for p in ours["params"]):
                return f"no {param['kind'].lower()} parameter"
            continue
        if param["name"] not in mine:
            return f"parameter {param['name']!r} missing"
        position, own = mine[param["name"]]
        if param["kind"] in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD") and position != index:
            return f"parameter {param['name']!r} at position {position}, official {index}"
        if own["kind"] != param["kind"] and not (
            param["kind"] == "KEYWORD_ONLY" and own["kind"] == "POSITIONAL_OR_KEYWORD"
        ):
            return f"parameter {param['name']!r} is {own['kind']}, official {param['kind']}"
        if own["default"] != param["default"] and param["default"] != REQUIRED:
            # A default where the official requires the argument accepts every official call.
            return f"parameter {param['name']!r} defaults to {own['default']}, official {param['default']}"
    official_names = {p["name"] for p in theirs}
    for param in ours["params"]:
        if param["name"] in official_names or param["kind"] in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            continue
        if param["default"] == REQUIRED:
            return f"extra required parameter {param['name']!r}"
    return None


def fields_problem(
    official: dict[str, Any], ours: dict[str, Any] | None, other_version: dict[str, Any] | None = None
) -> str | None:
    """Why the type ``ours`` does not have the official fields and defaults (None when it does).

    ``other_version`` is the same type in the other official release tinkex serves at once: a field of
    ours that only that release has is no mismatch when it is optional (0.16 code never sets a field 0.38
    added; 0.38 code never sets a 0.16 field that 0.38 renamed). A default where the official field is
    required accepts every official construction, so it is no mismatch either.
    """
    if ours is None:
        return "missing"
    if official["kind"] != "model":
        return None if ours["kind"] == official["kind"] or official["kind"] == "alias" else "kind differs"
    if ours.get("kind") != "model":
        return f"is a {ours.get('kind')}, official a model"
    theirs, mine = official["fields"], ours["fields"]
    elsewhere = (other_version or {}).get("fields") or {}
    missing = sorted(set(theirs) - set(mine))
    extra = sorted(
        name for name in set(mine) - set(theirs) if name not in elsewhere or mine[name]["default"] == REQUIRED
    )
    if missing or extra:
        return f"fields missing {missing}, extra {extra}"
    for name, field in theirs.items():
        if mine[name]["default"] != field["default"] and field["default"] != REQUIRED:
            return f"field {name!r} defaults to {mine[name]['default']}, official {field['default']}"
    return None


def field_type_problems(official: dict[str, Any], ours: dict[str, Any] | None) -> list[str]:
    if ours is None or official["kind"] != "model" or ours.get("kind") != "model":
        return []
    return [
        f"{name}: {ours['fields'][name]['type']} (official {field['type']})"
        for name, field in official["fields"].items()
        if name in ours["fields"] and ours["fields"][name]["type"] != field["type"]
    ]


def compare(
    official: dict[str, Any], ours: dict[str, Any], other_version: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Method and type coverage of ``ours`` against ``official``, with every mismatch named.

    ``other_version``: the other official surface tinkex serves at the same time (see ``fields_problem``).
    """
    other_types = (other_version or {}).get("types", {})
    method_problems: dict[str, str] = {}
    method_total = 0
    for cls_name, methods in official["clients"].items():
        own_methods = ours["clients"].get(cls_name, {})
        for name, spec in methods.items():
            method_total += 1
            problem = signature_problem(spec, own_methods.get(name))
            if problem is not None:
                method_problems[f"{cls_name}.{name}"] = problem
    type_problems: dict[str, str] = {}
    for name, spec in official["types"].items():
        problem = fields_problem(spec, ours["types"].get(name), other_types.get(name))
        if problem is not None:
            type_problems[name] = problem
    for name, bases in official["exceptions"].items():
        own = ours["exceptions"].get(name)
        if own is None:
            type_problems[name] = "missing exception"
        elif not set(bases) <= set(own):
            type_problems[name] = f"exception bases {own}, official {bases}"
    type_total = len(official["types"]) + len(official["exceptions"])
    return {
        "methods": (method_total - len(method_problems), method_total),
        "types": (type_total - len(type_problems), type_total),
        "method_problems": method_problems,
        "type_problems": type_problems,
        "missing_exports": sorted(set(official["exports"]) - set(ours["exports"])),
    }


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "dump":
        json.dump(dump(argv[1]), sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    if len(argv) in (3, 4) and argv[0] == "compare":
        surfaces = []
        for path in argv[1:]:
            with open(path) as file:
                surfaces.append(json.load(file))
        report = compare(surfaces[0], surfaces[1], surfaces[2] if len(surfaces) == 3 else None)
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(__doc__, file=sys.stderr)
    print("usage: api_surface.py dump PACKAGE | compare OFFICIAL.json OURS.json [OTHER_OFFICIAL.json]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
