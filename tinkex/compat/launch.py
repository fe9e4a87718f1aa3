"""``tinkex exec``: run a program with tinkex.compat installed in every Python process it starts.

Like ``opentelemetry-instrument``, it prepends a directory holding a ``sitecustomize`` module to ``PYTHONPATH`` and
then replaces itself with the program, so signals, standard streams and the exit status are the program's own.
Python subprocesses inherit the environment, so they get the hook too (multiprocessing workers included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["BOOTSTRAP_DIR", "compat_environment", "exec_program"]

BOOTSTRAP_DIR = str(Path(__file__).with_name("bootstrap"))

EXEC_USAGE = """usage: tinkex exec [--] PROGRAM [ARGS...]

Run PROGRAM with tinkex.compat installed in every Python process it starts: `import tinker` and
`import tinker.<module>` resolve to tinkex (even if the official tinker package is installed), and
tinker.__version__ reports the official SDK version whose API tinkex serves.

example: tinkex exec -- python train.py --steps 10"""


def compat_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with the bootstrap directory first on ``PYTHONPATH`` (once, however often it is applied)."""
    entries = [entry for entry in environ.get("PYTHONPATH", "").split(os.pathsep) if entry and entry != BOOTSTRAP_DIR]
    return {**environ, "PYTHONPATH": os.pathsep.join([BOOTSTRAP_DIR, *entries])}


def exec_program(argv: Sequence[str]) -> int:
    """Run ``argv`` (after an optional ``--``) under the hook. Returns only on a usage error or on Windows."""
    arguments = list(argv)
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    if not arguments or arguments[0] in {"-h", "--help"}:
        print(EXEC_USAGE, file=sys.stdout if arguments else sys.stderr)
        return 0 if arguments else 2
    program = shutil.which(arguments[0])
    if program is None:
        print(f"error: tinkex exec: program not found: {arguments[0]}", file=sys.stderr)
        return 2
    environment = compat_environment(os.environ)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name != "posix":  # no exec(): run it as a child and hand back its status
        return subprocess.call([program, *arguments[1:]], env=environment)
    # argv[0] is the resolved path: a venv's python finds its environment from it.
    os.execve(program, [program, *arguments[1:]], environment)
    raise AssertionError("unreachable: execve returns only by raising")  # pragma: no cover
