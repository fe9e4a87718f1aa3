"""LocalServer accepts both dialects, as the hosted service does: the JSON bodies official 0.16.1 and 0.38.0 send
(captured once from the official packages by ``tools/capture_official_bodies.py``, committed under ``data/``).

0.38 sends ``type`` tags and every default and omits nulls; 0.16 omits defaults and tags and sends explicit
nulls. Fed the same calls, the server must give the same answers to both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tinkex.testing import LocalServer

from .conftest import HEADERS

pytestmark = pytest.mark.anyio

DATA = Path(__file__).parent / "data"
V016, V038 = "0.16.1", "0.38.0"
FUTURE_ENDPOINTS = frozenset(
    {"create_model", "create_custom_loss", "forward_backward", "forward", "optim_step", "save_weights", "load_weights",
     "save_weights_for_sampler", "save_weights_external", "asample"}
)
"""Endpoints the capture server answered with a future (it numbered those ``REQUEST_<n>`` in order)."""
NOT_LOCAL = frozenset({"client_config", "client_dynamic_config"})
"""The 0.38 handshake belongs to the wire-dialect work; LocalServer's answer to it is not what is tested here."""


def captured(version: str) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = json.loads((DATA / f"official-{version}-bodies.json").read_text())["requests"]
    return requests


def first_body(version: str, endpoint: str, where: Callable[[dict[str, Any]], bool] = lambda body: True) -> dict[str, Any]:
    for request in captured(version):
        if request["endpoint"] == endpoint and isinstance(request["body"], dict) and where(request["body"]):
            return dict(request["body"])
    raise LookupError(f"no captured {version} {endpoint} body matches")


class Replay:
    """Sends captured bodies to one LocalServer, with the capture's placeholder ids replaced by the real ones."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.session_id = "SESSION_ID"
        self.request_ids: dict[str, str | None] = {}

    def fill(self, value: Any) -> Any:
        text = json.dumps(value)
        for placeholder, real in self.request_ids.items():
            if real is not None:
                text = text.replace(f'"{placeholder}"', f'"{real}"')
        return json.loads(text.replace("SESSION_ID", self.session_id))

    async def send(self, method: str, path: str, body: Any) -> httpx.Response:
        kwargs = {"json": self.fill(body)} if body is not None else {}
        return await self.http.request(method, self.fill(path), **kwargs)

    async def result(self, handle: dict[str, Any], poll_body: dict[str, Any]) -> dict[str, Any]:
        """Poll with the dialect's own retrieve_future body until the result arrives."""
        for _ in range(100):
            reply = await self.http.post("/api/v1/retrieve_future", json={**poll_body, "request_id": handle["request_id"]})
            assert reply.status_code == 200, reply.text
            body: dict[str, Any] = reply.json()
            if body.get("type") != "try_again":
                return body
        raise AssertionError(f"future {handle} never completed")


# (endpoint, which captured body, path) of the calls both SDK versions make with JSON bodies, in flow order.
COMMON_FLOW: list[tuple[str, Callable[[dict[str, Any]], bool], str]] = [
    ("create_session", lambda b: True, "/api/v1/create_session"),
    ("create_model", lambda b: True, "/api/v1/create_model"),
    ("optim_step", lambda b: True, "/api/v1/optim_step"),
    ("save_weights", lambda b: True, "/api/v1/save_weights"),
    ("load_weights", lambda b: b.get("model_id") is not None and not b["optimizer"], "/api/v1/load_weights"),
    ("load_weights", lambda b: b.get("model_id") is not None and b["optimizer"], "/api/v1/load_weights"),
    ("save_weights_for_sampler", lambda b: "path" in b, "/api/v1/save_weights_for_sampler"),
    ("save_weights_for_sampler", lambda b: "sampling_session_seq_id" in b, "/api/v1/save_weights_for_sampler"),
    ("create_sampling_session", lambda b: True, "/api/v1/create_sampling_session"),
    ("asample", lambda b: b["num_samples"] == 2, "/api/v1/asample"),
    ("asample", lambda b: b["prompt_logprobs"], "/api/v1/asample"),
    ("weights_info", lambda b: True, "/api/v1/weights_info"),
    ("session_heartbeat", lambda b: True, "/api/v1/session_heartbeat"),
]


async def run_common_flow(version: str) -> list[tuple[str, int, Any]]:
    """The common calls with ``version``'s bodies against a fresh server; every answer, futures resolved."""
    poll_body = first_body(version, "retrieve_future")
    transcript: list[tuple[str, int, Any]] = []
    async with LocalServer(seed=11, long_poll_timeout=0.2) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS, timeout=5) as http:
            replay = Replay(http)
            train_seq = 0
            for endpoint, where, path in COMMON_FLOW:
                body = first_body(version, endpoint, where)
                if endpoint in ("optim_step", "save_weights", "load_weights", "save_weights_for_sampler"):
                    train_seq += 1
                    body["seq_id"] = train_seq  # the flows differ in how many training calls came first
                reply = await replay.send("POST", path, body)
                answer = reply.json() if reply.content else None
                if endpoint == "create_session":
                    replay.session_id = answer["session_id"]
                if reply.status_code == 200 and endpoint in FUTURE_ENDPOINTS:
                    answer = {"handle": answer, "result": await replay.result(answer, poll_body)}
                transcript.append((endpoint, reply.status_code, answer))
            assert not server.ledger.duplicates_executed()
    return transcript


