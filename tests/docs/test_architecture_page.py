"""docs/architecture.md describes the code as it is.

- The layout tree (the text block after ``<!-- docs-test: layout -->``) names only files and folders that exist, and
  every module of a package whose contents it lists (a folder with an ``__init__.py``: each ``.py`` file and each
  subpackage) is on it, so a module added or removed without the page fails here.
- The tests tree (after ``<!-- docs-test: tests-layout -->``) names only folders that exist. It describes the
  layout that mirrors the packages, so this test fails until the tests are moved there.
- The request.extensions table lists every key of extensions.py, and only keys the code defines.
- The manifest table names every top-level block of ``Manifest``.
- The numbered layer list (after ``<!-- docs-test: layer-order -->``) is the order ``build_transport`` stacks the
  layers in: every endpoint's stack, built from manifest.json, is a sub-sequence of it, and every layer on the list
  occurs in some stack.

Tree format: an entry line is ``<2 spaces per depth><name>[, <name>...]`` then two or more spaces and its
description; folders end in ``/``; a line indented past :data:`DESCRIPTION_COLUMN` continues a description.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from doc_blocks import ROOT  # type: ignore[import-not-found]

from pristine_transport.layers.notices import ResponseNotices
from pristine_transport.layers.token_auth import TokenAuth
from pristine_transport.manifest import Manifest
from pristine_transport.stack import build_transport
from tinkex.request_size import SIZE_ESTIMATORS

PAGE = ROOT / "docs" / "architecture.md"
DESCRIPTION_COLUMN = 24
_ENTRY = re.compile(r"^(?P<indent> *)(?P<names>\S.*?)(?: {2,}.*)?$")
_ITEM = re.compile(r"^(\d+)\.\s+`(?P<name>[A-Za-z_][A-Za-z0-9_]*)`")


def _block_after(marker: str) -> list[str]:
    """The lines of the fenced block that follows ``<!-- docs-test: <marker> -->``."""
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"<!-- docs-test: {marker} -->")
    opening = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i].startswith("```"))
    return lines[opening + 1 : closing]


def tree_entries(lines: list[str]) -> list[str]:
    """Repository paths of a tree's entries (folders with a trailing ``/``), in page order."""
    parents: list[str] = []
    paths: list[str] = []
    for line in lines:
        entry = _ENTRY.match(line)
        if entry is None or not line.strip() or len(entry["indent"]) >= DESCRIPTION_COLUMN:
            continue
        depth, odd = divmod(len(entry["indent"]), 2)
        assert not odd and depth <= len(parents), f"docs/architecture.md: tree line badly indented: {line!r}"
        del parents[depth:]
        names = [name.strip() for name in entry["names"].split(",") if name.strip() not in ("", "...")]
        for name in names:
            paths.append("".join(parents) + name)
        if len(names) == 1 and names[0].endswith("/"):
            parents.append(names[0])
    return paths


LAYOUT = tree_entries(_block_after("layout"))
TESTS_LAYOUT = tree_entries(_block_after("tests-layout"))


@pytest.mark.parametrize("path", LAYOUT)
def test_layout_names_what_exists(path: str) -> None:
    target = ROOT / path
    assert target.is_dir() if path.endswith("/") else target.is_file(), f"docs/architecture.md names {path}"


def _listed_packages() -> Iterator[str]:
    for path in LAYOUT:
        if (
            path.endswith("/")
            and (ROOT / path / "__init__.py").is_file()
            and any(other != path and other.startswith(path) for other in LAYOUT)
        ):
            yield path


