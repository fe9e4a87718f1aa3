"""LocalServer speaks both dialects over real HTTP: the 0.38 handshake, protobuf forward_backward bodies and
protobuf results for polls that ask, JSON for everyone else; the replay cache, the ledger and faults work alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from tinkex import types as t
from tinkex.proto import tinker_public_pb2 as pb
from tinkex.testing import FaultRule, LocalServer
from tinkex.types import codec
from tinkex.wire.protobuf_bodies import (
    decode_forward_backward_output,
    decode_sample_response,
    encode_forward_backward_request,
)

HEADERS = {"X-API-Key": "tml-dialect"}
PROTOBUF = {**HEADERS, "Content-Type": "application/x-protobuf"}
ACCEPT_PROTOBUF = {**HEADERS, "Accept": "application/x-protobuf"}


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(long_poll_timeout=0.3) as running:
        yield running


@pytest.fixture
def http(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url + "/api/v1", headers=HEADERS, timeout=5) as client:
        yield client


def _model(http: httpx.Client) -> str:
    session = http.post("/create_session", json={"tags": [], "user_metadata": {}, "sdk_version": "0.38.0", "type": "create_session"})
    body = {"session_id": session.json()["session_id"], "model_seq_id": 0, "base_model": "Qwen/Qwen3-8B",
            "lora_config": {"rank": 8}}
    future = http.post("/create_model", json=body).json()
    model_id: str = http.post("/retrieve_future", json={"request_id": future["request_id"]}).json()["model_id"]
    return model_id


def _request(model_id: str, seq_id: int, forward_only: bool = False) -> t.ForwardBackwardRequest | t.ForwardRequest:
    fb_input = t.ForwardBackwardInput(
        data=[t.Datum(model_input=t.ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={"target_tokens": [2, 3, 4]})],
        loss_fn="cross_entropy",
    )
    if forward_only:
        return t.ForwardRequest(forward_input=fb_input, model_id=model_id, seq_id=seq_id)
    return t.ForwardBackwardRequest(forward_backward_input=fb_input, model_id=model_id, seq_id=seq_id)


def _poll(http: httpx.Client, request_id: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return http.post("/retrieve_future", json={"request_id": request_id}, headers=headers or HEADERS)


def test_handshake_answers_every_flag_at_the_servers_default(http: httpx.Client) -> None:
    config = http.post("/client/config", json={"sdk_version": "0.38.0"})
    assert config.status_code == 200
    flags: dict[str, Any] = config.json()
    assert flags["pjwt_auth_enabled"] is False and flags["proto_compress_fwdbwd"] is False
    assert flags == msgspec.structs.asdict(t.ClientConfigResponse())
    assert len(flags) == len(t.ClientConfigResponse.__struct_fields__) == 17
    dynamic = http.post("/client/dynamic_config", json={"sdk_version": "0.38.0"})
    # Sample cancellation is on: this server implements cancel_future.
    assert dynamic.json() == {"refresh_interval_sec": 300, "sample_cancel_enabled": True,
                              "sample_cancel_max_batch_size": 64}
    assert http.get("/client/config").status_code == 405


def test_protobuf_forward_backward_gives_the_same_result_as_json(server: LocalServer, http: httpx.Client) -> None:
    model_id = _model(http)
    as_json = http.post("/forward_backward", content=codec.encode(_request(model_id, 1)),
                        headers={"Content-Type": "application/json"}).json()
    as_protobuf = http.post("/forward_backward", content=encode_forward_backward_request(_request(model_id, 2)),
                            headers=PROTOBUF).json()
    json_result = codec.decode(_poll(http, as_json["request_id"]).content, t.ForwardBackwardOutput)
    reply = _poll(http, as_protobuf["request_id"], ACCEPT_PROTOBUF)
    assert reply.headers["content-type"] == "application/x-protobuf"
    protobuf_result = decode_forward_backward_output(reply.content)
    assert protobuf_result.metrics.keys() == json_result.metrics.keys()
    # The second step ran after the first (no optim_step between): same weights, same logprobs.
    assert protobuf_result.loss_fn_outputs[0]["logprobs"].data == pytest.approx(
        json_result.loss_fn_outputs[0]["logprobs"].data, rel=1e-6
    )
    # A poll that does not ask for protobuf gets the same result as JSON.
    again = _poll(http, as_protobuf["request_id"])
    assert again.headers["content-type"] == "application/json"
    assert codec.decode(again.content, t.ForwardBackwardOutput).metrics == protobuf_result.metrics
    assert [e.seq_id for e in server.ledger.executions("forward_backward")] == [1, 2]


def test_forward_only_is_a_forward(server: LocalServer, http: httpx.Client) -> None:
    model_id = _model(http)
    future = http.post("/forward_backward", content=encode_forward_backward_request(_request(model_id, 1, True)),
                       headers=PROTOBUF).json()
    result = decode_forward_backward_output(_poll(http, future["request_id"], ACCEPT_PROTOBUF).content)
    assert len(result.loss_fn_outputs) == 1
    # A forward does not accumulate gradients: optim_step after it has nothing to apply (grad norm 0).
    step = http.post("/optim_step", json={"model_id": model_id, "seq_id": 2, "adam_params": {"learning_rate": 0.1}})
    metrics = _poll(http, step.json()["request_id"]).json()["metrics"]
    assert all(value == 0 for name, value in metrics.items() if name.startswith("grad_norm"))


def test_a_resent_protobuf_body_is_answered_from_the_replay_cache(server: LocalServer, http: httpx.Client) -> None:
    model_id = _model(http)
    body = encode_forward_backward_request(_request(model_id, 1))
    headers = {**PROTOBUF, "X-Idempotency-Key": "fb-1"}
    first = http.post("/forward_backward", content=body, headers=headers).json()
    second = http.post("/forward_backward", content=body, headers=headers).json()
    assert first == second
    assert len(server.ledger.executions("forward_backward")) == 1
    assert not server.ledger.duplicates_executed()


def test_faults_apply_to_protobuf_bodies(server: LocalServer, http: httpx.Client) -> None:
    model_id = _model(http)
    server.faults.add(FaultRule(endpoint="forward_backward", status=503, count=1))
    body = encode_forward_backward_request(_request(model_id, 1))
    assert http.post("/forward_backward", content=body, headers=PROTOBUF).status_code == 503
    assert server.ledger.executions("forward_backward") == []
    assert http.post("/forward_backward", content=body, headers=PROTOBUF).status_code == 200


@pytest.mark.parametrize(
    ("endpoint", "content", "headers", "status", "detail"),
    [
        ("/forward_backward", b"\xff\xff", PROTOBUF, 400, "not a valid tinker_public.ForwardBackwardRequest"),
        ("/forward_backward", b"", {**PROTOBUF, "Content-Encoding": "br"}, 415, "Content-Encoding 'br'"),
        ("/forward_backward", b"\x00\x01", {**PROTOBUF, "Content-Encoding": "zstd"}, 400, "not valid zstd"),
        ("/optim_step", b"", PROTOBUF, 415, "optim_step takes a JSON body"),
    ],
)
def test_protobuf_refusals_are_named(
    server: LocalServer, http: httpx.Client, endpoint: str, content: bytes, headers: dict[str, str], status: int,
    detail: str,
) -> None:
    reply = http.post(endpoint, content=content, headers=headers)
    assert reply.status_code == status and detail in reply.json()["detail"]
    assert server.ledger.executions() == []


def test_sample_results_in_protobuf_carry_the_sequence_ids_on_the_future(http: httpx.Client) -> None:
    session_id = http.post("/create_session", json={"tags": [], "user_metadata": {}, "sdk_version": "0.38.0"}).json()["session_id"]
    sampler = http.post("/create_sampling_session", json={
        "session_id": session_id, "sampling_session_seq_id": 0, "base_model": "Qwen/Qwen3-8B"}).json()
    future = http.post("/asample", json={
        "sampling_session_id": sampler["sampling_session_id"], "seq_id": 0, "num_samples": 2,
        "prompt": {"chunks": [{"tokens": [5, 6, 7], "type": "encoded_text"}]},
        "sampling_params": {"max_tokens": 3, "temperature": 1.0, "top_k": -1, "top_p": 1.0},
        "prompt_logprobs": True,
    }).json()
    assert len(future["sample_sequence_ids"]) == 2
    reply = _poll(http, future["request_id"], ACCEPT_PROTOBUF)
    assert reply.headers["content-type"] == "application/x-protobuf"
    assert len(pb.SampleResponse.FromString(reply.content).sequences) == 2
    from_protobuf = decode_sample_response(reply.content)
    from_json = codec.decode(_poll(http, future["request_id"]).content, t.SampleResponse)
    assert [s.tokens for s in from_protobuf.sequences] == [s.tokens for s in from_json.sequences]
    assert from_protobuf.prompt_logprobs is not None and from_protobuf.prompt_logprobs[0] is None
    assert from_protobuf.prompt_logprobs[1:] == pytest.approx(from_json.prompt_logprobs[1:], rel=1e-6)  # type: ignore[index]


def test_a_failed_future_answers_json_even_to_a_protobuf_poll(server: LocalServer, http: httpx.Client) -> None:
    model_id = _model(http)
    server.faults.add(FaultRule(endpoint="forward_backward", kind="request_failed", category="user", message="bad"))
    future = http.post("/forward_backward", content=encode_forward_backward_request(_request(model_id, 1)),
                       headers=PROTOBUF).json()
    reply = _poll(http, future["request_id"], ACCEPT_PROTOBUF)
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"error": "bad", "category": "user"}


def test_a_protobuf_body_is_checked_as_its_json_would_be(server: LocalServer, http: httpx.Client) -> None:
    model_id = _model(http)
    request = _request(model_id, 1)
    assert isinstance(request, t.ForwardBackwardRequest)
    bad = t.ForwardBackwardRequest.model_construct(
        forward_backward_input=t.ForwardBackwardInput.model_construct(
            data=request.forward_backward_input.data, loss_fn="no_such_loss"
        ),
        model_id=model_id,
        seq_id=1,
    )
    as_json = http.post("/forward_backward", content=codec.encode(bad), headers={"Content-Type": "application/json"})
    as_protobuf = http.post("/forward_backward", content=encode_forward_backward_request(bad), headers=PROTOBUF)
    assert as_json.status_code == as_protobuf.status_code == 422
    assert "loss_fn" in as_protobuf.text
    assert server.ledger.executions() == [e for e in server.ledger.executions() if e.endpoint != "forward_backward"]
