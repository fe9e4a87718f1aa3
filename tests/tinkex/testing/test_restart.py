"""LocalServer restarted on the same state directory, over HTTP: ids never repeat, futures issued before the restart
answer their results, a re-sent write is answered from the replay cache, and the ledger lists what ran before.
Both after a clean stop (in process) and after SIGKILL of ``python -m tinkex.testing --state-dir``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from tinkex.testing import FaultRule, LocalServer
from tinkex.testing.write_journal import UNDONE_MESSAGE

from .conftest import HEADERS, Wire

pytestmark = pytest.mark.anyio


def _key(name: str) -> dict[str, str]:
    return {"X-Idempotency-Key": name}


async def _submit(wire: Wire, endpoint: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    reply = await wire.post(endpoint, body, headers=_key(key))
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def test_restart_keeps_futures_replay_cache_and_ledger(tmp_path: Path) -> None:
    async with LocalServer(state_dir=tmp_path, long_poll_timeout=0.2) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
            wire = Wire(http)
            model_id = await wire.model()
            step = await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 1), "fb-1")
            step_result = await wire.result(step)
            optim = await _submit(wire, "optim_step", {"adam_params": {}, "model_id": model_id, "seq_id": 2}, "os-2")
            await wire.result(optim)
            # Expired before the restart: 410 after it too, and its re-send may run again.
            server.faults.add(FaultRule.expired(future_endpoint="forward_backward"))
            expired = await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 3), "fb-3")
            assert (await wire.poll(expired["request_id"])).status_code == 410
        before = server.ledger.executions()
        state = server.model_state(model_id).to_json()
    ids_before = {e.request_id for e in before if e.request_id is not None}

    async with LocalServer(state_dir=tmp_path, long_poll_timeout=0.2) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
            wire = Wire(http)
            # the futures of the earlier run answer their own results
            assert await wire.result(step) == step_result
            assert (await wire.poll(expired["request_id"])).status_code == 410
            # re-sends are answered from the replay cache: by idempotency key, and by seq_id under a new key
            again = await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 1), "fb-1")
            optim_body = {"adam_params": {}, "model_id": model_id, "seq_id": 2}
            again_by_seq = await _submit(wire, "optim_step", optim_body, "new")
            assert again == step and again_by_seq == optim
            assert server.model_state(model_id).to_json() == state
            # the expired one ran before; its re-send runs again (legitimately) under a fresh id
            rerun = await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 3), "fb-3")
            assert "loss_fn_outputs" in await wire.result(rerun)
            new_step = await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 4), "fb-4")
            await wire.result(new_step)
        ledger = server.ledger
        # the ledger lists what ran before (times carried over by the wall clock, so to within a millisecond)
        assert [replace(e, time=0) for e in ledger.executions()[: len(before)]] == [replace(e, time=0) for e in before]
        assert ledger.duplicates_executed() == []
        assert [e.seq_id for e in ledger.executions("forward_backward")] == [1, 3, 3, 4]
    new_ids = {rerun["request_id"], new_step["request_id"]}
    assert not new_ids & ids_before, (new_ids, ids_before)


async def test_the_same_server_object_restarts_without_repeating_ids(tmp_path: Path) -> None:
    server = LocalServer(state_dir=tmp_path, long_poll_timeout=0.2)
    seen: list[str] = []
    for run in range(3):
        async with server:
            async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
                wire = Wire(http)
                model_id = await wire.model(model_seq_id=0)
                future = await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 1), f"k{run}")
                seen.append(future["request_id"])
                await wire.result(future)
        assert len(server.ledger.executions("forward_backward")) == run + 1
    assert len(set(seen)) == 3, seen


async def test_a_future_not_ready_at_the_stop_answers_after_the_restart(tmp_path: Path) -> None:
    async with LocalServer(state_dir=tmp_path, future_latency=0.6, long_poll_timeout=0.2) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
            wire = Wire(http)
            session_id = await wire.session()
            reply = await wire.post("create_model", wire.create_model_body(session_id))
            pending = reply.json()
            assert (await wire.poll(pending["request_id"])).json()["type"] == "try_again"
    async with LocalServer(state_dir=tmp_path, future_latency=0.6, long_poll_timeout=0.5) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
            created = await Wire(http).result(pending)
    assert created["model_id"] == pending["model_id"]
    assert len(server.ledger.executions("create_model")) == 1


async def test_a_write_whose_state_was_not_saved_is_undone_and_runs_once_on_re_send(tmp_path: Path) -> None:
    """The kill between journaling a write and saving ``state.json``, reproduced by putting back the older state."""
    async with LocalServer(state_dir=tmp_path, long_poll_timeout=0.2) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
            wire = Wire(http)
            model_id = await wire.model()
            await wire.result(await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 1), "a"))
            shutil.copy(tmp_path / "state.json", tmp_path / "state.before-b")
            state_after_a = server.model_state(model_id).to_json()
            lost = await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 2), "b")
            await wire.result(lost)
    (tmp_path / "state.before-b").replace(tmp_path / "state.json")

    for _ in range(2):  # undone once and for good: a second restart does not revive it
        async with LocalServer(state_dir=tmp_path, long_poll_timeout=0.2) as server:
            async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
                wire = Wire(http)
                failed = await wire.result(lost)
                assert failed["error"] == UNDONE_MESSAGE and failed["category"] == "server"
                assert server.model_state(model_id).to_json() == state_after_a or _ > 0
                resent = await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 2), "b")
                assert resent["request_id"] != lost["request_id"] or _ > 0
                assert "loss_fn_outputs" in await wire.result(resent)
            executions = server.ledger.executions("forward_backward")
            assert [(e.seq_id, e.undone) for e in executions] == [(1, False), (2, True), (2, False)]
            assert server.ledger.duplicates_executed() == []


def _start_cli(state_dir: Path, port: int = 0, *extra: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tinkex.testing", "--port", str(port), "--state-dir", str(state_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert process.stdout is not None
    base_url = process.stdout.readline().strip()
    if not base_url.startswith("http"):
        process.kill()
        raise AssertionError(f"server did not start: {process.communicate(timeout=10)[1]}")
    return process, base_url


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    process.stderr.close()


async def test_sigkill_and_restart_on_the_same_port_and_state_dir(tmp_path: Path) -> None:
    process, base_url = _start_cli(tmp_path, 0, "--latency", "0.3", "--long-poll", "0.2")
    port = int(base_url.rsplit(":", 1)[1])
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=HEADERS) as http:
            wire = Wire(http)
            model_id = await wire.model()
            done = await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 1), "k1")
            done_result = await wire.result(done)
            in_flight = await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 2), "k2")
    finally:
        _kill(process)  # before in_flight is ready

    process, again_url = _start_cli(tmp_path, port, "--latency", "0.3", "--long-poll", "0.2")
    try:
        assert again_url == base_url
        async with httpx.AsyncClient(base_url=base_url, headers=HEADERS) as http:
            wire = Wire(http)
            assert await wire.result(done) == done_result
            in_flight_result = await wire.result(in_flight)
            assert "loss_fn_outputs" in in_flight_result
            assert await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 2), "k2") == in_flight
            fresh = await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 3), "k3")
            await wire.result(fresh)
    finally:
        _kill(process)
    assert fresh["request_id"] not in {done["request_id"], in_flight["request_id"]}

    with LocalServer(state_dir=tmp_path) as server:  # the ledger of both killed processes
        executions = server.ledger.executions("forward_backward")
    assert [(e.idempotency_key, e.undone) for e in executions] == [("k1", False), ("k2", False), ("k3", False)]
    assert server.ledger.duplicates_executed() == []


async def test_a_cancelled_future_stays_cancelled_after_the_restart(tmp_path: Path) -> None:
    async with LocalServer(state_dir=tmp_path, future_latency=5.0, long_poll_timeout=0.1) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
            wire = Wire(http)
            session_id = await wire.session()
            pending = (await wire.post("create_model", wire.create_model_body(session_id))).json()
            assert (await wire.post("cancel_future", {"request_id": pending["request_id"]})).status_code == 200
            cancelled = await wire.result(pending)
    async with LocalServer(state_dir=tmp_path, long_poll_timeout=0.1) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
            assert await Wire(http).result(pending) == cancelled
    assert "cancel" in cancelled["error"]
    assert [e.endpoint for e in server.ledger.executions()] == ["create_session", "create_model", "cancel_future"]


async def test_the_account_reports_survive_the_restart_and_a_re_send_is_not_billed_again(tmp_path: Path) -> None:
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    window = {
        "starting_on": (hour - timedelta(hours=1)).isoformat(),
        "ending_before": (hour + timedelta(hours=2)).isoformat(),
    }

    async def reports(http: httpx.AsyncClient) -> tuple[Any, Any]:
        billing = await http.get("/api/v1/billing/usage/events", params=window)
        audit = await http.get("/api/v1/audit")
        assert billing.status_code == audit.status_code == 200, (billing.text, audit.text)
        return billing.json(), audit.json()

    async with LocalServer(state_dir=tmp_path, long_poll_timeout=0.1) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
            wire = Wire(http)
            model_id = await wire.model()
            await wire.result(await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 1), "b1"))
            save = {"model_id": model_id, "path": "c", "seq_id": 2}
            await wire.result(await _submit(wire, "save_weights", save, "s2"))
            before = await reports(http)
    assert any(e["event_info"]["type"] == "training" for e in before[0]["data"]) and before[1]["entries"]

    async with LocalServer(state_dir=tmp_path, long_poll_timeout=0.1) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
            wire = Wire(http)
            await wire.result(await _submit(wire, "forward_backward", wire.forward_backward_body(model_id, 1), "b1"))
            assert await reports(http) == before


async def test_a_line_torn_by_the_kill_is_dropped(tmp_path: Path) -> None:
    server = LocalServer(state_dir=tmp_path, long_poll_timeout=0.1)
    futures = []
    for run in range(3):
        async with server:
            async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
                wire = Wire(http)
                if run == 0:
                    model_id = await wire.model(model_seq_id=0)
                for future in futures:
                    assert "loss_fn_outputs" in await wire.result(future)
                body = wire.forward_backward_body(model_id, run + 1)
                futures.append(await _submit(wire, "forward_backward", body, f"t{run}"))
        with (tmp_path / "journal.jsonl").open("ab") as journal:
            journal.write(b'{"type":"executed","position":99,"execu')  # the kill hit mid-write
    assert [e.seq_id for e in server.ledger.executions("forward_backward")] == [1, 2, 3]
