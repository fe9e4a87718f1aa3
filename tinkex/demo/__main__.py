"""``python -m tinkex.demo``: the same as ``tinkex demo``, run by the command line (:mod:`tinkex.cli`), which
parses the shared options too and reports errors in one line.

The entry point stands apart from :mod:`tinkex.demo` because the command line imports the demo: the demo importing
the command line back would make the two depend on each other.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..cli import main as cli_main

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``tinkex demo`` with ``argv`` (default: this process's arguments)."""
    return cli_main(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
