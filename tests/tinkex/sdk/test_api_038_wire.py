"""The exact requests of the 0.38 keywords and methods, and that 0.16's calls still send 0.16's bytes.

tinkex speaks 0.16's JSON dialect until the wire-dialect work lands: a field 0.38 added goes on the wire only when
the caller set it, so every 0.16-era call below sends exactly the keys it always did.
"""

from __future__ import annotations

import logging

import pytest
from sdk_helpers import BASE_MODEL, MODEL_ID, SESSION_ID, WireFake, fake_client

import tinkex
from tinkex import types

PROMPT = types.ModelInput.from_ints([1, 2, 3])
PARAMS = types.SamplingParams(max_tokens=2)


def test_016_calls_send_no_038_field(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        training = client.create_lora_training_client(BASE_MODEL).result()
        training.save_state("a").result(5)
        training.load_state("tinker://x/weights/a").result(5)
        training.save_weights_for_sampler("s").result(5)
        training.optim_step(types.AdamParams(learning_rate=0.1)).result(5)
        sampler = training.save_weights_and_get_sampling_client().result()
        sampler.sample(PROMPT, 1, PARAMS).result(5)
    finally:
        client.close()
    assert set(wire.sent("create_session")[0].body) == {"tags", "user_metadata", "sdk_version", "project_id"}
    assert set(wire.sent("create_model")[0].body) == {"session_id", "model_seq_id", "base_model", "lora_config",
                                                      "user_metadata"}
    assert set(wire.sent("save_weights")[0].body) == {"model_id", "path", "seq_id", "ttl_seconds"}
    assert set(wire.sent("load_weights")[0].body) == {"model_id", "path", "optimizer", "seq_id"}
    named, ephemeral = (s.body for s in wire.sent("save_weights_for_sampler"))
    assert set(named) == {"model_id", "path", "seq_id", "ttl_seconds"}
    assert set(ephemeral) == {"model_id", "sampling_session_seq_id", "seq_id", "ttl_seconds"}
    assert wire.sent("optim_step")[0].body == {"adam_params": {"learning_rate": 0.1}, "model_id": MODEL_ID,
                                               "seq_id": 4}
    assert set(wire.sent("asample")[0].body) == {"num_samples", "prompt", "sampling_params", "sampling_session_id",
                                                 "seq_id", "prompt_logprobs", "topk_prompt_logprobs"}


def test_038_training_keywords_reach_the_wire_when_set(wire: WireFake, caplog: pytest.LogCaptureFixture) -> None:
    client = fake_client(wire)
    token = "wat-secret-0123456789abcdef"
    try:
        training = client.create_lora_training_client(BASE_MODEL, optimizer=types.DimuonOptimizerConfig()).result()
        training.save_state("a", 7200, True, {"stage": "warmup"}).result(5)
        with caplog.at_level(logging.DEBUG):
            training.load_state_with_optimizer("tinker://x/weights/a", weights_access_token=token).result(5)
        training.save_weights_for_sampler("s", user_metadata={"k": "v"}).result(5)
        training.optim_step(types.DimuonParams(learning_rate=0.01)).result(5)
        training.optim_step(adam_params=types.AdamParams(learning_rate=0.2)).result(5)
        training.save_weights_and_get_sampling_client(kind="inflight").result()
        saved = training.save_weights_external("ext", ttl_seconds=3600).result(5)
    finally:
        client.close()
    assert wire.sent("create_model")[0].body["optimizer_config"] == {"type": "dimuon", "version": 1}
    save = wire.sent("save_weights")[0].body
    assert (save["ttl_seconds"], save["overwrite"], save["user_metadata"]) == (7200, True, {"stage": "warmup"})
    load = wire.sent("load_weights")[0].body
    assert (load["optimizer"], load["weights_access_token"]) == (True, token)
    assert token not in caplog.text, "the access token must never be logged"
    named, ephemeral = (s.body for s in wire.sent("save_weights_for_sampler"))
    assert named["user_metadata"] == {"k": "v"}
    assert ephemeral["kind"] == "inflight"
    dimuon, adam = (s.body for s in wire.sent("optim_step"))
    assert dimuon["optimizer_params"]["type"] == "dimuon" and "adam_params" not in dimuon  # 0.38's key
    assert adam["adam_params"] == {"learning_rate": 0.2} and "optimizer_params" not in adam
    external = wire.sent("save_weights_external")[0].body
    assert (external["path"], external["ttl_seconds"]) == ("ext", 3600)
    assert saved.path == f"tinker://{MODEL_ID}/external_weights/ext"


def test_038_sampling_keywords_reach_the_wire_when_set(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        sampler = client.create_sampling_client(base_model=BASE_MODEL, record_stability_info=True).result()
        target = types.TensorData(data=[5, -1], dtype="int64", shape=[2, 1])
        sampler.sample(PROMPT, 1, PARAMS, True, 2, topk_sample_logprobs=3, target_prompt_logprobs=target,
                       prompt_logprobs_last_n=2).result(5)
        sampler.compute_logprobs(PROMPT, prompt_logprobs_last_n=2).result(5)
    finally:
        client.close()
    sample, logprobs = (s.body for s in wire.sent("asample"))
    assert sample["topk_prompt_logprobs"] == 2 and sample["topk_sample_logprobs"] == 3
    assert sample["target_prompt_logprobs"] == {"data": [5, -1], "dtype": "int64", "shape": [2, 1]}
    assert sample["prompt_logprobs_last_n"] == 2 and sample["record_stability_info"] is True
    assert "prompt_alt_tokens_k" not in sample
    assert logprobs["prompt_logprobs"] is True and logprobs["prompt_logprobs_last_n"] == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt_logprobs_last_n": 2}, "include_prompt_logprobs"),
        ({"include_prompt_logprobs": True, "prompt_logprobs_last_n": 0}, "1 or greater"),
        ({"prompt_alt_tokens_k": -1}, "0 or greater"),
        ({"target_prompt_logprobs": types.TensorData(data=[1.0], dtype="float32", shape=[1, 1])}, "int64"),
        ({"target_prompt_logprobs": types.TensorData(data=[1], dtype="int64", shape=[1])}, "2-D"),
    ],
)
def test_bad_038_sampling_options_are_refused_before_anything_is_sent(
    wire: WireFake, kwargs: dict[str, object], message: str
) -> None:
    client = fake_client(wire)
    try:
        sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
        with pytest.raises(ValueError, match=message):
            sampler.sample(PROMPT, 1, PARAMS, **kwargs)  # type: ignore[arg-type]
    finally:
        client.close()
    assert wire.sent("asample") == []


