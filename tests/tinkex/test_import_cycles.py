"""No import cycles in pristine_transport and tinkex.

The graph is built from the modules' ASTs, without importing them. Every ``import`` of a module of either
package is an edge: at module level, and inside a function or method as well. An import inside a function runs
when the function does, so it is as much a dependency as one at the top of the file; moving an import into a
function to get past a cycle hides the cycle from Python's import machinery, not from this check. A lazy import
kept only to defer loading (``tinkex.__getattr__`` loading the tokenizer, the CLI loading the demo) closes no cycle
unless its target imports back, and then the two modules do depend on each other.

Not edges: imports under ``if TYPE_CHECKING:`` (annotations only, never executed), and the implicit import of a
module's parent packages (``import tinkex.types.training`` runs ``tinkex/__init__.py`` first, and that imports
nearly everything: counting it would make every module part of one cycle and the check would say nothing).

``from package import name`` is an edge to ``package.name`` when that is a module, else to ``package``.

There is none today. A cycle that has to stand for a while is listed in ``KNOWN_CYCLE_IMPORTS`` by the function
whose imports close it, with what removing it takes; the check fails on any other cycle (an import at module level
is never excused), and on a listed function that no longer closes one (take it off the list).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pristine_transport", "tinkex")


class ImportSite(NamedTuple):
    path: str
    line: int
    scope: str
    """The qualified name of the function the import stands in (``Class.method``); empty at module level."""


Graph = dict[str, dict[str, list[ImportSite]]]
"""importer -> imported -> every place the importer imports it."""


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of ``packages`` under ``root`` by dotted name (a package by its own name)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: Mapping[str, Path]) -> list[str]:
    """The modules of ``known`` that the import statement names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        source = f"{base}.{node.module}" if node.module else base
    else:
        source = node.module or ""
    return [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source for alias in node.names]


def import_graph(modules: Mapping[str, Path], root: Path) -> Graph:
    """For each module, the modules of ``modules`` it imports at run time, each with where the imports stand."""
    graph: Graph = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        is_package = path.name == "__init__.py"
        relative = str(path.relative_to(root))

        def visit(node: ast.AST, scope: list[str], in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child.test):
                    for branch in child.orelse:
                        visit_one(branch, scope, in_function)
                else:
                    visit_one(child, scope, in_function)

        def visit_one(node: ast.AST, scope: list[str], in_function: bool) -> None:
            if isinstance(node, ast.Import | ast.ImportFrom):
                site = ImportSite(relative, node.lineno, ".".join(scope) if in_function else "")
                for target in _targets(node, module, is_package, modules):
                    if target in modules and target != module:
                        edges.setdefault(target, []).append(site)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(node, [*scope, node.name], True)
            elif isinstance(node, ast.ClassDef):
                visit(node, [*scope, node.name], in_function)
            else:
                visit(node, scope, in_function or isinstance(node, ast.Lambda))

        visit(ast.parse(path.read_text(), filename=str(path)), [], False)
    return graph


