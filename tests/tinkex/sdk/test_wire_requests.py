"""The exact JSON and headers tinkex puts on the wire, endpoint by endpoint, against the bodies the official SDK
0.16.1 was observed sending (docs/wire.md §12.3) and the shapes of §1."""

from __future__ import annotations

import json
import platform
import re
from typing import Any

import httpx
import pytest
from sdk_helpers import API_KEY, BASE_MODEL, MODEL_ID, SESSION_ID, WireFake, fake_client

from tinkex import types

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
IDEMPOTENCY_KEY = re.compile(rf"^stainless-python-retry-{UUID4}$")


def compact(value: Any) -> bytes:
    """The bytes the official SDK sends for ``value`` (httpx's compact JSON, keys in the given order)."""
    return json.dumps(value, separators=(",", ":")).encode()


def observed_datum() -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3, 4]),
        loss_fn_inputs={"target_tokens": [2, 3, 4, 5], "weights": [1.0, 1.0, 1.0, 1.0]},
    )


OBSERVED_DATUM = {
    "loss_fn_inputs": {
        "target_tokens": {"data": [2, 3, 4, 5], "dtype": "int64", "shape": [4]},
        "weights": {"data": [1.0, 1.0, 1.0, 1.0], "dtype": "float32", "shape": [4]},
    },
    "model_input": {"chunks": [{"tokens": [1, 2, 3, 4]}]},
}


def test_the_observed_recipe_sends_the_observed_bodies(wire: WireFake) -> None:
    """create client -> LoRA client -> forward_backward + optim_step -> sampler save -> sample -> save_state ->
    ephemeral sampler -> compute_logprobs, as in the observed 0.16.1 sequence."""
    client = fake_client(wire, user_metadata={"purpose": "fake-server-test"})
    try:
        training = client.create_lora_training_client(BASE_MODEL, rank=8)
        forward_backward = training.forward_backward([observed_datum()], "cross_entropy")
        optim = training.optim_step(types.AdamParams(learning_rate=1e-4))
        forward_backward.result(5)
        optim.result(5)
        saved = training.save_weights_for_sampler("step-1").result(5)
        sampler = client.create_sampling_client(model_path=saved.path)
        prompt = types.ModelInput.from_ints([5, 6, 7])
        sampler.sample(prompt, 2, types.SamplingParams(max_tokens=4, temperature=0.7)).result(5)
        training.save_state("ckpt-1").result(5)
        ephemeral = training.save_weights_and_get_sampling_client()
        logprobs = ephemeral.compute_logprobs(prompt).result(5)
    finally:
        client.close()

    assert logprobs == [None, -0.25, -0.25]
    writes = [s for s in wire.sent() if s.endpoint not in ("retrieve_future", "session_heartbeat")]
    assert [s.endpoint for s in writes] == [
        "client/config",  # the 0.38 handshake first; the wire fake answers 404, so the rest is 0.16's dialect
        "create_session",
        "create_model",
        "forward_backward",
        "optim_step",
        "save_weights_for_sampler",
        "create_sampling_session",
        "asample",
        "save_weights",
        "save_weights_for_sampler",
        "asample",
    ]
    expected = [
        {"sdk_version": "0.38.0"},
        {"tags": [], "user_metadata": {"purpose": "fake-server-test"}, "sdk_version": "0.16.1", "project_id": None},
        {
            "session_id": SESSION_ID,
            "model_seq_id": 0,
            "base_model": BASE_MODEL,
            "user_metadata": None,
            "lora_config": {"rank": 8, "seed": None, "train_unembed": True, "train_mlp": True, "train_attn": True},
        },
        {
            "forward_backward_input": {"data": [OBSERVED_DATUM], "loss_fn": "cross_entropy", "loss_fn_config": None},
            "model_id": MODEL_ID,
            "seq_id": 1,
        },
        {"adam_params": {"learning_rate": 0.0001}, "model_id": MODEL_ID, "seq_id": 2},
        {"model_id": MODEL_ID, "path": "step-1", "seq_id": 3, "ttl_seconds": None},
        {
            "session_id": SESSION_ID,
            "sampling_session_seq_id": 0,
            "base_model": None,
            "model_path": f"tinker://{MODEL_ID}/sampler_weights/step-1",
        },
        {
            "num_samples": 2,
            "prompt": {"chunks": [{"tokens": [5, 6, 7]}]},
            "sampling_params": {"max_tokens": 4, "temperature": 0.7},
            "sampling_session_id": f"{SESSION_ID}:sample:0",
            "seq_id": 0,
            "prompt_logprobs": False,
            "topk_prompt_logprobs": 0,
        },
        {"model_id": MODEL_ID, "path": "ckpt-1", "seq_id": 4, "ttl_seconds": None},
        {"model_id": MODEL_ID, "sampling_session_seq_id": 1, "seq_id": 5, "ttl_seconds": None},
        {
            "num_samples": 1,
            "prompt": {"chunks": [{"tokens": [5, 6, 7]}]},
            "sampling_params": {"max_tokens": 1},
            "sampling_session_id": f"{SESSION_ID}:sample:1",
            "seq_id": 0,
            "prompt_logprobs": True,
            "topk_prompt_logprobs": 0,
        },
    ]
    for sent, body in zip(writes, expected, strict=True):
        assert sent.body == body, sent.endpoint
        assert sent.raw == compact(body), sent.endpoint  # same bytes: key order and number spelling included


