"""Every endpoint's happy path, with the request bodies of docs/wire.md (§1.2–1.5, §12)."""

from __future__ import annotations

import io
import tarfile
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx
import pytest

from tinkex.testing import LocalServer

pytestmark = pytest.mark.anyio


async def test_service_endpoints(wire, client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/healthz")).json() == {"status": "ok"}
    models = (await client.get("/api/v1/get_server_capabilities")).json()["supported_models"]
    assert {"model_name": "Qwen/Qwen3-8B", "max_context_length": 32768, "trainable": True, "sampleable": True} in models
    session_id = await wire.session()
    assert session_id.startswith("sess-") and len(session_id) == len("sess-") + 8
    assert (await wire.post("session_heartbeat", {"session_id": session_id})).json() == {}
    telemetry = {
        "events": [
            {
                "event": "SESSION_START",
                "event_id": "5b8a1f7e-3f3c-4a59-9a0e-8d6d3b1c2a10",
                "event_session_index": 0,
                "severity": "INFO",
                "timestamp": "2026-11-26T03:16:59.806166Z",
            }
        ],
        "platform": "Linux",
        "sdk_version": "0.16.1",
        "session_id": session_id,
    }
    assert (await wire.post("telemetry", telemetry)).json() == {"status": "accepted"}


async def test_training_sequence_of_the_0_16_sdk(wire, server: LocalServer) -> None:
    """create_model → forward_backward → optim_step → save_weights_for_sampler → sampling, as observed."""
    session_id = await wire.session()
    reply = await wire.post("create_model", wire.create_model_body(session_id))
    assert reply.json() == {"request_id": reply.json()["request_id"], "model_id": f"{session_id}:train:0"}
    model_id = (await wire.result(reply))["model_id"]
    assert model_id == f"{session_id}:train:0"

    info = (await wire.post("get_info", {"model_id": model_id})).json()
    assert info["model_id"] == model_id and info["model_data"]["model_name"] == "Qwen/Qwen3-8B"
    assert info["lora_rank"] == 8

    fb = await wire.result(await wire.post("forward_backward", wire.forward_backward_body(model_id, 1)))
    assert fb["loss_fn_output_type"] == "ArrayRecord"
    logprobs = fb["loss_fn_outputs"][0]["logprobs"]
    assert logprobs["dtype"] == "float32" and logprobs["shape"] == [4] and len(logprobs["data"]) == 4
    assert all(value < 0 for value in logprobs["data"])
    assert list(fb["metrics"]) == ["loss:sum"]
    assert fb["metrics"]["loss:sum"] == pytest.approx(-sum(logprobs["data"]), rel=1e-6)

    step = await wire.result(await wire.post("optim_step", {"adam_params": {"learning_rate": 0.0001}, "model_id": model_id, "seq_id": 2}))
    assert set(step) <= {"metrics", "type"}

    named = {"model_id": model_id, "path": "step-1", "seq_id": 3, "ttl_seconds": None}
    saved = await wire.result(await wire.post("save_weights_for_sampler", named))
    assert saved == {"path": f"tinker://{model_id}/sampler_weights/step-1"}

    sampler_id = await wire.sampler(session_id, seq=0, model_path=saved["path"])
    assert sampler_id == f"{session_id}:sample:0"
    sample = await wire.result(await wire.post("asample", wire.sample_body(sampler_id), headers={"X-Tinker-Sampling-Backpressure": "1"}))
    assert len(sample["sequences"]) == 2
    for sequence in sample["sequences"]:
        assert sequence["stop_reason"] == "length" and len(sequence["tokens"]) == 4 and len(sequence["logprobs"]) == 4

    checkpoint = await wire.result(await wire.post("save_weights", {"model_id": model_id, "path": "ckpt-1", "seq_id": 4, "ttl_seconds": None}))
    assert checkpoint == {"path": f"tinker://{model_id}/weights/ckpt-1"}

    ephemeral = {"model_id": model_id, "sampling_session_seq_id": 1, "seq_id": 5, "ttl_seconds": None}
    result = await wire.result(await wire.post("save_weights_for_sampler", ephemeral))
    assert result == {"sampling_session_id": f"{session_id}:sample:1"}  # path null is omitted

    logprobs_body = wire.sample_body(f"{session_id}:sample:1", num_samples=1, prompt_logprobs=True, sampling_params={"max_tokens": 1})
    computed = await wire.result(await wire.post("asample", logprobs_body))
    assert computed["prompt_logprobs"][0] is None and len(computed["prompt_logprobs"]) == 3

    loaded = await wire.result(await wire.post("load_weights", {"model_id": model_id, "path": checkpoint["path"], "optimizer": True, "seq_id": 6}))
    assert loaded == {"path": checkpoint["path"]}
    forward = await wire.result(await wire.post("forward", {"forward_input": wire.forward_backward_body(model_id, 7)["forward_backward_input"], "model_id": model_id, "seq_id": 7}))
    assert forward["loss_fn_outputs"][0]["logprobs"]["data"]

    weights = (await wire.post("weights_info", {"tinker_path": checkpoint["path"]})).json()
    assert weights == {"base_model": "Qwen/Qwen3-8B", "is_lora": True, "lora_rank": 8, "train_unembed": True, "train_mlp": True, "train_attn": True}
    unloaded = await wire.result(await wire.post("unload_model", {"model_id": model_id}))
    assert unloaded == {"model_id": model_id}
    assert not server.ledger.duplicates_executed()


async def test_rest_endpoints_and_pagination(wire, client: httpx.AsyncClient) -> None:
    session_id = await wire.session()
    first = await wire.model(session_id, 0)
    second = await wire.model(session_id, 1)
    save = {"model_id": first, "path": "ckpt-1", "seq_id": 1, "ttl_seconds": None}
    await wire.result(await wire.post("save_weights", save))
    await wire.result(await wire.post("save_weights_for_sampler", {**save, "path": "s-1", "seq_id": 2}))
    sampler_id = await wire.sampler(session_id)

    run = (await client.get(f"/api/v1/training_runs/{first}", params={"access_scope": "owned"})).json()
    assert run["training_run_id"] == first and run["is_lora"] is True and run["lora_rank"] == 8
    assert run["last_checkpoint"]["checkpoint_id"] == "weights/ckpt-1"
    assert run["last_sampler_checkpoint"]["tinker_path"] == f"tinker://{first}/sampler_weights/s-1"
    datetime.fromisoformat(run["last_request_time"])

    page = (await client.get("/api/v1/training_runs", params={"limit": 1, "offset": 1, "access_scope": "accessible"})).json()
    assert [r["training_run_id"] for r in page["training_runs"]] == [second]
    assert page["cursor"] == {"offset": 1, "limit": 1, "total_count": 2}

    listed = (await client.get(f"/api/v1/training_runs/{first}/checkpoints")).json()
    assert [(c["checkpoint_id"], c["checkpoint_type"]) for c in listed["checkpoints"]] == [
        ("weights/ckpt-1", "training"),
        ("sampler_weights/s-1", "sampler"),
    ]
    mine = (await client.get("/api/v1/checkpoints", params={"limit": 100, "offset": 0})).json()
    assert mine["cursor"]["total_count"] == 2

    base = f"/api/v1/training_runs/{first}/checkpoints/weights/ckpt-1"
    assert (await client.post(f"{base}/publish")).status_code == 204
    assert (await client.get(f"/api/v1/training_runs/{first}")).json()["last_checkpoint"]["public"] is True
    assert (await client.delete(f"{base}/publish")).status_code == 204
    assert (await client.put(f"{base}/ttl", json={"ttl_seconds": 3600})).status_code == 204
    expires = (await client.get(f"/api/v1/training_runs/{first}")).json()["last_checkpoint"]["expires_at"]
    assert datetime.fromisoformat(expires) > datetime.now(timezone.utc)
    assert (await client.delete(base)).status_code == 204
    assert (await client.delete(base)).status_code == 404

    session = (await client.get(f"/api/v1/sessions/{session_id}", params={"access_scope": "owned"})).json()
    assert session == {"training_run_ids": [first, second], "sampler_ids": [sampler_id]}
    assert session_id in (await client.get("/api/v1/sessions", params={"limit": 20, "offset": 0})).json()["sessions"]
    sampler = (await client.get(f"/api/v1/samplers/{sampler_id}")).json()
    assert sampler == {"sampler_id": sampler_id, "base_model": "Qwen/Qwen3-8B"}


async def test_archive_redirects_to_a_real_tar(wire, client: httpx.AsyncClient) -> None:
    model_id = await wire.model()
    saved = await wire.result(await wire.post("save_weights", {"model_id": model_id, "path": "ckpt-1", "seq_id": 1, "ttl_seconds": None}))
    url = f"/api/v1/training_runs/{model_id}/checkpoints/weights/ckpt-1/archive"
    reply = await client.get(url, headers={"accept": "application/gzip"})
    assert reply.status_code == 302
    location = reply.headers["location"]
    assert location.startswith(str(client.base_url).rstrip("/") + "/download/")
    expires = parsedate_to_datetime(reply.headers["expires"])
    assert 14 * 60 < (expires - datetime.now(timezone.utc)).total_seconds() <= 15 * 60

    async with httpx.AsyncClient() as anonymous:  # a pre-signed link needs no API key
        download = await anonymous.get(location)
    assert download.status_code == 200 and download.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:*") as tar:
        names = tar.getnames()
        content = tar.extractfile("checkpoint.json").read()  # type: ignore[union-attr]
    assert sorted(names) == ["adapter_config.json", "checkpoint.json"]
    assert saved["path"].encode() in content
    assert (await client.get(f"/api/v1/training_runs/{model_id}/checkpoints/weights/nope/archive")).status_code == 404
