"""What the CLI prints when things go right: --json is one JSON document on stdout whatever the option order,
tables show what the server knows, samples read as text, connection failures are visible at once."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tinkex
from pristine_transport.policy import Deadlines
from tinkex.cli import main
from tinkex.testing import LocalServer
from tinkex.testing.config import DEFAULT_BASE_MODELS

KEY = "tml-cli-output-key"
MODEL = "tinkex/fake-tiny"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(base_models=(MODEL, *DEFAULT_BASE_MODELS)) as running:
        client = tinkex.Client(api_key=KEY, base_url=running.base_url)
        training = client.create_lora_training_client(MODEL, rank=4)
        training.save_weights_for_sampler("only-sampler").result()
        running.weights_path = training.save_state("w1").result().path  # type: ignore[attr-defined]
        training2 = client.create_lora_training_client(MODEL, rank=4)
        training2.save_weights_for_sampler("only-sampler").result()
        client.close()
        yield running


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TINKER_API_KEY", "TINKER_BASE_URL", "TINKEX_CLI_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def test_global_options_before_the_subcommand_demo_json_on_stdout(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tinkex.cli", "--json", "demo", "--steps", "2", "--samples", "1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout: the step lines and the summary went to stderr
    assert report["base_model"] == MODEL and len(report["losses"]) == 2 and report["samples"]
    assert "training" in done.stderr and "step 2: loss" in done.stderr
    assert "\r" not in done.stderr  # stderr is a pipe here: no progress bar redrawing over the lines


def test_demo_uses_the_given_server_and_key(server: LocalServer, capsys: pytest.CaptureFixture[str]) -> None:
    before = len(server.ledger.received("create_session"))
    code = main(["--api-key", KEY, "demo", "--base-url", server.base_url, "--steps", "2", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"against the server at {server.base_url}" in out and MODEL in out
    assert len(server.ledger.received("create_session")) == before + 1  # it trained here, not on an embedded server


def test_run_list_shows_a_sampler_checkpoint(server: LocalServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "list", "--base-url", server.base_url, "--api-key", KEY]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert any("sampler_weights/only-sampler" in row for row in rows), rows


def test_sample_text_has_no_special_tokens(server: LocalServer, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sample", "--base-model", MODEL, "--prompt", "the quick", "--max-tokens", "8", "--json"]
    assert main([*argv, "--base-url", server.base_url, "--api-key", KEY]) == 0
    samples = json.loads(capsys.readouterr().out)["samples"]
    assert samples and all("<|" not in sample["text"] for sample in samples)


def test_missing_key_and_existing_download_speak_cli(
    server: LocalServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["run", "list", "--base-url", server.base_url]) == 2
    err = capsys.readouterr().err
    assert "--api-key" in err and "tinkex.Client(" not in err
    download = ["checkpoint", "download", server.weights_path, "--dest", str(tmp_path)]  # type: ignore[attr-defined]
    download += ["--base-url", server.base_url, "--api-key", KEY]
    assert main(download) == 0
    capsys.readouterr()
    assert main(download) == 2
    err = capsys.readouterr().err
    assert "pass --force" in err and "force=True" not in err


def test_first_failed_connection_warns_at_once(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = tinkex.Client(api_key=KEY, base_url=f"http://127.0.0.1:{port}", deadlines=Deadlines(no_progress_s=1.5))
    with caplog.at_level(logging.WARNING, logger="pristine_transport.retry"), pytest.raises(Exception) as failed:
        client.get_server_capabilities()
    client.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, caplog.text
    first = warnings[0]
    assert f"127.0.0.1:{port}" in first and f"is the server running at http://127.0.0.1:{port}?" in first
    assert "for up to 1.5 s" in first and "ssl" not in first
    assert len([w for w in warnings if "cannot connect" in w]) == 1, warnings  # once, not per re-send or poll
    assert failed.value is not None


def test_info_values_align_one_column_past_the_longest_label(
    server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path: str = server.weights_path  # type: ignore[attr-defined]
    options = ["--base-url", server.base_url, "--api-key", KEY]
    assert main(["checkpoint", "info", path, *options]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"path:       {path}" and "lora rank:  4" in lines, lines  # longest: "base model:"
    assert main(["run", "info", path.split("/")[2], *options]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "lora rank:    4" in lines and any(line.startswith("last request: ") for line in lines), lines
