"""A strict server: malformed requests are rejected with a body that names what is wrong; keys are checked."""

from __future__ import annotations

import httpx
import pytest

from tinkex.testing import LocalServer

pytestmark = pytest.mark.anyio


async def test_bad_json_is_400(client: httpx.AsyncClient, server: LocalServer) -> None:
    reply = await client.post("/api/v1/create_session", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 400
    assert "not valid JSON" in reply.json()["detail"]
    assert not server.ledger.executions()


async def test_empty_body_is_400(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/v1/create_session")).status_code == 400


@pytest.mark.parametrize(
    ("body", "status", "loc", "words"),
    [
        ({"tags": [], "user_metadata": {}, "sdk_version": "x", "surprise": 1}, 400, ["body", "surprise"], "unknown field"),
        ({"tags": [], "user_metadata": {}}, 422, ["body", "sdk_version"], "missing required field"),
        ({"tags": [1], "user_metadata": {}, "sdk_version": "x"}, 422, ["body", "tags", 0], "Expected `str`"),
    ],
)
async def test_shape_errors_name_the_field(
    client: httpx.AsyncClient, body: dict, status: int, loc: list, words: str
) -> None:
    """An unknown field is a 400, other shape errors a 422; the body names the field either way."""
    reply = await client.post("/api/v1/create_session", json=body)
    assert reply.status_code == status
    [problem] = reply.json()["detail"]
    assert problem["loc"] == loc and words in problem["msg"]


async def test_nested_field_errors_name_the_full_path(wire) -> None:
    model_id = await wire.model()
    body = wire.forward_backward_body(model_id, 1)
    body["forward_backward_input"]["data"][0]["model_input"]["chunks"][0]["tokens"] = [1, "two"]
    reply = await wire.post("forward_backward", body)
    assert reply.status_code == 422
    loc = reply.json()["detail"][0]["loc"]
    assert loc == ["body", "forward_backward_input", "data", 0, "model_input", "chunks", 0, "tokens", 1]
    body = wire.forward_backward_body(model_id, 1, loss_fn="hinge")
    assert (await wire.post("forward_backward", body)).json()["detail"][0]["loc"] == ["body", "forward_backward_input", "loss_fn"]


async def test_query_parameters_are_validated(client: httpx.AsyncClient) -> None:
    reply = await client.get("/api/v1/training_runs", params={"limit": "many"})
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["query", "limit"]
    reply = await client.get("/api/v1/sessions", params={"access_scope": "everyone"})
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["query", "access_scope"]


async def test_unknown_paths_and_methods(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/v1/nope", json={})).status_code == 404
    assert (await client.get("/api/v1/create_session")).status_code == 405
    assert (await client.get("/api/v1/training_runs/sess-0:train:9")).status_code == 404


async def test_unknown_ids_are_404(wire) -> None:
    assert (await wire.post("get_info", {"model_id": "sess-0:train:0"})).status_code == 404
    assert (await wire.post("session_heartbeat", {"session_id": "sess-00000000"})).status_code == 404
    assert (await wire.poll("req-999")).status_code == 404


async def test_api_key_rules(server: LocalServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        missing = await http.get("/api/v1/get_server_capabilities")
        wrong_prefix = await http.get("/api/v1/get_server_capabilities", headers={"X-API-Key": "sk-secret-value"})
        health = await http.get("/api/v1/healthz")
    assert (missing.status_code, wrong_prefix.status_code, health.status_code) == (401, 401, 200)
    assert "missing" in missing.json()["detail"] and "tml-" in wrong_prefix.json()["detail"]
    assert "sk-secret-value" not in wrong_prefix.text
    assert all("x-api-key" not in r.headers for r in server.ledger.received())


async def test_configured_api_key_must_match() -> None:
    async with LocalServer(api_key="tml-right") as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            wrong = await http.get("/api/v1/get_server_capabilities", headers={"X-API-Key": "tml-wrong"})
            right = await http.get("/api/v1/get_server_capabilities", headers={"X-API-Key": "tml-right"})
    assert (wrong.status_code, right.status_code) == (401, 200)
    assert "tml-wrong" not in wrong.text
