"""The endpoints official 0.38 added, at the HTTP level against a real LocalServer: each does what it says, seen
through later requests and the ledger, not only through its status code."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from tinkex.testing import LocalServer

from .conftest import API_KEY, BASE_MODEL, HEADERS, Wire

pytestmark = pytest.mark.anyio

FINISH = {"reason": {"type": "success"}, "detail": "done"}


async def _future_result(wire: Wire, reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    return await wire.result(reply)


async def _sampler_checkpoint(wire: Wire, session_id: str, name: str = "s1") -> tuple[str, str]:
    """A trained model and a named sampler checkpoint of it: (model_id, tinker path)."""
    model_id = await wire.model(session_id)
    await wire.result(await wire.post("forward_backward", wire.forward_backward_body(model_id, 1)))
    await wire.result(await wire.post("optim_step", {"adam_params": {"learning_rate": 0.1}, "model_id": model_id, "seq_id": 2}))
    body = {"model_id": model_id, "path": name, "seq_id": 3, "ttl_seconds": None}
    saved = await _future_result(wire, await wire.post("save_weights_for_sampler", body))
    return model_id, saved["path"]


# --- finish ---------------------------------------------------------------------------------------------------


async def test_a_finished_session_answers_its_heartbeat_with_410_and_refuses_new_work(wire: Wire, client: httpx.AsyncClient) -> None:
    session_id = await wire.session()
    model_id, sampler_path = await _sampler_checkpoint(wire, session_id)
    sampler_id = await wire.sampler(session_id, seq=5)
    pending = await wire.post("save_weights", {"model_id": model_id, "path": "before", "seq_id": 4, "ttl_seconds": None})

    finished = await client.post(f"/api/v1/sessions/{session_id}/finish", json=FINISH)
    assert finished.status_code == 200

    heartbeat = await wire.post("session_heartbeat", {"session_id": session_id})
    assert heartbeat.status_code == 410 and session_id in heartbeat.json()["detail"]
    refused = {
        "create_model": await wire.post("create_model", wire.create_model_body(session_id, 1)),
        "forward_backward": await wire.post("forward_backward", wire.forward_backward_body(model_id, 5)),
        "optim_step": await wire.post("optim_step", {"adam_params": {}, "model_id": model_id, "seq_id": 6}),
        "asample": await wire.post("asample", wire.sample_body(sampler_id)),
        "create_sampling_session": await wire.post(
            "create_sampling_session",
            {"session_id": session_id, "sampling_session_seq_id": 9, "base_model": BASE_MODEL, "model_path": None},
        ),
    }
    assert {name: reply.status_code for name, reply in refused.items()} == dict.fromkeys(refused, 410)
    assert all("finished" in reply.json()["detail"] for reply in refused.values())
    # Work accepted before the finish still resolves, and reads still answer.
    assert (await wire.result(pending))["path"].endswith("/weights/before")
    assert (await client.get(f"/api/v1/sessions/{session_id}")).status_code == 200
    assert (await client.get(f"/api/v1/training_runs/{model_id}/checkpoints")).status_code == 200


async def test_finishing_twice_keeps_the_first_reason_and_an_unknown_session_is_404(wire: Wire, client: httpx.AsyncClient) -> None:
    session_id = await wire.session()
    assert (await client.post(f"/api/v1/sessions/{session_id}/finish", json={"reason": {"type": "errored"}})).status_code == 200
    assert (await client.post(f"/api/v1/sessions/{session_id}/finish", json=FINISH)).status_code == 200
    search = await client.post("/api/v1/sessions/search", json={"session_id": session_id})
    [summary] = search.json()["sessions"]
    assert summary["status"] == {"type": "client_finished", "reason": {"type": "errored"}, "detail": None}
    missing = await client.post("/api/v1/sessions/sess-00000000/finish", json=FINISH)
    assert missing.status_code == 404


async def test_finish_refuses_an_unknown_reason_naming_the_field(wire: Wire, client: httpx.AsyncClient) -> None:
    session_id = await wire.session()
    reply = await client.post(f"/api/v1/sessions/{session_id}/finish", json={"reason": {"type": "bored"}})
    assert reply.status_code == 422 and "reason" in reply.json()["detail"][0]["loc"]


# --- cancel_future --------------------------------------------------------------------------------------------


@pytest.fixture
async def slow_sampling() -> AsyncIterator[tuple[LocalServer, httpx.AsyncClient]]:
    async with LocalServer(latency_by_endpoint={"asample": 30.0}, long_poll_timeout=0.2) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS, timeout=5) as http:
            yield server, http


async def test_cancel_future_makes_a_later_retrieve_fail_as_cancelled(slow_sampling: tuple[LocalServer, httpx.AsyncClient]) -> None:
    server, http = slow_sampling
    wire = Wire(http)
    sampler_id = await wire.sampler(await wire.session())
    handle = (await wire.post("asample", wire.sample_body(sampler_id))).json()
    still_running = (await wire.poll(handle["request_id"])).json()
    assert still_running["type"] == "try_again"

    cancelled = await wire.post("cancel_future", {"request_id": handle["request_id"]})
    assert cancelled.status_code == 200

    result = await wire.result(handle)
    assert result["category"] == "user"
    assert "cancelled by the client" in result["error"] and handle["request_id"] in result["error"]
    [execution] = server.ledger.executions("cancel_future")
    assert execution.request_id == handle["request_id"]
    assert (await wire.post("cancel_future", {"request_id": "req-404"})).status_code == 404


# --- copy_weights ---------------------------------------------------------------------------------------------


async def test_a_copy_is_listed_and_a_sampler_can_load_it_but_it_cannot_be_trained(wire: Wire, client: httpx.AsyncClient, server: LocalServer) -> None:
    session_id = await wire.session()
    model_id, source = await _sampler_checkpoint(wire, session_id)
    body = {"destination_project_id": "proj-archive", "source_path": source, "ttl_seconds": 7200}
    copied = await wire.post("copy_weights", body, headers={"X-Idempotency-Key": "copy-once"})
    assert copied.status_code == 200
    copy_path = copied.json()["tinker_path"]
    copy_run = copy_path.removeprefix("tinker://").split("/")[0]
    assert copy_path == f"tinker://{copy_run}/sampler_weights/s1" and copy_run != model_id

    again = await wire.post("copy_weights", body, headers={"X-Idempotency-Key": "copy-once"})
    assert again.json() == copied.json() and len(server.ledger.executions("copy_weights")) == 1
    token = "wat-secret-token-value"
    with_token = await wire.post("copy_weights", {**body, "weights_access_token": token},
                                 headers={"X-Tinker-Weights-Access-Token": token})
    assert with_token.status_code == 200 and token not in with_token.text
    assert all("x-tinker-weights-access-token" not in r.headers for r in server.ledger.received("copy_weights"))

    listed = (await client.get(f"/api/v1/training_runs/{copy_run}/checkpoints")).json()["checkpoints"]
    [checkpoint] = listed
    assert checkpoint["tinker_path"] == copy_path and checkpoint["checkpoint_type"] == "sampler"
    assert checkpoint["expires_at"] is not None

    from_copy = await wire.sampler(session_id, seq=3, model_path=copy_path)
    from_source = await wire.sampler(session_id, seq=4, model_path=source)
    params = {"max_tokens": 5, "seed": 7}
    sample_copy = await wire.result(await wire.post("asample", wire.sample_body(from_copy, sampling_params=params)))
    sample_source = await wire.result(await wire.post("asample", wire.sample_body(from_source, sampling_params=params)))
    assert [s["logprobs"] for s in sample_copy["sequences"]] == [s["logprobs"] for s in sample_source["sequences"]]

    train = await wire.result(await wire.post("forward_backward", wire.forward_backward_body(copy_run, 1)))
    assert train["category"] == "user" and "cannot be trained" in train["error"]


async def test_a_copy_into_a_session_takes_its_model_slot(wire: Wire, server: LocalServer) -> None:
    session_id = await wire.session()
    _, source = await _sampler_checkpoint(wire, session_id)
    body = {"session_id": session_id, "model_seq_id": 7, "source_path": source}
    copied = await wire.post("copy_weights", body)
    assert copied.json()["tinker_path"] == f"tinker://{session_id}:train:7/sampler_weights/s1"
    again = await wire.post("copy_weights", body)  # a re-send for the same slot is the same copy, made once
    assert again.json() == copied.json() and len(server.ledger.executions("copy_weights")) == 1
    neither = await wire.post("copy_weights", {"source_path": source})
    assert neither.status_code == 400 and "destination_project_id" in neither.json()["detail"]
    missing = await wire.post("copy_weights", {"source_path": f"tinker://{session_id}:train:0/weights/none", "destination_project_id": "p"})
    assert missing.status_code == 404


# --- external weights -----------------------------------------------------------------------------------------


async def test_external_weights_urls_download_the_exported_files(wire: Wire, client: httpx.AsyncClient, server: LocalServer) -> None:
    session_id = await wire.session()
    model_id, _ = await _sampler_checkpoint(wire, session_id)
    body = {"model_id": model_id, "path": "export-1", "seq_id": 4, "type": "save_weights_external"}
    saved = await _future_result(wire, await wire.post("save_weights_external", body))
    assert saved["path"] == f"tinker://{model_id}/external_weights/export-1" and saved["size_bytes"] > 0

    checkpoints = (await client.get(f"/api/v1/training_runs/{model_id}/checkpoints")).json()["checkpoints"]
    assert {c["checkpoint_type"] for c in checkpoints} == {"sampler", "external"}

    urls = await client.get(f"/api/v1/training_runs/{model_id}/checkpoints/external_weights/export-1/external_weights_urls")
    assert urls.status_code == 200
    files = urls.json()["urls"]
    assert set(files) == {"adapter_config.json", "adapter_model.safetensors"} and urls.json()["expires"]

    async with httpx.AsyncClient() as anonymous:  # signed URLs: no API key needed
        config = (await anonymous.get(files["adapter_config.json"])).json()
        weights = (await anonymous.get(files["adapter_model.safetensors"])).content
    assert config["base_model_name_or_path"] == BASE_MODEL and config["r"] == 8
    header_length = struct.unpack("<Q", weights[:8])[0]
    header = json.loads(weights[8 : 8 + header_length])
    # The run's LoRA factors under PEFT's names and layout (A: rank x inputs, B: outputs x rank), float32.
    params = server.call(lambda api: api.registry.runs[model_id].state.params)
    entry = header["base_model.model.lm_head.lora_B.weight"]
    start, end = entry["data_offsets"]
    exported = np.frombuffer(weights[8 + header_length + start : 8 + header_length + end], dtype="<f4")
    assert entry["shape"] == list(params["unembed.lora_B"].T.shape)
    assert exported.reshape(entry["shape"]) == pytest.approx(params["unembed.lora_B"].T) and exported.any()
    assert {name for name in header if name != "__metadata__"} == {
        f"base_model.model.{module}.lora_{factor}.weight"
        for module in ("context_proj", "mlp_proj", "lm_head") for factor in "AB"
    }
    assert sum(len(x) for x in (json.dumps(config, indent=2).encode(), weights)) == saved["size_bytes"]

    not_external = await client.get(f"/api/v1/training_runs/{model_id}/checkpoints/sampler_weights/s1/external_weights_urls")
    assert not_external.status_code == 400 and "external" in not_external.json()["detail"]


async def test_an_encrypted_export_fails_as_a_user_error(wire: Wire) -> None:
    model_id = await wire.model()
    body = {"model_id": model_id, "path": "x", "seq_id": 1, "age_encryption_recipients": ["age1example"]}
    failure = await _future_result(wire, await wire.post("save_weights_external", body))
    assert failure["category"] == "user" and "age_encryption_recipients" in failure["error"]


# --- search, project, trace export, whoami --------------------------------------------------------------------


async def _session(http: httpx.AsyncClient, **fields: Any) -> str:
    body = {"tags": [], "user_metadata": fields.pop("user_metadata", {}), "sdk_version": "0.38.0",
            "type": "create_session", **fields}
    reply = await http.post("/api/v1/create_session", json=body)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["session_id"])


async def _search(http: httpx.AsyncClient, **request: Any) -> list[str]:
    reply = await http.post("/api/v1/sessions/search", json=request)
    assert reply.status_code == 200, reply.text
    return [s["session_id"] for s in reply.json()["sessions"]]


async def test_search_finds_sessions_by_the_fields_0_38_searches(server: LocalServer, client: httpx.AsyncClient) -> None:
    nightly = await _session(client, display_name="Nightly RL run", project_id="proj-a", user_metadata={"team": "rl"})
    sweep = await _session(client, display_name="LR sweep", project_id="proj-b", user_metadata={"team": "sft"})
    plain = await _session(client)
    async with httpx.AsyncClient(base_url=server.base_url, headers={"X-API-Key": "tml-someone-else"}) as other_http:
        theirs = await _session(other_http, display_name="nightly eval")
    assert (await client.post(f"/api/v1/sessions/{sweep}/finish", json={"reason": {"type": "interrupted"}})).status_code == 200

    assert await _search(client) == [plain, sweep, nightly]  # own sessions, newest first
    assert await _search(client, display_name="run NIGHTLY") == [nightly]  # every word, any case
    assert await _search(client, display_name="nightly", owner={"type": "accessible"}) == [theirs, nightly]
    assert await _search(client, display_name="sweep", session_id=plain) == [plain, sweep]  # either one matches
    assert await _search(client, project_ids=["proj-a", "proj-b"]) == [sweep, nightly]
    assert await _search(client, user_metadata={"team": "rl"}) == [nightly]
    assert await _search(client, statuses=[{"type": "active"}]) == [plain, nightly]
    finished = [{"type": "client_finished", "reasons": ["interrupted"]}]
    assert await _search(client, statuses=finished) == [sweep]
    assert await _search(client, statuses=[{"type": "client_finished", "reasons": ["success"]}]) == []
    me = (await client.get("/api/v1/auth/apikey/me")).json()["user_urn"]
    them = (await client.get("/api/v1/auth/apikey/me", headers={"X-API-Key": "tml-someone-else"})).json()["user_urn"]
    assert await _search(client, owner={"type": "user", "owner_urns": [them]}) == [theirs]

    first = (await client.post("/api/v1/sessions/search", json={"limit": 2})).json()
    assert [s["session_id"] for s in first["sessions"]] == [plain, sweep]
    rest = await _search(client, limit=2, cursor=first["next_cursor"])
    assert rest == [nightly]
    summary = first["sessions"][1]
    assert summary["owner"] == me and summary["project_id"] == "proj-b" and summary["display_name"] == "LR sweep"
    assert summary["user_metadata"] == {"team": "sft"} and summary["checkpoints_count"] == 0

    bad = await client.post("/api/v1/sessions/search", json={"limit": 500})
    assert bad.status_code == 422 and "limit" in bad.text


async def test_assigning_a_project_moves_the_session_between_project_searches(client: httpx.AsyncClient) -> None:
    session_id = await _session(client, project_id="proj-a")
    moved = await client.put(f"/api/v1/sessions/{session_id}/project", json={"project_id": "proj-z"})
    assert moved.status_code in (200, 204)
    assert await _search(client, project_ids=["proj-z"]) == [session_id]
    assert await _search(client, project_ids=["proj-a"]) == []
    missing = await client.put("/api/v1/sessions/sess-00000000/project", json={"project_id": "p"})
    assert missing.status_code == 404
    assert (await client.put(f"/api/v1/sessions/{session_id}/project", json={})).status_code == 422


async def test_trace_export_is_a_downloadable_trace_of_the_session(wire: Wire, client: httpx.AsyncClient) -> None:
    session_id = await wire.session()
    model_id = await wire.model(session_id)
    await wire.result(await wire.post("forward_backward", wire.forward_backward_body(model_id, 1)))
    other = await wire.model()  # another session's work stays out of this trace

    reply = (await client.get(f"/api/v1/sessions/{session_id}/trace_export")).json()
    assert reply["status"] == "ready"
    async with httpx.AsyncClient() as anonymous:
        trace = (await anonymous.get(reply["url"])).json()
    names = [event["name"] for event in trace["traceEvents"]]
    assert names == ["create_session", "create_model", "forward_backward"]
    assert [event["args"]["model_id"] for event in trace["traceEvents"][1:]] == [model_id, model_id]
    assert other != model_id


async def test_whoami_answers_for_the_key_without_echoing_it(server: LocalServer) -> None:
    key = "tml-a-very-secret-key-0123456789"
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        first = await http.get("/api/v1/auth/apikey/me", headers={"X-API-Key": key})
        again = await http.get("/api/v1/auth/apikey/me", headers={"X-API-Key": key})
        other = await http.get("/api/v1/auth/apikey/me", headers={"X-API-Key": API_KEY})
        anonymous = await http.get("/api/v1/auth/apikey/me")
    body = first.json()
    assert first.status_code == 200 and body == again.json() and body["user_urn"] != other.json()["user_urn"]
    assert body["user_urn"].startswith("tml:user:") and body["org_urn"].startswith("tml:organization:")
    assert body["email"] and body["key_id"] and body["details"]["user_details"]["email"] == body["email"]
    # no piece of the key (past its public prefix) appears anywhere in the answer
    secret = key.removeprefix("tml-")
    assert not any(secret[i : i + 6] in first.text for i in range(len(secret) - 5))
    assert anonymous.status_code == 401


# --- sampling ids, join ---------------------------------------------------------------------------------------


async def test_the_asample_future_names_one_sequence_id_per_sample_and_the_result_carries_them(wire: Wire) -> None:
    sampler_id = await wire.sampler(await wire.session())
    handle = (await wire.post("asample", wire.sample_body(sampler_id, num_samples=3))).json()
    ids = handle["sample_sequence_ids"]
    assert len(ids) == 3 and len(set(ids)) == 3
    result = await wire.result(handle)
    assert [s["sequence_id"] for s in result["sequences"]] == ids
    second = (await wire.post("asample", wire.sample_body(sampler_id, 1, num_samples=2))).json()
    assert not set(second["sample_sequence_ids"]) & set(ids)  # distinct within the session


async def test_provenance_spans_may_name_sampled_sequences(wire: Wire) -> None:
    session_id = await wire.session()
    model_id = await wire.model(session_id)
    sampler_id = await wire.sampler(session_id, seq=1)
    result = await wire.result(await wire.post("asample", wire.sample_body(sampler_id, num_samples=1)))
    [sequence] = result["sequences"]
    sampled = sequence["tokens"]
    datum = wire.datum([5, 6, 7, *sampled[:-1]], [6, 7, *sampled], weights=[1.0] * (2 + len(sampled)))
    datum["model_input_spans"] = [
        {"type": "prompt_tokens", "sequence_id": sequence["sequence_id"], "offset": 0, "length": 3},
        {"type": "sampled_tokens", "sequence_id": sequence["sequence_id"], "offset": 0, "length": len(sampled) - 1},
    ]
    datum["loss_fn_input_spans"] = [
        {"type": "prompt_tokens", "sequence_id": sequence["sequence_id"], "offset": 1, "length": 2},
        {"type": "sampled_tokens", "sequence_id": sequence["sequence_id"], "offset": 0, "length": len(sampled)},
    ]
    ok = await wire.result(await wire.post("forward_backward", wire.forward_backward_body(model_id, 1, data=[datum])))
    assert "loss:sum" in ok["metrics"], ok
    datum["model_input_spans"][1]["sequence_id"] = "never-sampled"
    bad = await wire.result(await wire.post("forward_backward", wire.forward_backward_body(model_id, 2, data=[datum])))
    assert bad["category"] == "user" and "never-sampled" in bad["error"]


async def test_join_sampling_session_hands_out_one_client_counter_per_join(wire: Wire, client: httpx.AsyncClient) -> None:
    session_id = await wire.session()
    sampler_id = await wire.sampler(session_id)
    body = {"sampling_session_id": sampler_id, "type": "join_sampling_session"}
    counters = [(await wire.post("join_sampling_session", body)).json()["client_counter"] for _ in range(3)]
    assert counters == [1, 2, 3]
    assert (await wire.post("join_sampling_session", {"sampling_session_id": "sess-0:sample:9"})).status_code == 404
    await client.post(f"/api/v1/sessions/{session_id}/finish", json=FINISH)
    assert (await wire.post("join_sampling_session", body)).status_code == 410


# --- custom losses --------------------------------------------------------------------------------------------


def _neg_weighted_logprobs() -> dict[str, Any]:
    """The graph torch.fx traces from ``lambda logprobs, weights: -(logprobs * weights).sum()``."""
    return {
        "format": 1,
        "nodes": [
            {"op": "placeholder", "name": "logprobs", "target": "logprobs"},
            {"op": "placeholder", "name": "weights", "target": "weights"},
            {"op": "call_function", "name": "mul", "target": "operator.mul", "args": [{"ref": "logprobs"}, {"ref": "weights"}]},
            {"op": "call_method", "name": "sum", "target": "sum", "args": [{"ref": "mul"}]},
            {"op": "call_function", "name": "neg", "target": "operator.neg", "args": [{"ref": "sum"}]},
            {"op": "output", "name": "output", "target": "output", "args": [{"ref": "neg"}]},
        ],
    }


def _custom_loss_body(session_id: str, seq: int, graph: dict[str, Any], name: str = "neg_ll") -> dict[str, Any]:
    inputs = [{"name": "logprobs", "rank": 1}, {"name": "weights", "rank": 1}]
    return {"session_id": session_id, "custom_loss_seq_id": seq, "name": name, "inputs": inputs, "graph": graph,
            "type": "create_custom_loss"}


async def test_an_uploaded_custom_loss_is_used_by_its_id_and_its_name(wire: Wire, server: LocalServer) -> None:
    session_id = await wire.session()
    created = await _future_result(wire, await wire.post("create_custom_loss", _custom_loss_body(session_id, 0, _neg_weighted_logprobs())))
    loss_id = created["loss_id"]
    custom_model, reference_model = [
        (await wire.result(await wire.post("create_model", body)))["model_id"]
        for body in [wire.create_model_body(session_id, seq) for seq in (0, 1)]
        if not body["lora_config"].update(seed=7)  # the same LoRA seed: the same adapter to start from
    ]

    def custom_body(seq: int, config: dict[str, str]) -> dict[str, Any]:
        body = wire.forward_backward_body(custom_model, seq, loss_fn="custom")
        body["forward_backward_input"]["loss_fn_config"] = config
        return body

    custom = await wire.result(await wire.post("forward_backward", custom_body(1, {"loss_id": loss_id})))
    assert "metrics" in custom, custom
    reference = await wire.result(await wire.post("forward_backward", wire.forward_backward_body(reference_model, 1)))
    # -(logprobs * weights).sum() is cross-entropy: the same loss, and the same step.
    assert custom["metrics"]["loss:sum"] == pytest.approx(reference["metrics"]["loss:sum"], rel=1e-6)
    for model_id in (custom_model, reference_model):
        await wire.result(await wire.post("optim_step", {"adam_params": {"learning_rate": 0.1}, "model_id": model_id, "seq_id": 2}))
    # The same gradient reached both adapters (the custom one by finite differences of the graph in the logprobs).
    steps = server.call(lambda api: [api.registry.runs[m].state.params for m in (custom_model, reference_model)])
    for name, trained in steps[0].items():
        assert trained == pytest.approx(steps[1][name], rel=1e-3, abs=1e-4), name
    assert steps[0]["unembed.lora_B"].any()

    by_name = await wire.result(await wire.post("forward_backward", custom_body(3, {"loss_id": "neg_ll"})))
    assert "loss:sum" in by_name["metrics"], by_name
    unknown = await wire.result(await wire.post("forward_backward", custom_body(4, {"loss_id": "loss-unknown"})))
    assert unknown["category"] == "user" and "loss-unknown" in unknown["error"]
    other_session_model = await wire.model()
    body = wire.forward_backward_body(other_session_model, 1, loss_fn="custom")
    body["forward_backward_input"]["loss_fn_config"] = {"loss_id": loss_id}
    foreign = await wire.result(await wire.post("forward_backward", body))
    assert foreign["category"] == "user" and "session" in foreign["error"]


async def test_a_custom_loss_outside_the_allowed_operations_fails_at_upload(wire: Wire) -> None:
    session_id = await wire.session()
    graph = _neg_weighted_logprobs()
    graph["nodes"][2]["target"] = "builtins.eval"
    failure = await _future_result(wire, await wire.post("create_custom_loss", _custom_loss_body(session_id, 0, graph)))
    assert failure["category"] == "user" and "builtins.eval" in failure["error"]


# --- 0.38 fields of existing endpoints ------------------------------------------------------------------------


async def test_save_weights_overwrite_and_user_metadata(wire: Wire, client: httpx.AsyncClient) -> None:
    model_id = await wire.model()
    first = {"model_id": model_id, "path": "ckpt", "seq_id": 1, "overwrite": False, "user_metadata": {"stage": "a"},
             "type": "save_weights"}
    assert "path" in await _future_result(wire, await wire.post("save_weights", first))
    refused = await _future_result(wire, await wire.post("save_weights", {**first, "seq_id": 2}))
    assert refused["category"] == "user" and "overwrite" in refused["error"]
    replaced = {**first, "seq_id": 3, "overwrite": True, "user_metadata": {"stage": "b"}}
    assert "path" in await _future_result(wire, await wire.post("save_weights", replaced))
    legacy = {"model_id": model_id, "path": "ckpt", "seq_id": 4, "ttl_seconds": None}  # 0.16: replaces, as it did
    assert "path" in await _future_result(wire, await wire.post("save_weights", legacy))
    [checkpoint] = (await client.get(f"/api/v1/training_runs/{model_id}/checkpoints")).json()["checkpoints"]
    assert checkpoint["checkpoint_id"] == "weights/ckpt"


async def test_load_weights_can_create_the_model(wire: Wire, server: LocalServer) -> None:
    session_id = await wire.session()
    source_model = await wire.model(session_id)
    await wire.result(await wire.post("forward_backward", wire.forward_backward_body(source_model, 1)))
    await wire.result(await wire.post("optim_step", {"adam_params": {"learning_rate": 0.1}, "model_id": source_model, "seq_id": 2}))
    saved = await _future_result(wire, await wire.post("save_weights", {"model_id": source_model, "path": "c", "seq_id": 3}))

    body = {"session_id": session_id, "model_seq_id": 1, "path": saved["path"], "optimizer": True, "type": "load_weights"}
    reply = await wire.post("load_weights", body)
    new_model = f"{session_id}:train:1"
    assert reply.json()["model_id"] == new_model
    assert (await wire.result(reply)) == {"path": saved["path"], "model_id": new_model}
    info = (await wire.post("get_info", {"model_id": new_model, "type": "get_info"})).json()
    assert info["model_data"]["model_name"] == BASE_MODEL and info["lora_rank"] == 8
    states = server.call(lambda api: [api.registry.runs[m].state.to_json() for m in (source_model, new_model)])
    assert states[0] == states[1] and states[0]["step"] == 1
    trained = await wire.result(await wire.post("forward_backward", wire.forward_backward_body(new_model, 1)))
    assert "loss:sum" in trained["metrics"]
    assert (await wire.post("load_weights", body)).json() == reply.json()  # a re-send takes the same slot, once
    assert len(server.ledger.executions("load_weights")) == 1
