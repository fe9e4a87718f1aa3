"""What goes on the wire for each 0.38 endpoint when it is called through tinkex's manifest (the stack every
tinkex client method uses), as a real LocalServer's ledger records it: method, path, idempotency key, retry
headers, read timeout, the headers that name tinkex; and that the server does the endpoint's work."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pristine_transport.client import ManifestClient
from tinkex.config import load_tinker_manifest
from tinkex.request_size import SIZE_ESTIMATORS
from tinkex.testing import FaultRule, LocalServer

pytestmark = pytest.mark.anyio

KEY = "tml-wire-test-key-0123456789"
CAPTURE = Path(__file__).parent / "data" / "official-0.38.0-bodies.json"
BASE_MODEL = "Qwen/Qwen3-8B"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stack() -> AsyncIterator[tuple[LocalServer, ManifestClient]]:
    async with LocalServer(long_poll_timeout=0.2) as server:
        client = ManifestClient(
            load_tinker_manifest(),
            base_url=server.base_url,
            config={"api_key": KEY, "sdk_version": "0.38.0", "tinkex_version": "9.9.9"},
            env={"TINKEX_HTTP_BACKEND": "httpx"},
            size_estimators=SIZE_ESTIMATORS,
        )
        try:
            yield server, client
        finally:
            await client.aclose()


def official_body(endpoint: str) -> dict[str, Any]:
    for request in json.loads(CAPTURE.read_text())["requests"]:
        if request["endpoint"] == endpoint and isinstance(request["body"], dict):
            return dict(request["body"])
    raise LookupError(endpoint)


async def _result(client: ManifestClient, handle: dict[str, Any]) -> dict[str, Any]:
    for _ in range(100):
        reply = await client.send("retrieve_future", json={"request_id": handle["request_id"], "allow_metadata_only": False})
        body: dict[str, Any] = reply.json()
        if body.get("type") != "try_again":
            return body
    raise AssertionError(handle)


async def _setup(client: ManifestClient) -> dict[str, str]:
    """A session with a trained model, its sampler checkpoint and a sampling session."""
    session = await client.call("create_session", json={"tags": [], "user_metadata": {}, "sdk_version": "0.38.0"})
    session_id = session["session_id"]
    create = {"session_id": session_id, "model_seq_id": 0, "base_model": BASE_MODEL, "lora_config": {"rank": 8}}
    model_id = (await _result(client, await client.call("create_model", json=create)))["model_id"]
    save = {"model_id": model_id, "path": "s1", "seq_id": 1, "kind": "snapshot", "type": "save_weights_for_sampler"}
    path = (await _result(client, await client.call("save_weights_for_sampler", json=save)))["path"]
    sampling = {"session_id": session_id, "sampling_session_seq_id": 1, "model_path": path}
    sampler_id = (await client.call("create_sampling_session", json=sampling))["sampling_session_id"]
    return {"session_id": session_id, "model_id": model_id, "path": path, "sampler_id": sampler_id}


def _only(server: LocalServer, endpoint: str) -> Any:
    [received] = server.ledger.received(endpoint)
    return received


def _assert_tinkex_headers(headers: Any, read_timeout: str) -> None:
    assert headers["user-agent"] == "AsyncTinker/Python 0.38.0 (tinkex)"
    assert headers["x-stainless-package-version"] == "0.38.0" and headers["x-tinkex-version"] == "9.9.9"
    assert headers["x-stainless-retry-count"] == "0" and headers["x-stainless-read-timeout"] == read_timeout
    assert headers["x-stainless-os"] and headers["x-stainless-runtime"]


async def test_writes_carry_one_idempotency_key_and_the_endpoint_timeouts(stack: tuple[LocalServer, ManifestClient]) -> None:
    server, client = stack
    ids = await _setup(client)
    sample = await client.call("asample", json={
        "num_samples": 1, "prompt": {"chunks": [{"tokens": [1, 2], "type": "encoded_text"}]},
        "sampling_params": {"max_tokens": 2}, "sampling_session_id": ids["sampler_id"], "seq_id": 0,
    })
    session_id, model_id = ids["session_id"], ids["model_id"]
    calls: list[tuple[str, dict[str, Any], dict[str, Any] | None, str, str]] = [
        ("join_sampling_session", {}, {"sampling_session_id": ids["sampler_id"], "type": "join_sampling_session"},
         "POST", "/api/v1/join_sampling_session"),
        ("cancel_future", {}, {"request_id": sample["request_id"]}, "POST", "/api/v1/cancel_future"),
        ("copy_weights", {}, {"destination_project_id": "proj-b", "source_path": ids["path"]}, "POST", "/api/v1/copy_weights"),
        ("save_weights_external", {}, {"model_id": model_id, "path": "ext", "seq_id": 2, "type": "save_weights_external"},
         "POST", "/api/v1/save_weights_external"),
        ("create_custom_loss", {}, {**official_body("create_custom_loss"), "session_id": session_id},
         "POST", "/api/v1/create_custom_loss"),
        ("search_sessions", {}, official_body("search_sessions"), "POST", "/api/v1/sessions/search"),
        ("assign_session_project", {"session_id": session_id}, {"project_id": "proj-c"},
         "PUT", f"/api/v1/sessions/{session_id}/project"),
        ("export_session_trace", {"session_id": session_id}, None, "GET", f"/api/v1/sessions/{session_id}/trace_export"),
        ("whoami", {}, None, "GET", "/api/v1/auth/apikey/me"),
        ("external_weights_urls", {"training_run_id": model_id, "checkpoint_id": "sampler_weights/s1"}, None,
         "GET", f"/api/v1/training_runs/{model_id}/checkpoints/sampler_weights/s1/external_weights_urls"),
        ("finish_session", {"session_id": session_id}, {"reason": {"type": "success"}, "detail": None},
         "POST", f"/api/v1/sessions/{session_id}/finish"),
    ]
    timeouts = {"cancel_future": "30.0"}
    for endpoint, path_params, body, method, path in calls:
        kwargs: dict[str, Any] = {"path_params": path_params}
        if body is not None:
            kwargs["json"] = body
        reply = await client.send(endpoint, **kwargs)
        # external_weights_urls of a sampler checkpoint is refused (400) but still went out as tinkex sends it
        assert reply.status_code < 300 or endpoint == "external_weights_urls", (endpoint, reply.text)
        received = _only(server, endpoint)
        assert (received.method, received.path) == (method, path)
        assert (received.idempotency_key is not None) == (method != "GET"), endpoint
        if received.idempotency_key is not None:
            assert received.idempotency_key.startswith("stainless-python-retry-")
        _assert_tinkex_headers(received.headers, timeouts.get(endpoint, "60.0"))
        assert "x-api-key" not in received.headers  # the ledger never keeps the key


async def test_a_copy_resent_after_a_503_keeps_its_key_and_is_made_once(stack: tuple[LocalServer, ManifestClient]) -> None:
    server, client = stack
    ids = await _setup(client)
    server.faults.add(FaultRule(endpoint="copy_weights", status=503, count=1))
    copied = await client.call("copy_weights", json={"destination_project_id": "proj-b", "source_path": ids["path"]})
    attempts = server.ledger.received("copy_weights")
    assert [a.status for a in attempts] == [503, 200]
    assert attempts[0].idempotency_key == attempts[1].idempotency_key
    assert [a.headers["x-stainless-retry-count"] for a in attempts] == ["0", "1"]
    [execution] = server.ledger.executions("copy_weights")
    assert execution.idempotency_key == attempts[0].idempotency_key
    listed = await client.call("list_checkpoints", path_params={"training_run_id": copied["tinker_path"].split("/")[2]})
    assert [c["tinker_path"] for c in listed["checkpoints"]] == [copied["tinker_path"]]


async def test_finish_through_the_session_end_endpoint_stops_the_heartbeat(stack: tuple[LocalServer, ManifestClient]) -> None:
    """The manifest's session block names ``finish_session`` as its end and 410 as the heartbeat's stop."""
    server, client = stack
    ids = await _setup(client)
    manifest = client.manifest
    assert manifest.session is not None and manifest.session.end_endpoint == "finish_session"
    await client.call(manifest.session.end_endpoint, path_params={"session_id": ids["session_id"]},
                      json={"reason": {"type": "interrupted"}, "detail": "stopped"})
    beat = await client.send(manifest.session.heartbeat_endpoint, json={"session_id": ids["session_id"]})
    assert beat.status_code == manifest.session.stop_on_status == 410
