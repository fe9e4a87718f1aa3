"""``python -m tinkex.testing``: its models are listed with their tokenizers, bad options and a host it cannot
serve on end in an error line and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tinkex.testing.__main__ import SERVED_BY_DEFAULT, main


def test_list_models_names_the_offline_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-models"]) == 0
    lines = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert list(lines) == list(SERVED_BY_DEFAULT) and lines["tinkex/fake-tiny"] == "offline: tinkex-bytes"
    assert all("TINKEX_TOKENIZER" in status for model, status in lines.items() if model != "tinkex/fake-tiny")


def test_base_model_replaces_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--base-model", "a/b", "--base-model", "tinkex/x", "--list-models"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ["a/b", "tinkex/x"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--port", "99999"], "--port: expected a number between 0 and 65535"),
        (["--latency", "-1"], "--latency: expected a number >= 0"),
        (["--long-poll", "soon"], "--long-poll: expected a number"),
        (["--future-ttl", "nan"], "--future-ttl"),
        (["--sample-inflight-limit", "0"], "--sample-inflight-limit: expected a number >= 1"),
        (["--certfile", "x.pem"], "--certfile and --keyfile go together"),
        (["--client-config", '{"sample_no_retry": true}'], "--client-config: unknown flag(s) sample_no_retry; known:"),
        (["--client-config", '{"sample_no_retries": "yes"}'], "Expected `bool`, got `str` - at `$.sample_no_retries`"),
        (["--client-config", "[]"], "--client-config: expected a JSON object"),
        (["--client-config", "@/no/such/file.json"], "--client-config: [Errno 2]"),
    ],
)
def test_bad_options_are_usage_errors(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and words in err and "Traceback" not in err


def test_a_host_it_cannot_serve_on_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tinkex.testing", "--host", "no-such-host.invalid"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: cannot serve on no-such-host.invalid:0") and done.stderr.count("\n") == 1


def test_client_config_sets_the_flags_the_server_answers(tmp_path: Path) -> None:
    flags_file = tmp_path / "flags.json"
    flags_file.write_text('{"sample_use_retrieve_futures": true, "fwdbwd_max_chunk_len": 7}')
    process = subprocess.Popen(
        [sys.executable, "-m", "tinkex.testing", "--port", "0", "--client-config", f"@{flags_file}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        flags = httpx.post(f"{base_url}/api/v1/client/config", json={}, headers={"X-API-Key": "tml-cli"}).json()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert flags["sample_use_retrieve_futures"] is True and flags["fwdbwd_max_chunk_len"] == 7
    assert flags["parallel_fwdbwd_chunks"] is True  # a flag not named keeps its default
