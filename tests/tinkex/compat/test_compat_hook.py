"""tinkex.compat: ``import tinker`` and ``import tinker.<module>`` resolve to tinkex through an import hook."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import tinkex
import tinkex.compat
from tinkex.compat import SERVED_TINKER_VERSION, CompatError, TinkerModule
from tinkex.compat.modules import ModuleRoute, route_for, served_paths

SURFACE = Path(__file__).resolve().parent / "surface"


@pytest.fixture
def hook() -> Iterator[None]:
    assert "tinker" not in sys.modules, "a test left `tinker` imported"
    tinkex.compat.install()
    try:
        yield
    finally:
        tinkex.compat.uninstall()


@pytest.mark.parametrize(
    ("name", "route"),
    [
        ("tinker", ModuleRoute("tinkex", is_package=True)),
        ("tinker.types", ModuleRoute("tinkex.types", is_package=True)),
        ("tinker.types.tensor_data", ModuleRoute("tinkex.types")),
        ("tinker.types.datum", ModuleRoute("tinkex.types")),
        ("tinker.types.provenance_spans", ModuleRoute("tinkex.types")),
        ("tinker.types.checkpoint_archive_url_response", ModuleRoute("tinkex.types")),  # 0.16.1's
        ("tinker.lib", ModuleRoute(None, is_package=True)),
        ("tinker.lib.public_interfaces", ModuleRoute("tinkex", is_package=True)),
        ("tinker.lib.public_interfaces.rest_client", ModuleRoute("tinkex")),
        ("tinker.lib.public_interfaces.training_client", ModuleRoute("tinkex")),
        ("tinker.lib.retry_handler", ModuleRoute("tinkex")),
        # Not modules of the official SDK's public surface: not served.
        ("tinker.types._pydantic_types", None),
        ("tinker.types.no_such_type", None),
        ("tinker.cli", None),
        ("tinker.lib.internal_client_holder", None),
        ("tinker.lib.public_interfaces.nothing", None),
        ("tinkerer", None),
    ],
)
def test_route_for_maps_official_module_paths_onto_tinkex(name: str, route: ModuleRoute | None) -> None:
    assert route_for(name) == route


def test_every_served_path_has_a_route_and_its_target_imports() -> None:
    for path in served_paths():
        route = route_for(path)
        assert route is not None, path
        if route.target is not None:
            importlib.import_module(route.target)


def test_the_served_version_is_the_official_surface_tinkex_is_gated_on_and_sends() -> None:
    newest = max(
        (json.loads(path.read_text())["version"] for path in SURFACE.glob("tinker-*.json")),
        key=lambda version: tuple(int(part) for part in version.split(".")),
    )
    assert SERVED_TINKER_VERSION == newest
    # ... and the SDK version tinkex announces on the wire (the manifest's package-version header).
    manifest = json.loads((Path(__file__).resolve().parents[3] / "manifest.json").read_text())
    assert manifest["headers"]["X-Stainless-Package-Version"]["value"] == SERVED_TINKER_VERSION


def test_import_tinker_is_tinkex_with_the_served_version(hook: None) -> None:
    import tinker  # type: ignore[import-not-found]
    import tinker.types  # type: ignore[import-not-found]

    assert isinstance(tinker, TinkerModule) and tinker.__name__ == "tinker"
    assert tinker.__version__ == SERVED_TINKER_VERSION
    assert importlib.metadata.version("tinker") == SERVED_TINKER_VERSION
    # Tinkex's very objects, so isinstance checks and pickles agree between the two names.
    assert tinker.ServiceClient is tinkex.ServiceClient and tinker.Datum is tinkex.Datum
    assert tinker.types.EncodedTextChunk is tinkex.types.EncodedTextChunk
    assert tinker.types is sys.modules["tinker.types"]  # attribute access and import give one module
    assert "Datum" in dir(tinker) and "__all__" in dir(tinkex)
    assert set(tinkex.__all__) <= set(tinker.__all__)


def test_official_module_paths_import_as_the_cookbook_uses_them(hook: None) -> None:
    from tinker.lib.public_interfaces import APIFuture  # type: ignore[import-not-found]
    from tinker.lib.public_interfaces.rest_client import RestClient  # type: ignore[import-not-found]
    from tinker.types import EncodedTextChunk, ModelInput  # type: ignore[import-not-found]
    from tinker.types.tensor_data import TensorData  # type: ignore[import-not-found]

    assert APIFuture is tinkex.APIFuture and RestClient is tinkex.RestClient and TensorData is tinkex.TensorData
    from tinker.auth import tinker_has_credentials  # type: ignore[import-not-found]

    assert tinker_has_credentials is tinkex.auth.tinker_has_credentials
    chunk = EncodedTextChunk(tokens=[1, 2, 3])
    assert ModelInput(chunks=[chunk]).to_ints() == [1, 2, 3]


def test_star_import_gives_the_official_names(hook: None) -> None:
    namespace: dict[str, object] = {}
    exec("from tinker import *", namespace)
    assert namespace["TrainingClient"] is tinkex.TrainingClient


def test_a_path_the_official_sdk_does_not_have_fails_naming_it(hook: None) -> None:
    with pytest.raises(ModuleNotFoundError, match="tinker.cli.*not one of them") as caught:
        importlib.import_module("tinker.cli")
    assert caught.value.name == "tinker.cli"


def test_a_missing_name_is_an_attribute_error_naming_module_and_name(hook: None) -> None:
    import tinker  # type: ignore[import-not-found]

    with pytest.raises(AttributeError, match="module 'tinker' has no attribute 'NoSuchThing'") as caught:
        _ = tinker.NoSuchThing
    assert caught.value.name == "NoSuchThing" and caught.value.obj is tinker
    with pytest.raises(ImportError, match="cannot import name 'NoSuchThing' from 'tinker.types'"):
        exec("from tinker.types import NoSuchThing", {})
    # Dunders describe the served module itself: never borrowed from tinkex (tinker.lib has no file of its own).
    import tinker.lib  # type: ignore[import-not-found]

    assert not hasattr(tinker.lib, "__file__")


def test_install_is_idempotent_and_stays_first(hook: None) -> None:
    sys.meta_path.insert(0, importlib.machinery.PathFinder)  # something else that went first since
    try:
        tinkex.compat.install()
        tinkex.compat.install()
        finders = [finder for finder in sys.meta_path if type(finder).__name__ == "_TinkerFinder"]
        assert len(finders) == 1 and sys.meta_path[0] is finders[0]
    finally:
        sys.meta_path.remove(importlib.machinery.PathFinder)


def test_uninstall_forgets_the_served_modules() -> None:
    tinkex.compat.install()
    import tinker  # type: ignore[import-not-found]  # noqa: F401

    assert tinkex.compat.is_installed()
    tinkex.compat.uninstall()
    assert not tinkex.compat.is_installed()
    assert not [name for name in sys.modules if name == "tinker" or name.startswith("tinker.")]
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("tinker")


def test_install_refuses_when_the_official_package_is_already_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    official = types.ModuleType("tinker")
    official.__file__ = "/site-packages/tinker/__init__.py"
    monkeypatch.setitem(sys.modules, "tinker", official)
    with pytest.raises(CompatError, match="already imported.*site-packages/tinker.*tinkex exec"):
        tinkex.compat.install()
    assert not tinkex.compat.is_installed()
