"""Shared by tests/official: where the official SDK venvs are (tests/official/setup_venvs.sh makes them).

Location: ``$TINKEX_OFFICIAL_VENVS``, else ``tests/official/.venv``; the venv of version V is ``<location>/tinker-V``.
Without one the tests that need it skip, naming the command that creates it, except under ``CI=true``, where they
fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SETUP_COMMAND = "bash tests/official/setup_venvs.sh"


def _official_python(version: str) -> Path:
    root = Path(os.environ.get("TINKEX_OFFICIAL_VENVS") or HERE / ".venv")
    venv = root / f"tinker-{version}"
    python = venv / "bin" / "python"
    # The stamp is written last: a venv without it is absent or half-installed.
    if not python.exists() or not (venv / ".tinkex-official-stamp").exists():
        message = f"no venv with the official tinker {version} at {venv}: run `{SETUP_COMMAND}`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return python


@pytest.fixture(scope="session")
def official_python() -> Callable[[str], Path]:
    """``official_python("0.38.0")``: the python of that official SDK's venv (skips, or fails under CI, if absent)."""
    return _official_python


def official_environment() -> dict[str, str]:
    """This process's environment without anything that would steer the official SDK or its python."""
    return {key: value for key, value in os.environ.items() if not key.startswith(("TINKER_", "PYTHON"))}


def run_official(python: Path, script: Path, *arguments: str, base_url: str, **env: str) -> dict[str, Any]:
    """Run ``script`` (a file of this folder) with an official SDK's ``python`` against ``base_url`` (telemetry off,
    ``env`` added) and return the JSON object its last line of output prints; a failure shows its stderr."""
    environment = official_environment()
    environment.update(TINKER_BASE_URL=base_url, TINKER_TELEMETRY="0", **env)
    done = subprocess.run(
        [str(python), str(script), *arguments], env=environment, cwd=HERE, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"{python} {script.name} {' '.join(arguments)} failed:\n{done.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
