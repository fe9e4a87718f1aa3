"""Point the repository's citations of reference pages outside it at the pages inside it.

The code used to cite the protocol reference, the design notes and the notes on the Elixir ports, which live
outside the repository. Their content, in our words and with the same section numbers, is now ``docs/wire.md``
and ``docs/design.md``; this tool rewrites the citations:

- the protocol reference (and a bare "wire spec" before a section sign) -> ``docs/wire.md`` (same section);
- the design notes -> ``docs/design.md`` (same section names);
- the Elixir ports' section on recovery -> ``docs/design.md``, "Recovery of corrupted runs";
- the users' reports, item N -> ``docs/design.md``, "What users ran into" #N (same numbers);
- any ``../shared/spec/`` prefix is dropped.

In Python files only comments and docstrings change (never code or other string literals); Markdown files change
wherever the text cites. Citations it cannot map (another section of the Elixir notes) are listed, unchanged.

Usage::

    python tools/cite_docs.py [--root DIR]            # show what would change (unified diff), change nothing
    python tools/cite_docs.py [--root DIR] --write    # rewrite the files
    python tools/cite_docs.py [--root DIR] --check    # exit 1 if anything would change (for CI)

``tests/docs/test_docs_citations.py`` fails while any citation of a page outside the repository is left.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import io
import re
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Rewrite", "main", "rewrite_file", "rewrite_markdown", "rewrite_python", "rewrite_text", "scanned_files"]

ROOT = Path(__file__).resolve().parents[1]
PYTHON_DIRS = ("tinkex", "pristine_transport", "tests", "tools", "bench")
MARKDOWN_FILES = ("README.md", "docs/*.md", "bench/*.md", "tests/**/*.md", "tinkex/**/*.md")
SKIPPED_DIRS = frozenset({".venv", "venv", "__pycache__", ".git", "node_modules", "site-packages", ".mypy_cache"})
SELF = Path(__file__).resolve()

_PREFIX = r"(?:\.\./)*(?:shared/spec/)?"
_WIRE = re.compile(_PREFIX + r"tinker-wire\.md")
_WIRE_SPEC = re.compile(r"\b(?:the )?wire spec(?= \(?§)")
_DESIGN = re.compile(r"(?<![\w/.-])" + _PREFIX + r"design\.md")
_USERS = re.compile(r"(?<![\w/.-])(`?)" + _PREFIX + r"users\.md\1(?P<item>\s*#\d+)?")
_ELIXIR = re.compile(r"(`?)" + _PREFIX + r"elixir-ports\.md\1(?P<section>\s*§\s*\d+(?:\.\d+)*)?")

ELIXIR_SECTIONS = {"2.12": ("docs/design.md", "Recovery of corrupted runs")}
"""Sections of the Elixir notes that a page of ours now covers: section -> (page, section name)."""


@dataclass(frozen=True)
class Rewrite:
    text: str
    unmapped: tuple[str, ...] = ()
    """Citations left as they were because no page of ours covers them."""


def rewrite_text(text: str) -> Rewrite:
    """Every citation in one piece of prose (a comment, a docstring, a Markdown file) pointed inside the repo."""
    unmapped: list[str] = []

    def elixir(match: re.Match[str]) -> str:
        section = (match["section"] or "").replace("§", "").strip()
        if section not in ELIXIR_SECTIONS:
            unmapped.append(match[0].strip())
            return match[0]
        page, name = ELIXIR_SECTIONS[section]
        tick = match[1]
        return f'{tick}{page}{tick}, "{name}"'

    def users(match: re.Match[str]) -> str:
        tick = match[1]
        return f'{tick}docs/design.md{tick}, "What users ran into"{match["item"] or ""}'

    text = _WIRE.sub("docs/wire.md", text)
    text = _WIRE_SPEC.sub("docs/wire.md", text)
    text = _DESIGN.sub("docs/design.md", text)
    text = _ELIXIR.sub(elixir, text)
    text = _USERS.sub(users, text)
    return Rewrite(text, tuple(unmapped))


def _docstring_starts(source: str) -> set[tuple[int, int]]:
    """(line, column in characters) where each docstring literal starts: module, class and function docstrings,
    and the attribute docstrings (a string statement right after an assignment) the code also uses."""
    tree = ast.parse(source)
    lines = source.splitlines()
    starts: set[tuple[int, int]] = set()

    def mark(node: ast.stmt) -> None:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            line = lines[node.lineno - 1]
            column = len(line.encode("utf-8")[: node.col_offset].decode("utf-8", "replace"))
            starts.add((node.lineno, column))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for index, statement in enumerate(body):
                previous = body[index - 1] if index else None
                if index == 0 or isinstance(previous, (ast.Assign, ast.AnnAssign)):
                    mark(statement)
    return starts


def rewrite_python(source: str) -> Rewrite:
    """The source with citations rewritten in its comments and docstrings; code and other strings untouched."""
    docstrings = _docstring_starts(source)
    line_offsets = [0]
    for line in source.splitlines(keepends=True):
        line_offsets.append(line_offsets[-1] + len(line))
    edits: list[tuple[int, int, str]] = []
    unmapped: list[str] = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        is_comment = token.type == tokenize.COMMENT
        is_docstring = token.type == tokenize.STRING and token.start in docstrings
        if not (is_comment or is_docstring):
            continue
        rewritten = rewrite_text(token.string)
        unmapped.extend(rewritten.unmapped)
        if rewritten.text != token.string:
            start = line_offsets[token.start[0] - 1] + token.start[1]
            end = line_offsets[token.end[0] - 1] + token.end[1]
            edits.append((start, end, rewritten.text))
    for start, end, text in reversed(edits):
        source = source[:start] + text + source[end:]
    return Rewrite(source, tuple(unmapped))


def rewrite_markdown(text: str) -> Rewrite:
    return rewrite_text(text)


def rewrite_file(path: Path) -> Rewrite:
    text = path.read_text(encoding="utf-8")
    return rewrite_python(text) if path.suffix == ".py" else rewrite_markdown(text)


def _walk(directory: Path, pattern: str) -> Iterator[Path]:
    for path in sorted(directory.glob(pattern)):
        if path.is_file() and not SKIPPED_DIRS.intersection(path.relative_to(directory).parts):
            yield path


def scanned_files(root: Path) -> list[Path]:
    """The Python files of the packages, tests, tools and benchmarks, and the Markdown pages (no virtualenvs)."""
    found: list[Path] = []
    for name in PYTHON_DIRS:
        if (root / name).is_dir():
            found.extend(_walk(root / name, "**/*.py"))
    for pattern in MARKDOWN_FILES:
        found.extend(_walk(root, pattern))
    unique = dict.fromkeys(path for path in found if path.resolve() != SELF)
    return sorted(unique)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this tool's)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the files")
    mode.add_argument("--check", action="store_true", help="exit 1 if anything would change")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    changed: list[Path] = []
    for path in scanned_files(root):
        before = path.read_text(encoding="utf-8")
        result = rewrite_file(path)
        name = str(path.relative_to(root))
        for citation in result.unmapped:
            print(f"{name}: not mapped, left as it is: {citation}", file=sys.stderr)
        if result.text == before:
            continue
        changed.append(path)
        if args.write:
            path.write_text(result.text, encoding="utf-8")
        elif not args.check:
            sys.stdout.writelines(
                difflib.unified_diff(
                    before.splitlines(keepends=True), result.text.splitlines(keepends=True), f"a/{name}", f"b/{name}"
                )
            )
    verb = "rewrote" if args.write else "would rewrite"
    print(f"{verb} {len(changed)} file(s)", file=sys.stderr)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
