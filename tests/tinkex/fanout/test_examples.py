"""The fan-out examples run as docs/fanout.md and the README show them, against a LocalServer they start
(``--local-server``). The Ray example joins the local Ray instance of ``test_ray_workers`` instead of starting one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
_TIMEOUT_S = 240


def _run(*arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, timeout=_TIMEOUT_S, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def test_process_rollout_example() -> None:
    out = _run("examples/process_rollout.py", "--local-server", "--workers", "4", "--start-method", "fork")
    assert [line.split(":")[0] for line in out.splitlines()[:4]] == [f"worker {w}" for w in range(4)]
    assert "one session for the parent and every worker: sess-" in out
