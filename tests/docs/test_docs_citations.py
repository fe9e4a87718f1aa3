"""Citations stay inside the repository, and the sections they cite exist.

- No Python file of the packages, tests, tools or benchmarks, and no Markdown page, cites a reference page that is
  not in the repository (the protocol reference, the design notes and the Elixir-port notes of the shared spec
  folder). Their content is ``docs/wire.md`` (same section numbers) and ``docs/design.md`` (same section names).
  **Until ``tools/cite_docs.py --write`` has been run** over the code written before those pages existed, the
  first test fails and names every file and line; the tool fixes them all (comments and docstrings only).
- Every ``docs/wire.md §N`` cited names a section of docs/wire.md, and every ``docs/design.md, "name"`` a section
  of docs/design.md (checked for the old spellings too, so the tool's rewrite cannot produce a dangling one).
- The tool itself rewrites comments and docstrings only, by a table.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from doc_blocks import ROOT  # type: ignore[import-not-found]

# The patterns spell the outside names in pieces, so this file does not cite them itself.
_OUTSIDE = re.compile(
    r"tinker-wire\.md|elixir-ports\.md|(?<![\w/.-])users\.md|(?<![\w/.-])style\.md|shared/spec/|\.\./shared/|\bwire spec\b"
    r"|(?<![\w/.-])design\.md"
)
_WIRE_CITATION = re.compile(
    r"(?:docs/wire\.md|tinker-wire\.md|\bwire spec\b)`*[^§\n]{0,12}((?:§\s*[\d.]+[^\n§;]{0,8})+)"
)
_SECTION_NUMBER = re.compile(r"§\s*(\d+(?:\.\d+)*)(?:\s*[-–]\s*(\d+(?:\.\d+)*))?")
_DESIGN_CITATION = re.compile(r"design\.md`*,?\s*\"([^\"]+)\"")
_HEADING = re.compile(r"^#{2,4}\s+(?:(\d+(?:\.\d+)*)\.?\s+)?(.+?)\s*$")


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cite_docs", ROOT / "tools" / "cite_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cite_docs", module)
    spec.loader.exec_module(module)
    return module


TOOL = _load_tool()
FILES = [path for path in TOOL.scanned_files(ROOT) if path.name != Path(__file__).name]


def _headings(page: str) -> tuple[set[str], set[str]]:
    """(section numbers, lowercased section titles) of a docs page."""
    numbers: set[str] = set()
    titles: set[str] = set()
    for line in (ROOT / page).read_text(encoding="utf-8").splitlines():
        heading = _HEADING.match(line)
        if heading:
            if heading[1]:
                numbers.add(heading[1])
            titles.add(heading[2].lower())
    return numbers, titles


def test_no_citation_of_a_page_outside_the_repository() -> None:
    """Fails until the lead runs ``.venv/bin/python tools/cite_docs.py --write`` (then it must stay green)."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}"
        for path in FILES
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _OUTSIDE.search(line)
    ]
    assert not found, (
        f"{len(found)} citation(s) of pages outside the repository; run `.venv/bin/python tools/cite_docs.py "
        "--write` (docs/wire.md and docs/design.md hold the same sections):\n" + "\n".join(found)
    )


def _wire_citations() -> list[tuple[str, str]]:
    cited: list[tuple[str, str]] = []
    for path in FILES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for citation in _WIRE_CITATION.finditer(line):
                for section in _SECTION_NUMBER.finditer(citation[1]):
                    for value in filter(None, (section[1], section[2])):
                        cited.append((f"{path.relative_to(ROOT)}:{number}", value.rstrip(".")))
    return cited


WIRE_CITATIONS = _wire_citations()


def test_cited_wire_sections_exist() -> None:
    numbers, _ = _headings("docs/wire.md")
    missing = [f"{where}: §{section}" for where, section in WIRE_CITATIONS if section not in numbers]
    assert not missing, "docs/wire.md has no such section:\n" + "\n".join(missing)
    assert len(WIRE_CITATIONS) > 20  # the extraction works: the code cites many sections