async def test_the_common_endpoints_answer_0_38_bodies_as_they_answer_0_16_bodies() -> None:
    old, new = await run_common_flow(V016), await run_common_flow(V038)
    for (endpoint, status, answer), other in zip(old, new):
        assert status == 200, (endpoint, answer)
        assert (endpoint, status, answer) == other
        if isinstance(answer, dict) and "result" in answer:
            assert "error" not in answer["result"], (endpoint, answer)
    assert len(old) == len(new) == len(COMMON_FLOW)


async def test_the_bodies_differ_as_the_two_dialects_do() -> None:
    """The capture is what it claims to be: 0.38 sends tags and defaults, 0.16 nulls and minimal bodies."""
    assert first_body(V038, "create_session")["type"] == "create_session"
    assert "type" not in first_body(V016, "create_session")
    assert first_body(V016, "create_model")["user_metadata"] is None
    assert "user_metadata" not in first_body(V038, "create_model")
    assert len(first_body(V038, "optim_step")["adam_params"]) == 6
    assert first_body(V016, "optim_step")["adam_params"] == {"learning_rate": 0.0001}
    assert first_body(V038, "asample")["prompt"]["chunks"][0]["type"] == "encoded_text"


async def test_every_json_request_official_0_38_sends_is_accepted() -> None:
    """The whole 0.38 capture replayed in order, 0.38-only endpoints included (finish, join, cancel, copy, external
    weights, search, project, trace export, create-via-load, custom loss): every request is accepted and every
    future resolves to a result, except the sample the SDK abandoned and cancelled."""
    requests = captured(V038)
    futures_seen = 0
    cancelled: set[str] = set()
    outcomes: list[tuple[str, int]] = []
    # The official SDK was captured sending ids up to 999: a vocabulary that holds them (the server option).
    async with LocalServer(seed=3, long_poll_timeout=0.2, vocab_size=1024) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS, timeout=5) as http:
            replay = Replay(http)
            for request in requests:
                endpoint, body = request["endpoint"], request["body"]
                is_json = not (isinstance(body, dict) and "<non-json body>" in body)
                if endpoint in FUTURE_ENDPOINTS:
                    futures_seen += 1
                    placeholder = f"REQUEST_{futures_seen}"
                    replay.request_ids[placeholder] = None
                if endpoint in NOT_LOCAL or not is_json:
                    continue
                if endpoint == "retrieve_future" and replay.request_ids.get(body["request_id"]) is None:
                    continue
                reply = await replay.send(request["method"], request["path"], body)
                outcomes.append((endpoint, reply.status_code))
                assert 200 <= reply.status_code < 300, (endpoint, reply.text)
                answer = reply.json() if reply.content else None
                if endpoint == "create_session":
                    replay.session_id = answer["session_id"]
                if endpoint in FUTURE_ENDPOINTS:
                    replay.request_ids[placeholder] = answer["request_id"]
                if endpoint == "cancel_future":
                    cancelled.add(replay.fill(body)["request_id"])
            for placeholder, request_id in replay.request_ids.items():
                if request_id is None:
                    continue
                result = await replay.result({"request_id": request_id}, {"allow_metadata_only": False})
                if request_id in cancelled:
                    assert "cancelled" in result["error"]
                else:
                    assert "error" not in result, (placeholder, result)
    seen = {endpoint for endpoint, _ in outcomes}
    assert {"finish_session", "join_sampling_session", "cancel_future", "copy_weights", "save_weights_external",
            "external_weights_urls", "search_sessions", "assign_session_project", "export_session_trace",
            "create_custom_loss", "load_weights"} <= seen


async def test_an_unknown_field_in_a_0_38_body_is_a_400_naming_it(client: httpx.AsyncClient) -> None:
    body = {**first_body(V038, "create_session"), "telepathy": True}
    reply = await client.post("/api/v1/create_session", json=body)
    assert reply.status_code == 400
    [problem] = reply.json()["detail"]
    assert problem["loc"] == ["body", "telepathy"] and "unknown field" in problem["msg"]
    nested = {**first_body(V038, "asample"), "sampling_session_id": "x"}
    nested["sampling_params"] = {**nested["sampling_params"], "beam_width": 4}
    reply = await client.post("/api/v1/asample", json=nested)
    assert reply.status_code == 400 and reply.json()["detail"][0]["loc"] == ["body", "sampling_params", "beam_width"]
