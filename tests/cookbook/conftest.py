"""Shared by the cookbook tests: where the cookbook venv is, how to run a program in it, and a report section.

The tests run tinker-cookbook 0.6.1 in a venv of its own (tests/cookbook/setup_venv.sh makes it; the README's test
command and .ci/run call that script). Its location: ``$TINKEX_COOKBOOK_VENV``, else ``tests/cookbook/.venv``.
Without it the tests skip, naming the command that creates it, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SETUP_COMMAND = "bash tests/cookbook/setup_venv.sh"
_REPORT = pytest.StashKey[list[str]]()


def cookbook_venv_path() -> Path:
    return Path(os.environ.get("TINKEX_COOKBOOK_VENV") or HERE / ".venv")


@functools.cache
def network_isolation_prefix() -> tuple[str, ...] | None:
    """A command prefix that runs a program in a network namespace of its own, where only loopback is up, so that
    any attempt to reach the internet fails at once; ``None`` where this machine does not allow it (no ``unshare``
    or ``ip``, or no privilege to make a namespace)."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        return None
    prefix = (unshare, "--net", "sh", "-c", f'"{ip}" link set lo up && exec "$@"', "sh")
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if probe.returncode == 0 else None


def offline_note() -> str:
    if network_isolation_prefix() is not None:
        return "in a network namespace with only loopback up"
    return "network not isolated here (no unshare); Hugging Face offline mode only"


@dataclass(frozen=True)
class CookbookVenv:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def tinkex(self) -> Path:
        return self.path / "bin" / "tinkex"

    def run(
        self, argv: Sequence[str | Path], *, timeout: float, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` offline: in a network namespace with only loopback where the machine allows it, and with the
        Hugging Face libraries told not to reach the Hub, so anything that would need the internet fails at once."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        env.pop("PYTHONPATH", None)  # the venv has this checkout of tinkex installed; nothing else may leak in
        command = [*(network_isolation_prefix() or ()), *(str(part) for part in argv)]
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)

    def run_for_json(self, argv: Sequence[str | Path], *, marker: str, what: str, timeout: float) -> dict:
        """Run ``argv``; it must exit 0 and print a ``marker`` line, whose JSON is returned. On failure the
        assertion message carries the end of the program's output, so the reason shows in the test report."""
        completed = self.run(argv, timeout=timeout)
        output = completed.stdout + completed.stderr
        assert completed.returncode == 0, (
            f"{what} failed (exit {completed.returncode}); its last output:\n{tail(output)}"
        )
        lines = [line for line in completed.stdout.splitlines() if line.startswith(marker)]
        assert lines, f"{what} printed no {marker!r} line; its last output:\n{tail(output)}"
        return json.loads(lines[-1][len(marker) :])


@pytest.fixture(scope="session")
def cookbook_venv() -> CookbookVenv:
    venv = CookbookVenv(cookbook_venv_path())
    problem = None
    if not venv.python.exists():
        problem = f"the cookbook venv is missing ({venv.path})"
    elif not (venv.path / ".tinkex-cookbook-stamp").exists():
        problem = f"the cookbook venv at {venv.path} is incomplete (its set-up did not finish)"
    if problem is not None:
        message = f"{problem}; create it with `{SETUP_COMMAND}` (or set TINKEX_COOKBOOK_VENV)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return venv


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def offline() -> str:
    """How the cookbook programs are kept offline on this machine (for the report)."""
    return offline_note()


@pytest.fixture
def cookbook_report(request: pytest.FixtureRequest) -> list[str]:
    """Lines appended here are printed in a "tinker-cookbook on tinkex" section at the end of the run, so the
    figures the cookbook's loops logged show in CI's output even when every test passes."""
    return request.config.stash.setdefault(_REPORT, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_REPORT, [])
    if lines:
        terminalreporter.section("tinker-cookbook on tinkex")
        for line in lines:
            terminalreporter.write_line(line)
