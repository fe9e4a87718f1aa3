"""tinkex's public surface against the official SDK's, recorded by ``tools/api_surface.py``.

The official surfaces are committed data (``surface/tinker-<version>.json``, dumped in the official package's
own venv); tinkex is dumped here the same way. Every mismatch must be listed in ``surface/differences.json``
with its reason, and an excuse that no longer matches a mismatch must be removed: the list is the whole truth.

An entry is either a reason (a deliberate difference: it counts against coverage) or an object
``{"reason": ..., "same_calls_work": "tests/<file>.py::<test>"}``: the signatures differ because the two served
releases disagree (0.38 moved or renamed a parameter), yet every call written for this release works, as the
named test shows. Those count as compatible.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

SURFACE = Path(__file__).parent / "surface"
VERSIONS = ("0.38.0", "0.16.1")
COVERAGE_FLOOR = 0.95


def _load_tool() -> Any:
    path = Path(__file__).parents[3] / "tools" / "api_surface.py"
    spec = importlib.util.spec_from_file_location("api_surface", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


api_surface = _load_tool()


@pytest.fixture(scope="module")
def tinkex_surface() -> dict[str, Any]:
    return api_surface.dump("tinkex")


REPO = Path(__file__).parents[3]


def _differences(version: str) -> dict[str, Any]:
    return json.loads((SURFACE / "differences.json").read_text())[version]


def _same_calls_work(version: str) -> set[str]:
    return {key for key, entry in _differences(version).items() if isinstance(entry, dict)}


def _coverage(report: dict[str, Any], version: str) -> tuple[tuple[int, int], tuple[int, int]]:
    equivalent = _same_calls_work(version)
    (methods_ok, methods_total), (types_ok, types_total) = report["methods"], report["types"]
    methods_ok += sum(1 for name in report["method_problems"] if f"method {name}" in equivalent)
    types_ok += sum(1 for name in report["type_problems"] if f"type {name}" in equivalent)
    return (methods_ok, methods_total), (types_ok, types_total)


def _mismatches(version: str, ours: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    official = json.loads((SURFACE / f"tinker-{version}.json").read_text())
    (other,) = (v for v in VERSIONS if v != version)
    report = api_surface.compare(official, ours, json.loads((SURFACE / f"tinker-{other}.json").read_text()))
    found = {
        **{f"method {k}": v for k, v in report["method_problems"].items()},
        **{f"type {k}": v for k, v in report["type_problems"].items()},
        **{f"export {name}": "missing" for name in report["missing_exports"]},
    }
    return report, found


@pytest.mark.parametrize("version", VERSIONS)
def test_every_difference_from_the_official_surface_is_deliberate(
    version: str, tinkex_surface: dict[str, Any]
) -> None:
    report, found = _mismatches(version, tinkex_surface)
    excused = _differences(version)
    unexcused = {key: why for key, why in found.items() if key not in excused}
    (methods_ok, methods_total), (types_ok, types_total) = _coverage(report, version)
    print(
        f"tinker {version}: methods {methods_ok}/{methods_total} ({methods_ok / methods_total:.1%}), "
        f"types {types_ok}/{types_total} ({types_ok / types_total:.1%})"
    )
    assert not unexcused, "differences from the official surface that are not listed in differences.json:\n" + (
        "\n".join(f"  {key}: {why}" for key, why in sorted(unexcused.items()))
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_coverage_of_the_official_surface(version: str, tinkex_surface: dict[str, Any]) -> None:
    report, _ = _mismatches(version, tinkex_surface)
    (methods_ok, methods_total), (types_ok, types_total) = _coverage(report, version)
    assert methods_ok / methods_total >= COVERAGE_FLOOR, report["method_problems"]
    assert types_ok / types_total >= COVERAGE_FLOOR, report["type_problems"]


@pytest.mark.parametrize("version", VERSIONS)
def test_no_excuse_outlives_its_difference(version: str, tinkex_surface: dict[str, Any]) -> None:
    _, found = _mismatches(version, tinkex_surface)
    stale = sorted(set(_differences(version)) - set(found))
    assert not stale, f"differences.json excuses what is no longer different (remove them): {stale}"


@pytest.mark.parametrize("version", VERSIONS)
def test_every_claim_that_the_same_calls_work_names_an_existing_test(version: str) -> None:
    for key, entry in _differences(version).items():
        if not isinstance(entry, dict):
            continue
        path, _, test_name = entry["same_calls_work"].partition("::")
        source = (REPO / path).read_text()
        assert f"def {test_name}(" in source, f"{key}: {entry['same_calls_work']} does not exist"


def test_signature_check_rejects_what_user_code_would_trip_on() -> None:
    official = {"params": [{"name": "a", "kind": "POSITIONAL_OR_KEYWORD", "default": "<required>"},
                           {"name": "b", "kind": "KEYWORD_ONLY", "default": "None"}], "returns": None}

    def ours(*params: tuple[str, str, str]) -> dict[str, Any]:
        return {"params": [{"name": n, "kind": k, "default": d} for n, k, d in params], "returns": None}

    same = ours(("a", "POSITIONAL_OR_KEYWORD", "<required>"), ("b", "KEYWORD_ONLY", "None"))
    assert api_surface.signature_problem(official, same) is None
    widened = ours(("a", "POSITIONAL_OR_KEYWORD", "<required>"), ("b", "POSITIONAL_OR_KEYWORD", "None"))
    assert api_surface.signature_problem(official, widened) is None
    extra_optional = ours(
        ("a", "POSITIONAL_OR_KEYWORD", "<required>"), ("b", "KEYWORD_ONLY", "None"), ("c", "KEYWORD_ONLY", "1")
    )
    assert api_surface.signature_problem(official, extra_optional) is None
    catch_all = ours(("a", "POSITIONAL_OR_KEYWORD", "<required>"), ("kwargs", "VAR_KEYWORD", "<required>"))
    assert api_surface.signature_problem(official, catch_all) == "parameter 'b' missing"
    swapped = ours(("b", "POSITIONAL_OR_KEYWORD", "None"), ("a", "POSITIONAL_OR_KEYWORD", "<required>"))
    assert "position" in api_surface.signature_problem(official, swapped)
    other_default = ours(("a", "POSITIONAL_OR_KEYWORD", "<required>"), ("b", "KEYWORD_ONLY", "0"))
    assert "defaults" in api_surface.signature_problem(official, other_default)
    extra_required = ours(
        ("a", "POSITIONAL_OR_KEYWORD", "<required>"), ("b", "KEYWORD_ONLY", "None"), ("c", "KEYWORD_ONLY", "<required>")
    )
    assert api_surface.signature_problem(official, extra_required) == "extra required parameter 'c'"