def cycles(graph: Mapping[str, Mapping[str, ImportSite]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = itertools.count()

    def connect(module: str) -> None:
        index[module] = low[module] = next(counter)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, {}):
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return sorted(found)


def describe(component: list[str], graph: Graph) -> str:
    members = set(component)
    lines = [" <-> ".join(component)]
    for source in component:
        for target, sites in sorted(graph[source].items()):
            if target in members:
                for site in sites:
                    where = f"in {site.scope}()" if site.scope else "at module level"
                    lines.append(f"  {source} -> {target}  ({site.path}:{site.line}, {where})")
    return "\n".join(lines)


KNOWN_CYCLE_IMPORTS: dict[tuple[str, str], str] = {}
"""Cycles excused for now, each by the function whose imports close it: (importer, function) -> how to remove it.
Every import of a cycle edge must stand in such a function for the edge to be excused. Empty: issue 19 removed the
last five (sdk_method's tracking of the clients, RestClient's admin delegates, TrainingClient's sampling-client
futures, Datum's ModelInput check, ``python -m tinkex.demo``)."""


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(module_files(ROOT, PACKAGES), ROOT)


def _excused(source: str, sites: list[ImportSite]) -> bool:
    return all((source, site.scope) in KNOWN_CYCLE_IMPORTS for site in sites)


def test_the_packages_have_no_import_cycle_but_the_known_ones(graph: Graph) -> None:
    without_known = {
        source: {target: sites for target, sites in targets.items() if not _excused(source, sites)}
        for source, targets in graph.items()
    }
    found = cycles(without_known)
    assert not found, "import cycles:\n" + "\n".join(describe(component, without_known) for component in found)


def test_every_known_cycle_import_still_closes_a_cycle(graph: Graph) -> None:
    """A listed function whose imports are gone, or close no cycle any more, is taken off the list."""
    in_cycle = {member: set(component) for component in cycles(graph) for member in component}
    still_closing = {
        (source, site.scope)
        for source, targets in graph.items()
        for target, sites in targets.items()
        if target in in_cycle.get(source, set())
        for site in sites
    }
    stale = sorted(set(KNOWN_CYCLE_IMPORTS) - still_closing)
    assert not stale, f"no longer closing a cycle, remove from KNOWN_CYCLE_IMPORTS: {stale}"


def test_the_cycles_issue_19_named_are_gone(graph: Graph) -> None:
    """errors and the retry layer, holder and telemetry, the tokenizer and the types."""
    in_cycle = {member: set(component) for component in cycles(graph) for member in component}
    for first, second in (
        ("pristine_transport.errors", "pristine_transport.layers.retry"),
        ("tinkex.holder", "tinkex.telemetry"),
        ("tinkex.tokenizer", "tinkex.types"),
    ):
        assert second not in in_cycle.get(first, set()), (first, second)


# --- the check itself, on small packages written for it ------------------------------------------------------
def _package(root: Path, files: Mapping[str, str]) -> Graph:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(module_files(root, ["pkg"]), root)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"pkg/__init__.py": "", "pkg/a.py": "from . import b\n", "pkg/b.py": "import pkg.a\n"},
            [["pkg.a", "pkg.b"]],
            id="module-level",
        ),
        pytest.param(
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "from pkg.b import x\n",
                "pkg/b.py": "x = 1\ndef f():\n    from .a import y\n    return y\n",
            },
            [["pkg.a", "pkg.b"]],
            id="dodged-inside-a-function",
        ),
        pytest.param(
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "from pkg.b import x\n",
                "pkg/b.py": "class C:\n    async def m(self):\n        import pkg.a\n",
            },
            [["pkg.a", "pkg.b"]],
            id="dodged-inside-a-method",
        ),
        pytest.param(
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "from pkg.b import x\n",
                "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import y\nx = 1\n",
            },
            [],
            id="type-checking-only",
        ),
        pytest.param(
            {
                "pkg/__init__.py": "",
                "pkg/sub/__init__.py": "from .c import z\n",
                "pkg/sub/c.py": "from ..a import y\n",
                "pkg/a.py": "y = 1\ndef f():\n    from pkg.sub import z\n",
            },
            [["pkg.a", "pkg.sub", "pkg.sub.c"]],
            id="through-a-package",
        ),
        pytest.param(
            {
                "pkg/__init__.py": "from . import a\n",
                "pkg/a.py": "import json\nfrom pkg.b import x\n",
                "pkg/b.py": "x = 1\n",
            },
            [],
            id="parent-package-not-an-edge",
        ),
    ],
)
def test_the_graph_finds_cycles_however_the_import_is_written(
    tmp_path: Path, files: dict[str, str], expected: list[list[str]]
) -> None:
    assert cycles(_package(tmp_path, files)) == expected


def test_a_cycle_is_described_by_its_imports(tmp_path: Path) -> None:
    graph = _package(
        tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "import pkg.b\n", "pkg/b.py": "def f():\n    import pkg.a\n"}
    )
    assert describe(cycles(graph)[0], graph) == (
        "pkg.a <-> pkg.b\n  pkg.a -> pkg.b  (pkg/a.py:1, at module level)\n  pkg.b -> pkg.a  (pkg/b.py:2, in f())"
    )
