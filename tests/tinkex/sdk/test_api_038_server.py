"""The 0.38 methods end to end, through tinkex's public API against a real loopback LocalServer: each test checks
the effect the call had (a later request sees it), not only that the request was sent."""

from __future__ import annotations

import time

import httpx
import pytest
from sdk_helpers import API_KEY, BASE_MODEL, datum, server_client, wait_until

import tinkex
from tinkex import types
from tinkex.testing import LocalServer

PROMPT = types.ModelInput.from_ints([1, 2, 3])
PARAMS = types.SamplingParams(max_tokens=3)


def test_a_session_closed_with_a_status_refuses_further_work(server: LocalServer) -> None:
    client = server_client(server)
    sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
    handle = sampler.get_sampler_handle()
    session_id = client.holder.known_session_id()
    assert client.get_console_url().endswith(f"/sessions/{session_id}")
    client.close("success", "done").result(10)
    # The same sampler, joined from elsewhere (a handle carries no credentials), is refused by the server.
    joined = tinkex.SamplingClient.from_sampler_handle(handle, api_key=API_KEY)
    try:
        assert joined.sampling_session_id == sampler.sampling_session_id
        with pytest.raises(tinkex.APIStatusError) as refused:
            joined.sample(PROMPT, 1, PARAMS).result(10)
        assert refused.value.status_code == 410
    finally:
        joined.holder.close()  # the copy's own connections and heartbeat
    rest = tinkex.RestClient(base_url=server.base_url, api_key=API_KEY)
    assert rest.get_session(session_id).result(5).sampler_ids == [sampler.sampling_session_id]


def test_a_sampler_handle_makes_a_working_client_without_pickling(server: LocalServer) -> None:
    client = server_client(server)
    try:
        sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
        handle = sampler.get_sampler_handle()
        assert API_KEY not in handle and API_KEY[4:] not in repr(handle)
        copy = tinkex.SamplingClient.from_sampler_handle(handle, api_key=API_KEY)
        try:
            assert copy.get_base_model() == BASE_MODEL
            assert copy.sample(PROMPT, 1, PARAMS).result(10).sequences
        finally:
            copy.holder.close()
        created = tinkex.SamplingClient.create(client.holder, base_model=BASE_MODEL).result(10)
        assert created.sample(PROMPT, 1, PARAMS).result(10).sequences
        with pytest.raises(ValueError, match="sampler handle"):
            tinkex.SamplingClient.from_sampler_handle("not-a-handle", api_key=API_KEY)
    finally:
        client.close()


def test_copy_weights_lands_in_the_project_and_is_listed(server: LocalServer) -> None:
    client = server_client(server, project_id="proj-archive")
    try:
        training = client.create_lora_training_client(BASE_MODEL, rank=4).result()
        saved = training.save_state("step-1").result(10)
        copied = client.copy_weights(saved.path).result(10)
        rest = client.create_rest_client()
        copy_run = types.ParsedCheckpointTinkerPath.from_tinker_path(copied).training_run_id
        listed = rest.list_checkpoints(copy_run).result(5)
        assert [c.tinker_path for c in listed.checkpoints] == [copied]
        restored = client.create_training_client_from_state(copied).result()
        assert restored.forward([datum([1, 2])], "cross_entropy").result(10).loss_fn_outputs
    finally:
        client.close()


def test_whoami_search_and_project_assignment(server: LocalServer) -> None:
    client = server_client(server, display_name="nightly-038", project_id="proj-a")
    try:
        client.create_sampling_client(base_model=BASE_MODEL).result()
        session_id = client.holder.known_session_id()
        rest = client.create_rest_client()
        me = rest.whoami().result(5)
        assert me.user_urn.startswith("tml:user:") and me.org_urn.startswith("tml:organization:")
        found = rest.search_sessions(types.SessionSearchRequest(display_name="nightly-038")).result(5)
        assert [s.session_id for s in found.sessions] == [session_id]
        rest.assign_session_project(session_id, "proj-b").result(5)
        moved = rest.search_sessions(types.SessionSearchRequest(project_ids=["proj-b"])).result(5)
        assert [s.project_id for s in moved.sessions] == ["proj-b"]
    finally:
        client.close()


