"""``python -m tinkex.testing`` and persistence of runs and checkpoints in a state directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tinkex.testing import LocalServer

pytestmark = pytest.mark.anyio


def _inherit_sigint_ignored() -> None:
    # What a process started in the background by a non-interactive shell (a CI script's `cmd &`) inherits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("started_in_background", [False, True])
def test_command_line_prints_the_url_and_stops_on_ctrl_c(started_in_background: bool) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tinkex.testing", "--port", "0", "--latency", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        preexec_fn=_inherit_sigint_ignored if started_in_background else None,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{base_url}/api/v1/healthz").json() == {"status": "ok"}
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=30) == 0  # about a second when idle; room for a loaded CI machine
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
            pytest.fail(f"the server did not stop within 30 s of Ctrl-C; its stderr:\n{stderr[-3000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_state_dir_survives_a_restart(tmp_path: Path, headers: dict[str, str], wire) -> None:
    async with LocalServer(state_dir=tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
            wire.client = http
            model_id = await wire.model()
            await wire.result(await wire.post("forward_backward", wire.forward_backward_body(model_id, 1)))
            await wire.result(await wire.post("optim_step", {"adam_params": {}, "model_id": model_id, "seq_id": 2}))
            saved = await wire.result(await wire.post("save_weights", {"model_id": model_id, "path": "c", "seq_id": 3, "ttl_seconds": None}))
        state = server.model_state(model_id)
    assert (tmp_path / "state.json").exists()

    async with LocalServer(state_dir=tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
            run = (await http.get(f"/api/v1/training_runs/{model_id}")).json()
            info = (await http.post("/api/v1/weights_info", json={"tinker_path": saved["path"]})).json()
        restored = server.model_state(model_id)
        assert restored.to_json() == state.to_json() and restored.step == 1 and restored.params
    assert run["last_checkpoint"]["tinker_path"] == saved["path"]
    assert info["base_model"] == "Qwen/Qwen3-8B"


async def test_state_dir_keeps_the_0_38_state(tmp_path: Path, headers: dict[str, str], wire) -> None:
    """Finished sessions, projects, display names, custom losses, external exports and copies survive a restart."""
    graph = {"nodes": [
        {"op": "placeholder", "name": "logprobs", "target": "logprobs"},
        {"op": "call_method", "name": "sum", "target": "sum", "args": [{"ref": "logprobs"}]},
        {"op": "output", "name": "output", "target": "output", "args": [{"ref": "sum"}]},
    ]}
    async with LocalServer(state_dir=tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
            wire.client = http
            body = {"tags": [], "user_metadata": {}, "sdk_version": "0.38.0", "project_id": "proj-a", "display_name": "kept"}
            session_id = (await http.post("/api/v1/create_session", json=body)).json()["session_id"]
            model_id = await wire.model(session_id)
            loss = {"session_id": session_id, "custom_loss_seq_id": 0, "name": "sum", "graph": graph,
                    "inputs": [{"name": "logprobs", "rank": 1}]}
            loss_id = (await wire.result(await wire.post("create_custom_loss", loss)))["loss_id"]
            exported = await wire.result(await wire.post("save_weights_external", {"model_id": model_id, "path": "e", "seq_id": 1}))
            saved = await wire.result(await wire.post("save_weights", {"model_id": model_id, "path": "w", "seq_id": 2}))
            copy = (await wire.post("copy_weights", {"source_path": saved["path"], "destination_project_id": "p"})).json()
            await http.post(f"/api/v1/sessions/{session_id}/finish", json={"reason": {"type": "success"}})

    async with LocalServer(state_dir=tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
            wire.client = http
            [summary] = (await http.post("/api/v1/sessions/search", json={"session_id": session_id})).json()["sessions"]
            heartbeat = await wire.post("session_heartbeat", {"session_id": session_id})
            urls = await http.get(
                f"/api/v1/training_runs/{model_id}/checkpoints/external_weights/e/external_weights_urls"
            )
            copy_run = copy["tinker_path"].split("/")[2]
            trained_copy = await wire.result(await wire.post("forward_backward", wire.forward_backward_body(copy_run, 1)))
        losses = server.call(lambda api: list(api.registry.custom_losses))
    assert summary["project_id"] == "proj-a" and summary["display_name"] == "kept"
    assert summary["status"]["type"] == "client_finished" and heartbeat.status_code == 410
    assert urls.status_code == 200 and exported["path"].endswith("/external_weights/e")
    assert "cannot be trained" in trained_copy["error"] and losses == [loss_id]
