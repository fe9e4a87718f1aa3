"""``python -m tinkex.demo`` is ``tinkex demo``: the package's ``__main__`` hands its arguments to the CLI, which
parses the shared options too and reports a bad option in one line with exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tinkex.demo", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_a_bad_demo_option_is_the_cli_usage_error() -> None:
    done = _run("--steps", "0", "--json")  # --json: a shared option of the CLI, accepted after the subcommand
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "error: --steps must be >= 1, got 0\n")


def test_help_is_the_cli_demo_help() -> None:
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: tinkex demo "), done.stdout[:200]
    assert "--base-url" in done.stdout and "--steps STEPS" in done.stdout