def test_create_session_takes_tags_from_tinker_tags_and_sends_empty_metadata(wire: WireFake) -> None:
    client = fake_client(wire, env={"TINKER_TAGS": "exp-1, nightly,exp-1,", "TINKER_PROJECT_ID": "proj-7"})
    try:
        client.create_lora_training_client(BASE_MODEL).result()
    finally:
        client.close()
    (session,) = wire.sent("create_session")
    assert session.body == {
        "tags": ["exp-1", "nightly"], "user_metadata": {}, "sdk_version": "0.16.1", "project_id": "proj-7"
    }


def test_training_endpoints_send_their_spec_shapes(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        training = client.create_lora_training_client(BASE_MODEL, rank=4, seed=3, train_unembed=False)
        training.forward([observed_datum()], "cross_entropy", {"clip": 0.5}).result(5)
        training.optim_step(types.AdamParams()).result(5)
        training.load_state(f"tinker://{MODEL_ID}/weights/ckpt-1").result(5)
        training.load_state_with_optimizer(f"tinker://{MODEL_ID}/weights/ckpt-1").result(5)
        training.save_state("ckpt-2", ttl_seconds=3600).result(5)
        info = training.get_info()
    finally:
        client.close()

    assert info.model_id == MODEL_ID
    assert wire.sent("create_model")[0].body["lora_config"] == {
        "rank": 4, "seed": 3, "train_unembed": False, "train_mlp": True, "train_attn": True,
    }
    assert [s.body for s in wire.sent() if s.endpoint in ("forward", "optim_step", "load_weights", "save_weights")] == [
        {
            "forward_input": {"data": [OBSERVED_DATUM], "loss_fn": "cross_entropy", "loss_fn_config": {"clip": 0.5}},
            "model_id": MODEL_ID,
            "seq_id": 1,
        },
        {"adam_params": {}, "model_id": MODEL_ID, "seq_id": 2},
        {"model_id": MODEL_ID, "path": f"tinker://{MODEL_ID}/weights/ckpt-1", "optimizer": False, "seq_id": 3},
        {"model_id": MODEL_ID, "path": f"tinker://{MODEL_ID}/weights/ckpt-1", "optimizer": True, "seq_id": 4},
        {"model_id": MODEL_ID, "path": "ckpt-2", "seq_id": 5, "ttl_seconds": 3600},
    ]
    assert wire.sent("get_info")[0].raw == compact({"model_id": MODEL_ID})


def test_training_client_from_state_asks_weights_info_then_loads(wire: WireFake) -> None:
    path = f"tinker://{MODEL_ID}/weights/ckpt-1"
    client = fake_client(wire)
    try:
        client.create_training_client_from_state_with_optimizer(path).result()
    finally:
        client.close()
    (info,) = wire.sent("weights_info")
    assert info.raw == compact({"tinker_path": path})
    assert wire.sent("create_model")[0].body["lora_config"]["rank"] == 8  # from weights_info's lora_rank
    (load,) = wire.sent("load_weights")
    assert load.body == {"model_id": MODEL_ID, "path": path, "optimizer": True, "seq_id": 1}


def test_sampling_session_from_a_base_model_sends_both_model_keys(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        client.create_sampling_client(base_model=BASE_MODEL).result()
    finally:
        client.close()
    (created,) = wire.sent("create_sampling_session")
    assert created.raw == compact(
        {"session_id": SESSION_ID, "sampling_session_seq_id": 0, "base_model": BASE_MODEL, "model_path": None}
    )


def test_sample_carries_the_backpressure_header_and_polls_carry_the_future_headers(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        sampler = client.create_sampling_client(base_model=BASE_MODEL)
        sampler.sample(types.ModelInput.from_ints([1, 2]), 1, types.SamplingParams(max_tokens=2)).result(5)
    finally:
        client.close()
    (sample,) = wire.sent("asample")
    assert sample.headers["X-Tinker-Sampling-Backpressure"] == "1"
    (poll,) = wire.sent("retrieve_future")
    assert poll.raw == compact({"request_id": wire.future_ids("asample")[0], "allow_metadata_only": True})
    assert poll.headers["X-Tinker-Request-Iteration"] == "0"
    assert poll.headers["X-Tinker-Request-Type"] == "Sample"
    assert poll.headers["X-Stainless-Raw-Response"] == "raw"
    assert 0.0 <= float(poll.headers["X-Tinker-Create-Promise-Roundtrip-Time"]) < 5.0
    assert float(poll.headers["x-stainless-read-timeout"]) == 45.0


def test_later_polls_count_iterations_and_drop_the_roundtrip_header(wire: WireFake) -> None:
    answered_try_again = 0

    async def try_again_twice(request: httpx.Request, body: Any) -> httpx.Response | None:
        nonlocal answered_try_again
        if answered_try_again < 2:
            answered_try_again += 1
            return wire.try_again(body["request_id"])
        return None

    wire.overrides["retrieve_future"] = try_again_twice
    client = fake_client(wire)
    try:
        client.create_lora_training_client(BASE_MODEL).result()
    finally:
        client.close()
    polls = wire.sent("retrieve_future")
    assert [p.headers["X-Tinker-Request-Iteration"] for p in polls] == ["0", "1", "2"]
    assert [p.headers["X-Tinker-Request-Type"] for p in polls] == ["CreateModel"] * 3
    assert "X-Tinker-Create-Promise-Roundtrip-Time" in polls[0].headers
    assert all("X-Tinker-Create-Promise-Roundtrip-Time" not in p.headers for p in polls[1:])
    # Each poll is its own logical request: a new idempotency key every time.
    assert len({p.headers["X-Idempotency-Key"] for p in polls}) == 3


def test_every_request_carries_the_sdk_headers(wire: WireFake) -> None:
    env = {"CLOUDFLARE_ACCESS_CLIENT_ID": "cf-id.access", "CLOUDFLARE_ACCESS_CLIENT_SECRET": "cf-secret-value"}
    client = fake_client(wire, env=env)
    try:
        training = client.create_lora_training_client(BASE_MODEL)
        training.optim_step(types.AdamParams()).result(5)
        client.get_server_capabilities()
    finally:
        client.close()

    expected_os = {"Linux": "Linux", "Darwin": "MacOS", "Windows": "Windows"}.get(platform.system())
    for sent in wire.sent():
        headers = sent.headers
        assert headers["X-API-Key"] == API_KEY
        assert headers["Accept"] == "application/json"
        # The API version tinkex serves (the manifest's headers): 0.38.0's, with tinkex named.
        assert headers["User-Agent"] == "AsyncTinker/Python 0.38.0 (tinkex)"
        assert headers["X-Stainless-Package-Version"] == "0.38.0"
        if expected_os is not None:
            assert headers["X-Stainless-OS"] == expected_os
        arch = headers["X-Stainless-Arch"]
        assert arch in {"x64", "arm64", "arm", "x32"} or arch.startswith("other:")
        assert headers["X-Stainless-Runtime"] == platform.python_implementation()
        assert headers["X-Stainless-Runtime-Version"] == platform.python_version()
        assert headers["X-Stainless-Async"] == "async:asyncio"
        assert headers["CF-Access-Client-Id"] == "cf-id.access"
        assert headers["CF-Access-Client-Secret"] == "cf-secret-value"
        assert headers["x-stainless-retry-count"] == "0"
        if sent.method == "GET":
            assert "X-Idempotency-Key" not in headers
            assert "Content-Type" not in headers
        else:
            assert IDEMPOTENCY_KEY.match(headers["X-Idempotency-Key"]), headers["X-Idempotency-Key"]
            assert headers["Content-Type"] == "application/json"
    (capabilities,) = wire.sent("get_server_capabilities")
    assert capabilities.method == "GET"
    assert float(wire.sent("create_session")[0].headers["x-stainless-read-timeout"]) == 60.0
    keys = [s.headers.get("X-Idempotency-Key") for s in wire.sent() if s.method != "GET"]
    assert len(set(keys)) == len(keys), "every logical request gets its own key"


def test_no_cloudflare_headers_without_the_environment(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        client.create_sampling_client(base_model=BASE_MODEL).result()
    finally:
        client.close()
    for sent in wire.sent():
        assert "CF-Access-Client-Id" not in sent.headers
        assert "CF-Access-Client-Secret" not in sent.headers


def test_an_http_retry_reuses_the_idempotency_key_and_counts_attempts(wire: WireFake) -> None:
    failures = 0

    async def fail_twice(request: httpx.Request, body: Any) -> httpx.Response | None:
        nonlocal failures
        if failures < 2:
            failures += 1
            return httpx.Response(503, json={"detail": "busy"}, headers={"retry-after-ms": "10"})
        return None

    wire.overrides["create_session"] = fail_twice
    client = fake_client(wire)
    try:
        client.create_sampling_client(base_model=BASE_MODEL).result()
    finally:
        client.close()
    attempts = wire.sent("create_session")
    assert [a.headers["x-stainless-retry-count"] for a in attempts] == ["0", "1", "2"]
    assert len({a.headers["X-Idempotency-Key"] for a in attempts}) == 1
    assert len({a.raw for a in attempts}) == 1


@pytest.mark.anyio
async def test_telemetry_batch_has_the_spec_envelope(wire: WireFake) -> None:
    client = fake_client(wire, telemetry=True)
    await client.create_sampling_client_async(base_model=BASE_MODEL)
    await client.aclose()

    batches = wire.sent("telemetry")
    assert batches, "closing the client flushes the queued events"
    body = batches[0].body
    assert set(body) == {"events", "platform", "sdk_version", "session_id"}
    assert body["platform"] == platform.system()
    assert body["sdk_version"] == "0.16.1"
    assert body["session_id"] == SESSION_ID
    start = body["events"][0]
    assert start["event"] == "SESSION_START"
    assert start["event_session_index"] == 0
    assert start["severity"] == "INFO"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", start["timestamp"])
    assert re.match(rf"^{UUID4}$", start["event_id"])
    assert float(batches[0].headers["x-stainless-read-timeout"]) == 5.0


def test_a_metadata_only_reply_flips_allow_metadata_only_for_the_next_poll(wire: WireFake) -> None:
    announced = False

    async def metadata_first(request: httpx.Request, body: Any) -> httpx.Response | None:
        nonlocal announced
        if not announced:
            announced = True
            return httpx.Response(200, json={"status": "complete_metadata", "response_payload_size": 1024})
        return None

    wire.overrides["retrieve_future"] = metadata_first
    client = fake_client(wire)
    try:
        client.create_lora_training_client(BASE_MODEL).result()
    finally:
        client.close()
    assert [p.body["allow_metadata_only"] for p in wire.sent("retrieve_future")] == [True, False]
