"""The command line a restart test drives: ``--faults FILE`` (rules as JSON) and ``--base-model``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tinkex.testing import FaultRule
from tinkex.testing.faults import fault_rules_from_json

from .conftest import HEADERS


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], []),
        ([{"endpoint": "asample", "status": 429, "rate": 0.1}], [FaultRule(endpoint="asample", status=429, rate=0.1)]),
        (
            [{"endpoint": "optim_step", "status": 400, "raw_body": ""}],
            [FaultRule(endpoint="optim_step", status=400, body=b"")],
        ),
        ([{"kind": "try_again", "endpoint": "retrieve_future", "count": 2}], [FaultRule.try_again(count=2)]),
    ],
)
def test_fault_rules_from_json(data: Any, expected: list[FaultRule]) -> None:
    assert fault_rules_from_json(data) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"endpoint": "asample"}, "must be a JSON list"),
        (["asample"], "faults[0] must be an object"),
        ([{"endpoint": "asample", "status": 500, "sometimes": True}], "faults[0]: unknown field(s) sometimes"),
        (
            [{"delay": 0.1}, {"endpoint": "asample", "rate": 2.0, "status": 500}],
            "faults[1]: FaultRule.rate must be within [0, 1]",
        ),
    ],
)
def test_fault_rules_from_json_names_what_is_wrong(data: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        fault_rules_from_json(data)
    assert message in str(caught.value)


def test_command_line_serves_the_faults_and_base_models_it_is_given(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"endpoint": "get_server_capabilities", "status": 503, "count": 1}]))
    process = subprocess.Popen(
        [sys.executable, "-m", "tinkex.testing", "--faults", str(faults), "--base-model", "tinkex/fake-tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        with httpx.Client(base_url=base_url, headers=HEADERS) as http:
            assert http.get("/api/v1/get_server_capabilities").status_code == 503
            models = http.get("/api/v1/get_server_capabilities").json()["supported_models"]
        assert [m["model_name"] for m in models] == ["tinkex/fake-tiny"]
    finally:
        process.kill()
        process.communicate(timeout=10)


def test_command_line_refuses_a_bad_faults_file(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text('[{"endpoint": "asample"}]')
    done = subprocess.run(
        [sys.executable, "-m", "tinkex.testing", "--faults", str(faults)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 2
    assert "faults[0]: FaultRule(kind='respond') needs status" in done.stderr