def test_session_trace_export_and_external_weights_download(server: LocalServer) -> None:
    client = server_client(server)
    try:
        training = client.create_lora_training_client(BASE_MODEL, rank=4).result()
        training.forward_backward([datum([1, 2, 3])], "cross_entropy").result(10)
        external = training.save_weights_external("hf-export").result(10)
        assert "/external_weights/" in external.path
        rest = client.create_rest_client()
        urls = rest.get_external_weights_urls(external.path).result(5)
        assert urls.urls
        with pytest.raises(ValueError, match="external weights"):
            rest.get_external_weights_urls(training.save_state("s").result(10).path).result(5)
        trace_url = rest.export_session_trace(client.holder.known_session_id()).result(10)
        for url in (trace_url, *urls.urls.values()):
            assert httpx.get(url, timeout=5).status_code == 200
    finally:
        client.close()


def test_overwrite_user_metadata_and_a_standalone_rest_client(server: LocalServer) -> None:
    client = server_client(server)
    try:
        training = client.create_lora_training_client(BASE_MODEL, rank=4).result()
        training.save_state("ckpt").result(10)
        training.save_state("ckpt", overwrite=True, user_metadata={"stage": "2"}).result(10)
        training.save_weights_for_sampler("samp", user_metadata={"stage": "2"}).result(10)
        rest = tinkex.RestClient(base_url=server.base_url, api_key=API_KEY)
        assert rest.get_server_capabilities().result(5).supported_models
        assert tinkex.RestClient(base_url=server.base_url, api_key=API_KEY).holder is rest.holder, "shared"
        assert rest.holder.known_session_id() is None, "a standalone REST client makes no session"
        listed = rest.list_checkpoints(training.model_id).result(5)
        by_id = {c.checkpoint_id: c for c in listed.checkpoints}
        assert by_id["weights/ckpt"].user_metadata == {"stage": "2"}
        assert training.get_console_url().endswith(f"/training_runs/{training.model_id}")
        assert training.get_telemetry() is client.get_telemetry()
    finally:
        client.close()


def test_inflight_sampling_client_and_stability_recording(server: LocalServer) -> None:
    client = server_client(server)
    try:
        training = client.create_lora_training_client(BASE_MODEL, rank=4).result()
        inflight = training.save_weights_and_get_sampling_client(kind="inflight", record_stability_info=True).result()
        assert inflight.record_stability_info
        response = inflight.sample(PROMPT, 2, PARAMS, topk_sample_logprobs=2).result(10)
        assert len(response.sequences) == 2
        with pytest.raises(ValueError, match="inflight"):
            training.save_weights_and_get_sampling_client("named", kind="inflight").result(10)
    finally:
        client.close()


def test_custom_loss_handle_runs_per_datum_on_the_client(server: LocalServer) -> None:
    torch = pytest.importorskip("torch")
    client = server_client(server)
    try:
        training = client.create_lora_training_client(BASE_MODEL, rank=4).result()

        def weighted_nll(logprobs, advantages):  # type: ignore[no-untyped-def]
            loss = -(logprobs * advantages).sum()
            return loss, {"custom/nll:sum": loss, "custom/adv:mean": advantages.mean()}

        handle = client.create_custom_loss(weighted_nll, {"logprobs": 1, "advantages": 1}).result(10)
        assert handle.input_names == ("advantages",) and handle.loss_id is None
        data = [
            types.Datum(
                model_input=types.ModelInput.from_ints([1, 2, 3]),
                loss_fn_inputs={"target_tokens": [2, 3, 4], "advantages": [1.0, 2.0, 3.0]},
            )
            for _ in range(2)
        ]
        output = training.forward_backward_custom(data, handle).result(20)
        assert output.metrics["custom/adv:mean"] == pytest.approx(2.0)
        assert "custom/nll:sum" in output.metrics
        assert torch.is_tensor(torch.tensor(0.0))
        with pytest.raises(ValueError, match="takes"):
            training.forward_backward_custom([datum([1, 2])], handle).result(10)
        with pytest.raises(ValueError, match="rank for each parameter"):
            client.create_custom_loss(weighted_nll, {"logprobs": 1}).result(10)
    finally:
        client.close()


def test_cancelling_a_sample_cancels_it_on_the_server() -> None:
    with LocalServer(long_poll_timeout=0.2, latency_by_endpoint={"asample": 3.0}) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
            future = sampler.sample(PROMPT, 1, PARAMS)
            wait_until(lambda: len(server.ledger.executions("asample")) == 1, what="the sample reaching the server")
            time.sleep(0.3)  # its answer (the future's request id) reaches the client, which now polls
            assert future.future().cancel()
            assert future.cancelled()
            wait_until(lambda: len(server.ledger.executions("cancel_future")) == 1, what="the server-side cancel")
            assert sampler.sample(PROMPT, 1, types.SamplingParams(max_tokens=1)).result(10).sequences
        finally:
            client.close()
