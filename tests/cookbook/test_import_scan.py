"""Every tinker_cookbook module imports with ``import tinker`` served by tinkex, or fails for a listed reason.

The scan (tests/cookbook/import_scan.py) runs in the cookbook venv. It fails on any module that breaks for a
missing ``tinker`` name, or for a reason that is not a missing third-party dependency; modules that need a package
this machine's index cannot supply are listed in the run's summary, not counted.
"""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path
from typing import Any

import pytest

SCAN = Path(__file__).resolve().with_name("import_scan.py")


def _load_scan_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("cookbook_import_scan", SCAN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_cookbook_module_imports_through_tinkex_compat(
    cookbook_venv: Any, tmp_path: Path, cookbook_report: list[str]
) -> None:
    out = tmp_path / "scan.json"
    completed = cookbook_venv.run([cookbook_venv.python, SCAN, out], timeout=600)
    assert completed.returncode == 0, f"the import scan itself failed:\n{completed.stdout}{completed.stderr}"
    result = json.loads(out.read_text())
    failures: dict[str, dict[str, str]] = result["failures"]
    by_category: dict[str, list[str]] = {}
    for module, failure in sorted(failures.items()):
        by_category.setdefault(failure["category"], []).append(f"{module}: {failure['detail']}")

    dependency = by_category.get("dependency", [])
    cookbook_report.append(
        f"import scan: {result['modules']} tinker_cookbook modules, "
        f"{len(by_category.get('missing-tinker-name', []))} fail for a missing tinker name, "
        f"{len(dependency)} need a package not installable here (not counted):"
    )
    cookbook_report.extend(f"  {line}" for line in dependency)

    assert result["modules"] > 250  # the whole package was walked, recipes (namespace packages) included
    assert by_category.get("missing-tinker-name", []) == [], "modules that break on a tinker name tinkex lacks"
    assert by_category.get("other", []) == [], "modules that break for a reason other than a missing dependency"


class _Holder:
    pass


@pytest.mark.parametrize(
    ("make_error", "expected"),
    [
        (
            lambda: ImportError(
                "cannot import name 'AuditLogEntry' from 'tinker.types' (unknown location)", name="tinker.types"
            ),
            ("missing-tinker-name", "tinker.types.AuditLogEntry"),
        ),
        (
            lambda: ModuleNotFoundError("No module named 'tinker.cli'", name="tinker.cli"),
            ("missing-tinker-name", "module tinker.cli"),
        ),
        (lambda: ModuleNotFoundError("No module named 'modal'", name="modal"), ("dependency", "needs modal")),
        (
            lambda: ModuleNotFoundError("No module named 'google.genai'", name="google.genai"),
            ("dependency", "needs google"),
        ),
        # A failure inside the cookbook's own package is not a third-party dependency.
        (lambda: ModuleNotFoundError("x", name="tinker_cookbook.gone"), None),
        (
            lambda: AttributeError("no", name="from_torch_sparse", obj=__import__("tinkex").TensorData),
            ("missing-tinker-name", "tinker.TensorData.from_torch_sparse"),
        ),
        (lambda: AttributeError("no", name="x", obj=_Holder()), None),
        (lambda: ValueError("bad"), None),
    ],
)
def test_classify_one_tells_missing_names_from_missing_dependencies(make_error: Any, expected: Any) -> None:
    assert _load_scan_module().classify_one(make_error()) == expected


def test_classify_finds_a_missing_name_wrapped_in_another_error() -> None:
    scan = _load_scan_module()
    try:
        try:
            raise ImportError("cannot import name 'Gone' from 'tinker'", name="tinker")
        except ImportError as inner:
            raise RuntimeError("a library wrapped it") from inner
    except RuntimeError as outer:
        assert scan.classify(outer) == ("missing-tinker-name", "tinker.Gone")
        category, detail = scan.classify(RuntimeError("plain"))
        assert category == "other" and detail.startswith("RuntimeError: plain")


def test_classify_names_an_attribute_missing_on_a_served_tinker_module() -> None:
    import tinkex.compat

    scan = _load_scan_module()
    tinkex.compat.install()
    try:
        import tinker  # type: ignore[import-not-found]

        with pytest.raises(AttributeError) as caught:
            _ = tinker.NoSuchName
        assert scan.classify(caught.value) == ("missing-tinker-name", "tinker.NoSuchName")
    finally:
        tinkex.compat.uninstall()
