"""Every subcommand of the ``tinkex`` CLI with bad inputs: one ``error: …`` line on stderr, a non-zero exit, no
traceback, nothing on stdout; usage errors exit 2, failures of the server or the network exit 1."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinkex.cli import main
from tinkex.testing import LocalServer
from tinkex.testing.config import DEFAULT_BASE_MODELS

KEY = "tml-cli-bad-inputs-key"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(base_models=("tinkex/fake-tiny", *DEFAULT_BASE_MODELS)) as running:
        yield running


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TINKER_API_KEY", "TINKER_BASE_URL", "TINKEX_CLI_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# argv (SERVER = the local server's options), exit status, words the one line must contain
USAGE = 2
FAILED = 1
CASES: list[tuple[list[str], int, list[str]]] = [
    ([], USAGE, ["COMMAND", "tinkex --help"]),
    (["frobnicate"], USAGE, ["invalid choice"]),
    (["--timeout", "0", "version"], USAGE, ["--timeout", "> 0"]),
    (["--timeout", "soon", "version"], USAGE, ["--timeout"]),
    (["checkpoint"], USAGE, ["ACTION"]),
    (["checkpoint", "list", "--limit", "-1"], USAGE, ["--limit", ">= 0"]),
    (["checkpoint", "info", "not-a-path"], USAGE, ["tinker://"]),
    (["checkpoint", "download", "tinker://"], USAGE, ["tinker://"]),
    (["checkpoint", "delete", "--yes", "nope"], USAGE, ["tinker://"]),
    (["checkpoint", "publish", "nope"], USAGE, ["tinker://"]),
    (["checkpoint", "set-ttl", "tinker://r/weights/a", "-5"], USAGE, ["TTL"]),
    (["run", "list", "--limit", "many"], USAGE, ["--limit"]),
    (["run", "list", "--access-scope", "everyone"], USAGE, ["--access-scope"]),
    (["run", "info"], USAGE, ["RUN_ID"]),
    (["sample", "--base-model", "m"], USAGE, ["--prompt", "--tokens"]),
    (["sample", "--base-model", "m", "--tokens", "a,b"], USAGE, ["token ids"]),
    (["sample", "--base-model", "m", "--tokens", "1", "--max-tokens", "0"], USAGE, ["--max-tokens", ">= 1"]),
    (["sample", "--base-model", "m", "--tokens", "1", "--num-samples", "-2"], USAGE, ["--num-samples"]),
    (["sample", "--base-model", "m", "--tokens", "1", "--temperature", "-1"], USAGE, ["--temperature", ">= 0"]),
    (["sample", "--model-path", "nope", "--tokens", "1"], USAGE, ["tinker://"]),
    (["demo", "--steps", "0"], USAGE, ["--steps", ">= 1"]),
    (["demo", "--steps", "x"], USAGE, ["--steps"]),
    (["demo", "--batch-size", "0"], USAGE, ["--batch-size", ">= 1"]),
    (["demo", "--rank", "0"], USAGE, ["--rank"]),
    (["demo", "--samples", "0"], USAGE, ["--samples"]),
    (["demo", "--max-tokens", "0"], USAGE, ["--max-tokens"]),
    (["demo", "--fault-rate", "2"], USAGE, ["--fault-rate", "0.5"]),
    (["demo", "--learning-rate", "-1"], USAGE, ["--learning-rate", "> 0"]),
    (["demo", "--learning-rate", "nan"], USAGE, ["--learning-rate"]),
    (["demo", "--base-url", "http://127.0.0.1:9"], USAGE, ["API key", "--api-key", "TINKER_API_KEY"]),
    (["exec", "--", "no-such-program-tinkex-test"], USAGE, ["not found"]),
    (["--json", "exec", "--", "no-such-program-tinkex-test"], USAGE, ["not found"]),
    (["checkpoint", "--limit", "3", "list"], USAGE, ["invalid choice"]),  # an option of `list` given to the group
    # need the server: the options are well-formed, the server or the model says no
    (["SERVER", "run", "list"], USAGE, ["--api-key", "TINKER_API_KEY"]),  # the key left out on purpose
    (["SERVER", "KEY", "checkpoint", "info", "tinker://nope:train:0/weights/x"], FAILED, ["404"]),
    (["SERVER", "KEY", "run", "info", "nope:train:0"], FAILED, ["404"]),
    (["SERVER", "KEY", "sample", "--base-model", "no/such-model", "--tokens", "1,2"], FAILED, ["no/such-model"]),
    (["SERVER", "KEY", "sample", "--base-model", "Qwen/Qwen3-8B", "--prompt", "hi"], USAGE, ["tokenizer", "--tokens"]),
    (["SERVER", "KEY", "demo", "--base-model", "Qwen/Qwen3-8B", "--steps", "1", "--no-progress"], USAGE,
     ["tokenizer", "tinkex/fake-tiny"]),
    (["SERVER", "KEY", "demo", "--base-model", "no/such-model", "--steps", "1", "--no-progress"], FAILED,
     ["no/such-model"]),
    (["SERVER", "KEY", "demo", "--fault-rate", "0.1"], USAGE, ["--fault-rate", "embedded"]),
    (["SERVER", "KEY", "demo", "--http2"], USAGE, ["--http2", "embedded"]),
    (["DOWN", "KEY", "--timeout", "1", "run", "list"], FAILED, ["Is the server running at http://127.0.0.1:"]),
    (["DOWN", "KEY", "--timeout", "1", "demo", "--steps", "1"], FAILED, ["Is the server running at"]),
]


def _argv(template: list[str], server: LocalServer) -> list[str]:
    expanded: list[str] = []
    for word in template:
        if word == "SERVER":
            expanded += ["--base-url", server.base_url]
        elif word == "DOWN":
            expanded += ["--base-url", f"http://127.0.0.1:{_closed_port()}"]
        elif word == "KEY":
            expanded += ["--api-key", KEY]
        else:
            expanded.append(word)
    return expanded


@pytest.mark.parametrize(("template", "status", "words"), CASES, ids=[" ".join(c[0]) or "(nothing)" for c in CASES])
def test_one_line_error_and_non_zero_exit(
    template: list[str], status: int, words: list[str], server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(_argv(template, server))
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and KEY not in err and "ssl:default" not in err
    assert all(word in lines[0] for word in words), lines[0]
    assert all(line.startswith("tinkex demo: training ") for line in out.splitlines()), out  # what it was doing


def test_no_traceback_from_a_real_process(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it: the cases that used to end in tracebacks."""
    for argv in (["--json", "demo", "--steps", "0"], ["--api-key", "K", "demo", "--batch-size", "0"]):
        done = subprocess.run(
            [sys.executable, "-m", "tinkex.cli", *argv], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
