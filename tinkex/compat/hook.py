"""The import hook that serves ``import tinker`` (and ``tinker.<module>``) from tinkex.

A meta-path finder placed ahead of every other finder answers for ``tinker`` and each official module path below it
(the table is in :mod:`tinkex.compat.modules`). Each path becomes a module of its own name (``tinker.types`` is a
module named ``tinker.types``) whose attributes are the names of the tinkex module serving it, so the classes,
functions and exceptions are tinkex's very objects: ``tinker.Datum is tinkex.Datum``. Nothing is installed on disk,
so the hook never fights an installed official package over files; while it is installed it wins, predictably,
because it is consulted first. ``importlib.metadata`` sees a ``tinker`` distribution of the served version too,
since real code gates features on ``importlib.metadata.version("tinker")``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from .modules import SERVED_TINKER_VERSION, route_for

__all__ = ["CompatError", "TinkerModule", "install", "is_installed", "uninstall"]


class CompatError(RuntimeError):
    """``tinkex.compat`` cannot serve ``tinker`` in this process; the message says why and what to do."""


class TinkerModule(ModuleType):
    """A ``tinker`` module served by tinkex: its public names are those of the tinkex module it maps onto."""

    __tinkex_target__: str | None

    def __getattr__(self, name: str) -> Any:
        # Only called for names the module itself lacks. A served child module resolves to its own tinker.* module
        # (so ``tinker.types`` is the same object after ``import tinker`` as after ``import tinker.types``).
        if not name.startswith("_") and route_for(f"{self.__name__}.{name}") is not None:
            return importlib.import_module(f"{self.__name__}.{name}")
        target = self.__dict__.get("__tinkex_target__")
        # Dunders other than __all__ describe the module itself (__file__, __path__, ...): never borrowed.
        forwardable = name == "__all__" or not (name.startswith("__") and name.endswith("__"))
        if target is not None and forwardable:
            try:
                return getattr(importlib.import_module(target), name)
            except AttributeError:
                pass
        served_by = f"; tinkex serves it from {target}, which has no {name!r}" if target else ""
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}{served_by}", name=name, obj=self)

    def __dir__(self) -> list[str]:
        names = set(self.__dict__)
        target = self.__dict__.get("__tinkex_target__")
        if target is not None:
            names.update(name for name in dir(importlib.import_module(target)) if not name.startswith("__"))
        return sorted(names)

    def __repr__(self) -> str:
        return f"<module {self.__name__!r} (tinkex.compat: {self.__dict__.get('__tinkex_target__') or 'package'})>"


class _TinkerLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return TinkerModule(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        route = route_for(module.__name__)
        assert route is not None, module.__name__  # the finder made a spec only for a routed name
        module.__tinkex_target__ = route.target  # type: ignore[attr-defined]
        if route.target is not None:
            target = importlib.import_module(route.target)  # fail at import time, as the official module would
            module.__doc__ = target.__doc__
        if module.__name__ == "tinker":
            module.__version__ = SERVED_TINKER_VERSION  # type: ignore[attr-defined]
            module.__title__ = "tinker"  # type: ignore[attr-defined]


class _ServedTinkerDistribution(importlib.metadata.Distribution):
    """The ``tinker`` distribution as ``importlib.metadata`` sees it while the hook is installed."""

    def read_text(self, filename: str) -> str | None:
        if filename == "METADATA":
            from ..config import TINKEX_VERSION

            return (
                "Metadata-Version: 2.1\nName: tinker\n"
                f"Version: {SERVED_TINKER_VERSION}\nSummary: served by tinkex {TINKEX_VERSION} (tinkex.compat)\n"
            )
        if filename == "top_level.txt":
            return "tinker\n"
        return None

    def locate_file(self, path: str | Any) -> Path:
        return Path(__file__).parent / str(path)


_DISTRIBUTION_NAME = re.compile(r"[-_.]+")


class _TinkerFinder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self._loader = _TinkerLoader()

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tinker" and not fullname.startswith("tinker."):
            return None
        route = route_for(fullname)
        if route is None:
            # Not None: that would let another finder supply a module of the official package under tinkex's parent.
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: tinkex.compat serves the module paths of the official tinker "
                f"{SERVED_TINKER_VERSION} that hold public names, and this is not one of them",
                name=fullname,
            )
        return importlib.util.spec_from_loader(fullname, self._loader, is_package=route.is_package)

    def find_distributions(
        self, context: importlib.metadata.DistributionFinder.Context | None = None
    ) -> Iterator[importlib.metadata.Distribution]:
        name = getattr(context, "name", None)
        if name is None or _DISTRIBUTION_NAME.sub("-", name).lower() == "tinker":
            yield _ServedTinkerDistribution()


_FINDER = _TinkerFinder()
_LOCK = threading.Lock()


def install() -> None:
    """Serve ``import tinker`` and ``import tinker.<module>`` from tinkex in this process, from now on.

    The hook goes ahead of every other finder, so it wins over an installed official ``tinker`` package. Idempotent.
    Raises :class:`CompatError` when the official package is already imported here: its classes would mix with
    tinkex's, so call ``install()`` before anything imports ``tinker`` (or run the program with ``tinkex exec``).
    """
    with _LOCK:
        already = sys.modules.get("tinker")
        if already is not None and not isinstance(already, TinkerModule):
            where = getattr(already, "__file__", None) or "an unknown location"
            raise CompatError(
                f"the official 'tinker' package is already imported in this process (from {where}); "
                "call tinkex.compat.install() before anything imports tinker, or run the program with "
                "`tinkex exec -- python ...`"
            )
        if _FINDER in sys.meta_path:
            sys.meta_path.remove(_FINDER)
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    """Stop serving ``tinker`` from tinkex and forget the ``tinker`` modules it served (idempotent)."""
    with _LOCK:
        if _FINDER in sys.meta_path:
            sys.meta_path.remove(_FINDER)
        for name, module in list(sys.modules.items()):
            if (name == "tinker" or name.startswith("tinker.")) and isinstance(module, TinkerModule):
                del sys.modules[name]


def is_installed() -> bool:
    """Whether the hook is installed in this process."""
    return _FINDER in sys.meta_path