@pytest.mark.parametrize("package", list(_listed_packages()))
def test_layout_lists_every_module_of_a_listed_package(package: str) -> None:
    folder = ROOT / package
    modules = {f"{package}{p.name}" for p in folder.glob("*.py") if p.name != "__init__.py"}
    subpackages = {f"{package}{p.name}/" for p in folder.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted((modules | subpackages) - set(LAYOUT))
    assert not missing, f"docs/architecture.md's layout lacks {missing}"


def test_tests_layout_names_folders_that_exist() -> None:
    """Fails until the tests are moved into the layout that mirrors the packages (the page describes that one)."""
    missing = [path for path in TESTS_LAYOUT if not (path.endswith("/") and (ROOT / path).is_dir())]
    assert not missing, f"docs/architecture.md's tests tree names folders that do not exist: {missing}"


def _layer_order() -> list[str]:
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    start = lines.index("<!-- docs-test: layer-order -->")
    names: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        item = _ITEM.match(line)
        if item:
            names.append(item["name"])
    return names


LAYER_ORDER = _layer_order()


def _chain(transport: object) -> list[str]:
    """Class names from a stack's top down to (not including) the base transport."""
    names: list[str] = []
    while isinstance(transport, httpx.AsyncBaseTransport) and not isinstance(transport, httpx.MockTransport):
        names.append(type(transport).__name__)
        transport = getattr(transport, "_inner", None)
    return names


def test_layer_list_is_the_order_the_stack_builds() -> None:
    router = build_transport(
        ROOT / "manifest.json",
        base=httpx.MockTransport(lambda request: httpx.Response(200)),
        env={"TINKER_API_KEY": "tml-docs"},
        token_auth=TokenAuth(source_for=lambda endpoint: None),
        notices=ResponseNotices(note_header="x-note"),
        size_estimators=SIZE_ESTIMATORS,
    )
    seen: set[str] = set()
    for name, stack in router.stacks.items():
        chain = _chain(stack)
        unknown = [layer for layer in chain if layer not in LAYER_ORDER]
        assert not unknown, f"{name}: docs/architecture.md's layer list lacks {unknown}"
        positions = [LAYER_ORDER.index(layer) for layer in chain]
        assert positions == sorted(positions), f"{name}: stacked {chain}, the page says {LAYER_ORDER}"
        seen.update(chain)
    assert set(LAYER_ORDER) == seen, f"on the page but in no stack: {set(LAYER_ORDER) - seen}"


def test_the_page_parses() -> None:  # the extraction itself works
    assert "pristine_transport/layers/retry.py" in LAYOUT and "tinkex/wire/dialect.py" in LAYOUT
    assert LAYER_ORDER[:3] == ["TelemetryLayer", "IdempotencyLayer", "RetryLayer"]
    assert "tests/pristine_transport/layers/" in TESTS_LAYOUT and "tests/docs/" in TESTS_LAYOUT
    assert not Path(PAGE).read_text(encoding="utf-8").count("\t")


_KEY_ROW = re.compile(r"^\| `(pristine\.[a-z_.]+)` \|")


def test_extension_keys_table_matches_the_code() -> None:
    """Every key of pristine_transport/extensions.py is in the page's table, and every key in the table is one the
    code defines."""
    table = {m[1] for line in PAGE.read_text(encoding="utf-8").splitlines() if (m := _KEY_ROW.match(line))}
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "pristine_transport").rglob("*.py"))
    defined = set(re.findall(r'^[A-Z_]+(?:: [\w\[\]]+)? = "(pristine\.[a-z_.]+)"', source, re.MULTILINE))
    extensions = (ROOT / "pristine_transport" / "extensions.py").read_text(encoding="utf-8")
    declared = set(re.findall(r'^[A-Z_]+ = "(pristine\.[a-z_.]+)"', extensions, re.MULTILINE))
    assert declared and declared <= table, f"not in docs/architecture.md's table: {sorted(declared - table)}"
    assert table <= defined, f"in the table but defined nowhere: {sorted(table - defined)}"


def test_manifest_table_names_every_block() -> None:
    """The page's manifest table (rows after the header ``| block |``) names each top-level field of ``Manifest``."""
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    start = lines.index("| block | says | read by |")
    rows = list(itertools.takewhile(lambda row: row.startswith("| `"), lines[start + 2 :]))
    named = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    fields = {field.encode_name for field in msgspec.structs.fields(Manifest)}
    assert named == fields, f"missing: {sorted(fields - named)}; not a block: {sorted(named - fields)}"
