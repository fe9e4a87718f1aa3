"""The fenced code blocks of README.md and docs/*.md, for the docs tests.

A block whose info string is ``python``, ``bash`` or ``sh`` is code and runs in the tests; any other (``text``, none)
is prose. An HTML comment ``<!-- docs-test: skip: <reason> -->`` on the line before a code block skips it with that
reason (set-up commands, the real service).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES: tuple[Path, ...] = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
CODE_LANGUAGES = ("python", "bash", "sh")
_SKIP = re.compile(r"<!--\s*docs-test:\s*skip:\s*(?P<reason>.*?)\s*-->")
_FENCE = re.compile(r"^```(?P<info>[\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip_reason: str | None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        skip = _SKIP.search(previous)
        found.append(
            Block(path, index + 1, opening["info"], "\n".join(lines[index + 1 : end]) + "\n",
                  skip["reason"] if skip else None)
        )
        index = end + 1
    return found


def code_blocks() -> list[Block]:
    return [block for path in DOC_FILES for block in blocks(path) if block.language in CODE_LANGUAGES]