def test_session_display_name_and_default_header_overrides(wire: WireFake) -> None:
    client = fake_client(wire, display_name="nightly run", default_headers_overrides={"X-Team": "research"})
    try:
        client.create_sampling_client(base_model=BASE_MODEL).result()
    finally:
        client.close()
    assert wire.sent("create_session")[0].body["display_name"] == "nightly run"
    assert all(s.headers["X-Team"] == "research" for s in wire.sent())


def test_close_with_a_status_finishes_the_session(wire: WireFake) -> None:
    client = fake_client(wire)
    client.create_sampling_client(base_model=BASE_MODEL).result()
    finished = client.close("errored", "out of memory")
    assert finished.result(5) is None
    assert client.close("success") is finished, "first close wins"
    [sent] = [s for s in wire.sent() if s.endpoint.endswith("/finish")]
    assert sent.path == f"/api/v1/sessions/{SESSION_ID}/finish"
    assert sent.body == {"reason": {"type": "errored"}, "detail": "out of memory"}
    with pytest.raises(RuntimeError, match="closed"):
        client.create_sampling_client(base_model=BASE_MODEL).result()
    with pytest.raises(RuntimeError, match="closed"):
        with client:
            pass


def test_close_without_a_status_sends_nothing_and_a_client_without_session_finishes_nothing(wire: WireFake) -> None:
    client = fake_client(wire)
    client.create_sampling_client(base_model=BASE_MODEL).result()
    client.close().result(1)
    unused = fake_client(wire)
    unused.close("success").result(5)
    assert not [s for s in wire.sent() if s.endpoint.endswith("/finish")]
    with pytest.raises(ValueError, match="one of"):
        fake_client(wire).close("done")  # type: ignore[arg-type]


