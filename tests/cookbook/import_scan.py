"""Import every tinker_cookbook module with ``import tinker`` served by tinkex, and say why each failure failed.

Run with the cookbook venv's python (tests/cookbook/test_import_scan.py does): ``python import_scan.py OUT.json``.
Each module that fails to import is classified by :func:`classify`:

- ``missing-tinker-name``: a name (or module path) of the official ``tinker`` API that tinkex does not serve. This is
  what the scan exists to catch: the test fails on any.
- ``dependency``: a third-party module that is not installed (the cookbook has optional extras this machine's
  package index cannot supply). Listed, not counted.
- ``other``: anything else, with the exception and the frame that raised it.

The JSON written has ``modules`` (how many were tried) and ``failures`` ({module: {category, detail, error}}).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import re
import sys
import traceback
from pathlib import Path
from typing import Any

MISSING_TINKER_NAME, DEPENDENCY, OTHER = "missing-tinker-name", "dependency", "other"
_CANNOT_IMPORT = re.compile(r"cannot import name '([^']+)'")


def _is_tinker_module_name(name: str | None) -> bool:
    return name is not None and (name == "tinker" or name.startswith("tinker."))


def _owner_name(obj: Any) -> str | None:
    """``tinker.X`` or ``module.Class`` for the object an AttributeError was raised on, when it is tinker's/tinkex's."""
    from tinkex.compat import TinkerModule

    if isinstance(obj, TinkerModule):
        return obj.__name__
    cls = obj if isinstance(obj, type) else type(obj)
    if cls.__module__.split(".")[0] == "tinkex":
        return f"tinker.{cls.__qualname__}"  # a class tinkex serves as tinker.<Class>
    return None


def classify_one(exc: BaseException) -> tuple[str, str] | None:
    """The category and detail of ``exc`` alone, or ``None`` when it is not a missing-name or a dependency failure."""
    if isinstance(exc, ModuleNotFoundError):
        if _is_tinker_module_name(exc.name):
            return MISSING_TINKER_NAME, f"module {exc.name}"
        if exc.name and exc.name.split(".")[0] not in {"tinkex", "tinker_cookbook"}:
            return DEPENDENCY, f"needs {exc.name.split('.')[0]}"
        return None
    if isinstance(exc, ImportError) and _is_tinker_module_name(exc.name):
        match = _CANNOT_IMPORT.search(str(exc))
        return MISSING_TINKER_NAME, f"{exc.name}.{match.group(1)}" if match else str(exc)
    if isinstance(exc, AttributeError) and exc.name is not None:
        owner = _owner_name(getattr(exc, "obj", None))
        if owner is not None:
            return MISSING_TINKER_NAME, f"{owner}.{exc.name}"
    return None


def classify(exc: BaseException) -> tuple[str, str]:
    """Why an import failed: the first classifiable exception along the ``__cause__``/``__context__`` chain (a library
    may wrap the AttributeError of a missing ``tinker`` name in its own error), else ``other``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = classify_one(current)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {frame.filename}:{frame.lineno}" if frame else ""
    return OTHER, f"{type(exc).__name__}: {str(exc)[:300]}{where}"


def module_names(package_name: str) -> list[str]:
    """Every module of the package, from its files: pkgutil.walk_packages would skip the children of a package that
    fails to import and every namespace package (most of the cookbook's recipes have no __init__.py)."""
    spec = importlib.util.find_spec(package_name)
    assert spec is not None and spec.submodule_search_locations, f"{package_name} is not an installed package"
    root = Path(next(iter(spec.submodule_search_locations)))
    names = set()
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if "__pycache__" in parts or not all(part.isidentifier() for part in parts):
            continue
        names.add(".".join([package_name, *(parts[:-1] if parts[-1] == "__init__" else parts)]))
    return sorted(names)


def scan(package_name: str = "tinker_cookbook") -> dict[str, Any]:
    import tinkex.compat

    tinkex.compat.install()
    names = module_names(package_name)
    failures: dict[str, dict[str, str]] = {}
    for name in names:
        if name.endswith(".__main__"):
            continue  # a program (`python -m ...`), not a module to import: importing it would run it
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - SystemExit at import time is a failure to import, too
            category, detail = classify(exc)
            failures[name] = {"category": category, "detail": detail, "error": f"{type(exc).__name__}: {exc}"[:500]}
    return {"modules": len(names), "failures": failures}


if __name__ == "__main__":
    result = scan()
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        json.dump(result, out, indent=1, sort_keys=True)
