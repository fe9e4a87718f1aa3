"""``tinkex exec -- PROGRAM ...`` runs a program with tinkex.compat installed in every Python process it starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tinkex.compat import SERVED_TINKER_VERSION
from tinkex.compat.launch import BOOTSTRAP_DIR, compat_environment
from tinkex.testing import LocalServer

TRAIN_038 = Path(__file__).resolve().parent / "programs" / "train_tinker_038.py"
API_KEY = "tml-compat-exec"


def _tinkex_command() -> list[str]:
    """The installed ``tinkex`` entry point next to this Python, else the same main() through ``-c``."""
    script = Path(sys.executable).with_name("tinkex")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from tinkex.cli import main; sys.exit(main())"]


def _exec(
    *program: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_tinkex_command(), "exec", "--", *program],
        cwd=cwd,
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("pythonpath", "expected"),
    [
        (None, [BOOTSTRAP_DIR]),
        ("", [BOOTSTRAP_DIR]),
        ("/a", [BOOTSTRAP_DIR, "/a"]),
        (f"/a{os.pathsep}/b", [BOOTSTRAP_DIR, "/a", "/b"]),
        # Applied twice (tinkex exec inside tinkex exec): still once, still first.
        (f"/a{os.pathsep}{BOOTSTRAP_DIR}", [BOOTSTRAP_DIR, "/a"]),
    ],
)
def test_compat_environment_puts_the_bootstrap_first_once(pythonpath: str | None, expected: list[str]) -> None:
    environ = {"HOME": "/root"} if pythonpath is None else {"HOME": "/root", "PYTHONPATH": pythonpath}
    before = dict(environ)
    result = compat_environment(environ)
    assert result["PYTHONPATH"].split(os.pathsep) == expected
    assert result["HOME"] == "/root"
    assert environ == before  # a new mapping; the caller's environment is untouched


def test_exec_runs_the_program_with_import_tinker_served_by_tinkex(tmp_path: Path) -> None:
    program = (
        "import sys, importlib.metadata, tinker, tinkex.compat; "
        "print(type(tinker).__name__, tinker.__version__, importlib.metadata.version('tinker'), sys.argv[1:]); "
        "sys.exit(7)"
    )
    completed = _exec(sys.executable, "-c", program, "--steps", "3", cwd=tmp_path)
    assert completed.returncode == 7, completed.stderr  # the program's own exit status
    assert completed.stdout.split(None, 3) == [
        "TinkerModule",
        SERVED_TINKER_VERSION,
        SERVED_TINKER_VERSION,
        "['--steps', '3']\n",
    ]


def _fake_official_package(root: Path) -> Path:
    """An installed "official" tinker (package plus dist-info) in its own site directory."""
    site = root / "site"
    (site / "tinker").mkdir(parents=True)
    (site / "tinker" / "__init__.py").write_text("__version__ = '0.38.0-official'\nOFFICIAL = True\n")
    (site / "tinker-0.38.0.dist-info").mkdir()
    (site / "tinker-0.38.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: tinker\nVersion: 0.38.0\n")
    return site


def test_with_the_official_package_installed_too_tinkex_wins_under_exec(tmp_path: Path) -> None:
    site = _fake_official_package(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = "import tinker; print(getattr(tinker, 'OFFICIAL', False), tinker.__version__)"
    plain = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert plain.stdout.split() == ["True", "0.38.0-official"], plain.stderr  # without the hook: the official one
    hooked = _exec(sys.executable, "-c", probe, cwd=tmp_path, env=env)
    assert hooked.returncode == 0, hooked.stderr
    assert hooked.stdout.split() == ["False", SERVED_TINKER_VERSION]  # under tinkex exec: tinkex, every time


def test_python_subprocesses_of_the_program_get_the_hook_too(tmp_path: Path) -> None:
    program = textwrap.dedent(
        """
        import multiprocessing

        def version(_):
            import tinker
            return type(tinker).__name__, tinker.__version__

        if __name__ == "__main__":
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                print(*pool.map(version, [0])[0])
        """
    )
    (tmp_path / "spawn.py").write_text(program)
    completed = _exec(sys.executable, "spawn.py", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["TinkerModule", SERVED_TINKER_VERSION]


def test_a_sitecustomize_the_bootstrap_shadows_still_runs(tmp_path: Path) -> None:
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "sitecustomize.py").write_text("import builtins\nbuiltins.OWN_SITECUSTOMIZE = True\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "own")}
    completed = _exec(
        sys.executable, "-c", "import tinker; print(OWN_SITECUSTOMIZE, tinker.__version__)", cwd=tmp_path, env=env
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["True", SERVED_TINKER_VERSION]


def test_a_python_without_tinkex_is_refused_with_a_message(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare_python = tmp_path / "bare" / "bin" / "python"
    completed = _exec(str(bare_python), "-c", "print('ran')", cwd=tmp_path)
    assert completed.returncode == 2
    assert "ran" not in completed.stdout
    assert completed.stderr.startswith(f"error: tinkex exec: {bare_python} cannot import tinkex")
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    ("arguments", "status", "stream", "text"),
    [
        ([], 2, "stderr", "usage: tinkex exec"),
        (["--"], 2, "stderr", "usage: tinkex exec"),
        (["--help"], 0, "stdout", "usage: tinkex exec"),
        (["--", "no-such-program-xyz"], 2, "stderr", "error: tinkex exec: program not found: no-such-program-xyz"),
    ],
)
def test_exec_usage_errors(tmp_path: Path, arguments: list[str], status: int, stream: str, text: str) -> None:
    completed = subprocess.run(
        [*_tinkex_command(), "exec", *arguments], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == status
    assert text in getattr(completed, stream)


def test_exec_is_listed_in_the_cli_help(tmp_path: Path) -> None:
    completed = subprocess.run([*_tinkex_command(), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert "exec" in completed.stdout


def test_a_training_script_written_for_official_0_38_runs_unchanged_under_exec(tmp_path: Path) -> None:
    """tests/tinkex/compat/programs/train_tinker_038.py uses 0.38's new forms: awaited creation futures, sequence ids on
    sampled sequences, provenance spans naming them, and close(status)."""
    # The program's prompt is BERT token ids (up to 7592): a server vocabulary that holds them.
    with LocalServer(api_key=API_KEY, vocab_size=30522) as server:
        env = {**os.environ, "TINKER_API_KEY": API_KEY, "TINKER_BASE_URL": server.base_url}
        completed = _exec(sys.executable, str(TRAIN_038), "--steps", "3", "--group-size", "4", cwd=tmp_path, env=env)
        executions = server.ledger.executions()
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    steps, closing = lines[:-1], lines[-1]
    assert [step["step"] for step in steps] == [0, 1, 2]
    sequence_ids = [sequence_id for step in steps for sequence_id in step["sequence_ids"]]
    assert len(sequence_ids) == 12 and len(set(sequence_ids)) == 12 and all(sequence_ids)
    assert all(0.0 <= step["mean_reward"] <= 1.0 for step in steps)
    assert closing == {"closed": "success", "tinker_version": SERVED_TINKER_VERSION}

    ran = [execution.endpoint for execution in executions if execution.outcome == "ok"]
    assert ran.count("forward_backward") == 3 and ran.count("optim_step") == 3 and ran.count("asample") == 3
    assert ran.count("finish_session") == 1  # close(status) finished the session on the server