def test_leaving_the_with_block_finishes_with_its_outcome(wire: WireFake) -> None:
    with pytest.raises(KeyError):
        with fake_client(wire) as client:
            client.create_sampling_client(base_model=BASE_MODEL).result()
            raise KeyError("boom")
    [sent] = [s for s in wire.sent() if s.endpoint.endswith("/finish")]
    assert sent.body == {"reason": {"type": "errored"}, "detail": None}


def test_copy_weights_sends_the_token_as_a_secret_header(wire: WireFake, caplog: pytest.LogCaptureFixture) -> None:
    client = fake_client(wire, project_id="proj-b")
    token = "copy-token-0123456789abcdef"
    try:
        with caplog.at_level(logging.DEBUG):
            path = client.copy_weights("tinker://r/weights/a", ttl_seconds=7200, weights_access_token=token).result(5)
        rest = client.create_rest_client()
        with pytest.raises(ValueError, match="TINKER_PROJECT_ID"):
            rest.copy_weights("tinker://r/weights/a")
        rest.copy_weights("tinker://r/weights/a", "proj-c").result(5)
    finally:
        client.close()
    assert path == "tinker://copy-1/weights/copied"
    first, second = wire.sent("copy_weights")
    assert first.body == {"destination_project_id": "proj-b", "source_path": "tinker://r/weights/a", "ttl_seconds": 7200}
    assert first.headers["X-Tinker-Weights-Access-Token"] == token
    assert "X-Tinker-Weights-Access-Token" not in second.headers
    assert second.body["destination_project_id"] == "proj-c"
    assert token not in caplog.text


def test_rest_requests_of_038(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        rest = client.create_rest_client()
        rest.list_training_runs(5, 10, "accessible", project_id="proj-a").result(5)
        me = rest.whoami().result(5)
        search = types.SessionSearchRequest(display_name="nightly", owner=types.AccessibleSearchOwner())
        page = rest.search_sessions(search).result(5)
    finally:
        client.close()
    [runs] = wire.sent("training_runs")
    assert dict(runs.query) == {"limit": "5", "offset": "10", "access_scope": "accessible",
                                                   "project_id": "proj-a"}
    assert me.user_urn == "tml:user:u1" and me.email is None
    assert wire.sent("sessions/search")[0].body == {
        "user_metadata": {}, "display_name": "nightly", "owner": {"type": "accessible"}, "limit": 50
    }
    assert page.sessions == []


def test_016_forms_of_changed_signatures(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        restored = client.create_training_client_from_state("tinker://r/weights/a", {"owner": "me"}).result()
        restored.optim_step(types.AdamParams(learning_rate=0.3)).result(5)
        rest = tinkex.RestClient(holder=client.holder)
        assert rest.holder is client.holder
        sampler = restored.save_weights_and_get_sampling_client_submit().result(5)
        assert isinstance(sampler, tinkex.SamplingClient)
    finally:
        client.close()
    assert wire.sent("create_model")[0].body["user_metadata"] == {"owner": "me"}
    assert wire.sent("optim_step")[0].body["adam_params"] == {"learning_rate": 0.3}
    with pytest.raises(TypeError, match="twice"):
        fake_client(wire).create_training_client_from_state("p", {"a": "b"}, user_metadata={"c": "d"}).result()


@pytest.mark.anyio
async def test_leaving_the_async_with_block_finishes_the_session(wire: WireFake) -> None:
    async with fake_client(wire) as client:
        await client.create_sampling_client(base_model=BASE_MODEL)
    [sent] = [s for s in wire.sent() if s.endpoint.endswith("/finish")]
    assert sent.body == {"reason": {"type": "success"}, "detail": None}
    async with fake_client(wire) as unused:
        assert unused.get_console_url().endswith("/sessions")  # no session yet: the sessions list
    assert len([s for s in wire.sent() if s.endpoint.endswith("/finish")]) == 1