def test_cited_design_sections_exist() -> None:
    _, titles = _headings("docs/design.md")
    cited = [
        (f"{path.relative_to(ROOT)}:{number}", found[1])
        for path in FILES
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for found in _DESIGN_CITATION.finditer(line)
    ]
    missing = [f"{where}: {name!r}" for where, name in cited if name.lower() not in titles]
    assert not missing, "docs/design.md has no such section:\n" + "\n".join(missing)
    assert cited  # the code cites at least "exactly once"


_OLD_WIRE = "tinker" + "-wire.md"
_OLD_DESIGN = "design" + ".md"
_OLD_ELIXIR = "elixir" + "-ports.md"
_OLD_USERS = "users" + ".md"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (f"# see {_OLD_WIRE} §7\nx = 1\n", "# see docs/wire.md §7\nx = 1\n"),
        (f'"""Types (`{_OLD_WIRE}` §1.6)."""\n', '"""Types (`docs/wire.md` §1.6)."""\n'),
        (
            f'def f():\n    """Rules ({_OLD_DESIGN}, "exactly once")."""\n',
            'def f():\n    """Rules (docs/design.md, "exactly once")."""\n',
        ),
        ('"""Dialects (wire spec §1.7, §13)."""\n', '"""Dialects (docs/wire.md §1.7, §13)."""\n'),
        ('"""Faults of the wire spec §12.3."""\n', '"""Faults of docs/wire.md §12.3."""\n'),
        (f'"""See ../shared/spec/{_OLD_WIRE} §2."""\n', '"""See docs/wire.md §2."""\n'),
        (
            f'"""Off (see `{_OLD_ELIXIR}` §2.12)."""\n',
            '"""Off (see `docs/design.md`, "Recovery of corrupted runs")."""\n',
        ),
        (f'X = 1\n"""Attribute doc ({_OLD_WIRE} §9)."""\n', 'X = 1\n"""Attribute doc (docs/wire.md §9)."""\n'),
        (
            f'"""Its own thread ({_OLD_USERS} #4)."""\n',
            '"""Its own thread (docs/design.md, "What users ran into" #4)."""\n',
        ),
        # code and other string literals are never touched
        (f'PAGE = "{_OLD_WIRE}"\n', f'PAGE = "{_OLD_WIRE}"\n'),
        (f'print("{_OLD_DESIGN}")  # {_OLD_DESIGN}\n', f'print("{_OLD_DESIGN}")  # docs/design.md\n'),
        # already pointing inside: unchanged (the tool is idempotent)
        ('"""(docs/wire.md §1.6, docs/design.md)."""\n', '"""(docs/wire.md §1.6, docs/design.md)."""\n'),
    ],
)
def test_the_tool_rewrites_comments_and_docstrings_only(source: str, expected: str) -> None:
    result = TOOL.rewrite_python(source)
    assert result.text == expected
    assert TOOL.rewrite_python(result.text).text == expected


def test_the_tool_reports_what_it_cannot_map() -> None:
    result = TOOL.rewrite_python(f'"""See {_OLD_ELIXIR} §2.5."""\n')
    assert result.text == f'"""See {_OLD_ELIXIR} §2.5."""\n'
    assert result.unmapped == (f"{_OLD_ELIXIR} §2.5",)


def test_the_tool_rewrites_markdown_text() -> None:
    text = f"The credentials (`{_OLD_WIRE}` §8.1); see {_OLD_DESIGN}.\n"
    assert TOOL.rewrite_markdown(text).text == "The credentials (`docs/wire.md` §8.1); see docs/design.md.\n"


def test_the_tool_skips_virtualenvs() -> None:
    assert not [path for path in TOOL.scanned_files(ROOT) if ".venv" in path.parts or "site-packages" in path.parts]
