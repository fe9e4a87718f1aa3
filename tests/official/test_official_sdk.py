"""The official SDKs, each in its own venv, run the first-user recipe (tests/official/recipe.py) against LocalServer.

0.38.0 speaks today's dialect (client/config handshake first, protobuf forward_backward bodies, protobuf results
for sample and forward/backward polls); 0.16.1 speaks JSON only. Both must pass, and the server's ledger must show
each dialect as it is: this is what proves LocalServer stands in for the hosted service for either SDK.

The venvs come from tests/official/setup_venvs.sh. Without them the tests skip, saying how to create them; under
CI=true they fail instead, so CI cannot pass without running the official SDKs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tinkex.testing import FaultRule, LocalServer
from tinkex.types import ClientConfigResponse

from .conftest import official_environment, run_official

HERE = Path(__file__).resolve().parent
RECIPE = HERE / "recipe.py"
API_KEY = "tml-official-sdk"


def run_recipe(official_python: Callable[[str], Path], version: str, server: LocalServer) -> dict[str, Any]:
    result = run_official(official_python(version), RECIPE, base_url=server.base_url, TINKER_API_KEY=API_KEY)
    assert result["sdk_version"] == version
    return result

def check_recipe_results(result: dict[str, Any]) -> None:
    outputs = result["forward_backward"]["outputs"]
    assert len(outputs) == 2 and all(len(o["logprobs"]) == 4 and len(o["elementwise_loss"]) == 4 for o in outputs)
    assert all(lp < 0 for lp in outputs[0]["logprobs"])
    assert result["forward_backward"]["metrics"]["loss:sum"] > 0
    # forward ran on the same weights as forward_backward; after optim_step and a load, the weights differ.
    assert result["forward_logprobs"] == pytest.approx(outputs[0]["logprobs"], rel=1e-6)
    assert result["after_load_logprobs"] != pytest.approx(result["forward_logprobs"], rel=1e-6)
    assert result["sampler_path"].startswith("tinker://") and "/sampler_weights/" in result["sampler_path"]
    assert [len(s["tokens"]) for s in result["sequences"]] == [4, 4]
    assert all(len(s["logprobs"]) == 4 and s["stop_reason"] == "length" for s in result["sequences"])
    logprobs = result["compute_logprobs"]
    assert len(logprobs) == 4 and logprobs[0] is None and all(lp < 0 for lp in logprobs[1:])
    assert result["state_path"].startswith("tinker://") and "/weights/" in result["state_path"]


def test_official_038_runs_the_recipe_in_todays_dialect(official_python: Callable[[str], Path]) -> None:
    with LocalServer() as server:
        result = run_recipe(official_python, "0.38.0", server)
        received = server.ledger.received()
        executed = server.ledger.executions()
    check_recipe_results(result)
    assert received[0].endpoint == "client_config" and received[0].status == 200
    assert "client_dynamic_config" in [r.endpoint for r in received]
    bodies = [r for r in received if r.endpoint == "forward_backward"]
    # forward_backward, forward (forward_only) and the forward after load_state: all protobuf bodies to
    # forward_backward; the server records the forward_only ones as the forwards they are.
    assert len(bodies) == 3 and all(r.headers["content-type"] == "application/x-protobuf" for r in bodies)
    executed_endpoints = [e.endpoint for e in executed]
    assert (executed_endpoints.count("forward_backward"), executed_endpoints.count("forward")) == (1, 2)
    polls = [r for r in received if r.endpoint == "retrieve_future"]
    assert sum(r.headers.get("accept") == "application/x-protobuf" for r in polls) == 5  # 3 fwd/bwd + 2 samples
    assert all(r.status == 200 for r in received)
    # 0.38 stamps each sampled sequence with the id from the asample future.
    assert all(s["sequence_id"] for s in result["sequences"])
    assert not server.ledger.duplicates_executed()


def test_official_0161_runs_the_recipe_in_the_json_dialect(official_python: Callable[[str], Path]) -> None:
    with LocalServer() as server:
        result = run_recipe(official_python, "0.16.1", server)
        received = server.ledger.received()
    check_recipe_results(result)
    endpoints = [r.endpoint for r in received]
    assert endpoints[0] == "create_session" and "client_config" not in endpoints
    assert all(r.headers.get("content-type") == "application/json" for r in received if r.method == "POST")
    assert all(r.headers.get("accept") != "application/x-protobuf" for r in received)
    assert all(r.status == 200 for r in received)
    assert all(s["sequence_id"] is None for s in result["sequences"])


def test_both_sdks_compute_the_same_numbers(official_python: Callable[[str], Path]) -> None:
    """The protobuf path carries float32 values, the JSON path the same values printed: the recipes agree."""
    with LocalServer() as server:
        new = run_recipe(official_python, "0.38.0", server)
    with LocalServer() as server:
        old = run_recipe(official_python, "0.16.1", server)
    assert new["forward_backward"]["outputs"][0]["logprobs"] == pytest.approx(
        old["forward_backward"]["outputs"][0]["logprobs"], rel=1e-6
    )
    assert new["compute_logprobs"][1:] == pytest.approx(old["compute_logprobs"][1:], rel=1e-6)


def test_the_handshake_answers_the_official_defaults(official_python: Callable[[str], Path]) -> None:
    """LocalServer's client/config flags are exactly 0.38.0's defaults (no flag missing, none extra)."""
    script = (
        "import json; from tinker.types.client_config_response import ClientConfigResponse as C; "
        "print(json.dumps(C().model_dump()))"
    )
    done = subprocess.run(
        [str(official_python("0.38.0")), "-c", script], env=official_environment(), capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with LocalServer() as server:
        flags = httpx.post(f"{server.base_url}/api/v1/client/config", json={}, headers={"X-API-Key": API_KEY}).json()
    assert flags == json.loads(done.stdout)


def test_official_038_rides_out_faults_on_protobuf_bodies_and_results(official_python: Callable[[str], Path]) -> None:
    """The ledger, replay cache and faults work in today's dialect too: a 500 on a protobuf forward_backward body is
    retried without running twice; try_again and 408 on protobuf-result polls are re-polled."""
    faults = [
        FaultRule(endpoint="forward_backward", status=500, count=1),
        FaultRule(endpoint="forward_backward", status=503, count=1, after_execute=True),
        FaultRule(endpoint="retrieve_future", kind="try_again", count=2, future_endpoint="forward_backward"),
        FaultRule(endpoint="retrieve_future", status=408, count=1, future_endpoint="asample"),
    ]
    with LocalServer(faults=faults) as server:
        result = run_recipe(official_python, "0.38.0", server)
        received = server.ledger.received()
        assert not server.ledger.duplicates_executed()
    check_recipe_results(result)
    bodies = [r for r in received if r.endpoint == "forward_backward"]
    assert [r.status for r in bodies[:3]] == [500, 503, 200]
    assert all(r.headers["content-type"] == "application/x-protobuf" for r in bodies)
    assert 408 in [r.status for r in received if r.endpoint == "retrieve_future"]


def _run_recipe_with_tinkex(server: LocalServer) -> dict[str, Any]:
    """The same recipe file, its ``import tinker`` served by tinkex (tinkex.compat), with no dialect setting."""
    env = {key: value for key, value in official_environment().items() if not key.startswith("TINKEX_")}
    env.update(TINKER_BASE_URL=server.base_url, TINKER_API_KEY=API_KEY, TINKER_TELEMETRY="0")
    code = f"import runpy, tinkex.compat; tinkex.compat.install(); runpy.run_path({str(RECIPE)!r}, run_name='__main__')"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=HERE, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"tinkex failed the recipe:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _dialect_features(server: LocalServer) -> dict[str, Any]:
    """What the 0.38 dialect puts on the wire, per request kind: body types and encodings, and how each future's
    result is asked for (poll request type -> Accept)."""
    received = server.ledger.received()
    return {
        "first": received[0].endpoint,
        "dynamic_config": "client_dynamic_config" in [r.endpoint for r in received],
        "training_bodies": sorted(
            {(r.endpoint, r.headers.get("content-type"), r.headers.get("content-encoding"))
             for r in received if r.endpoint in ("forward", "forward_backward")}
        ),
        "polls": sorted(
            {(r.headers.get("x-tinker-request-type"), r.headers.get("accept"))
             for r in received if r.endpoint == "retrieve_future"}
        ),
        "refused": [(r.endpoint, r.status) for r in received if r.status is None or r.status >= 400],
    }


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "zstd"])
def test_tinkex_speaks_the_038_dialect_as_official_038_does(
    official_python: Callable[[str], Path], compress: bool
) -> None:
    """Official 0.38 and tinkex (negotiating, no setting) run the same recipe against LocalServer; the dialect's
    features on the wire are the same: handshake first, dynamic config, protobuf bodies (zstd when the server's
    flag says so), protobuf results asked for the same poll types, a forward polled as Forward."""
    flags = ClientConfigResponse(proto_compress_fwdbwd=compress)
    with LocalServer(client_config=flags) as official_server:
        official = run_recipe(official_python, "0.38.0", official_server)
        official_wire = _dialect_features(official_server)
    with LocalServer(client_config=flags) as tinkex_server:
        mine = _run_recipe_with_tinkex(tinkex_server)
        tinkex_wire = _dialect_features(tinkex_server)
    check_recipe_results(mine)
    assert tinkex_wire == official_wire
    assert official_wire["training_bodies"] == [
        ("forward_backward", "application/x-protobuf", "zstd" if compress else None)
    ]
    assert ("Forward", "application/x-protobuf") in official_wire["polls"]
    assert mine["forward_backward"]["metrics"] == pytest.approx(official["forward_backward"]["metrics"], rel=1e-6)
    for ours, theirs in zip(mine["forward_backward"]["outputs"], official["forward_backward"]["outputs"], strict=True):
        assert ours["logprobs"] == pytest.approx(theirs["logprobs"], rel=1e-6)
