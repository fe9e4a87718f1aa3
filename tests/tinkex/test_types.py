"""Wire types: exact request JSON (docs/wire.md §12.3), response decoding (§12.2), strictness, helpers."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import msgspec
import numpy as np
import pytest

from tinkex.types import (
    AdamParams,
    Checkpoint,
    CheckpointsListResponse,
    CreateModelRequest,
    CreateModelResponse,
    CreateSamplingSessionRequest,
    CreateSamplingSessionResponse,
    CreateSessionRequest,
    CreateSessionResponse,
    Datum,
    EncodedTextChunk,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
    ForwardRequest,
    FutureMetadataOnlyResponse,
    FutureRetrieveRequest,
    GenericEvent,
    GetInfoRequest,
    GetInfoResponse,
    GetServerCapabilitiesResponse,
    HealthResponse,
    ImageAssetPointerChunk,
    ImageChunk,
    LoadWeightsRequest,
    LoraConfig,
    ModelInput,
    ModelInputChunk,
    OptimStepRequest,
    OptimStepResponse,
    ParsedCheckpointTinkerPath,
    RequestErrorCategory,
    RequestFailedResponse,
    SampleRequest,
    SampleResponse,
    SamplingParams,
    SaveWeightsForSamplerRequest,
    SaveWeightsForSamplerResponseInternal,
    SaveWeightsRequest,
    SessionEndEvent,
    SessionHeartbeatRequest,
    SessionHeartbeatResponse,
    SessionStartEvent,
    SetCheckpointTtlRequest,
    TelemetryEvent,
    TelemetryResponse,
    TelemetrySendRequest,
    TensorData,
    TrainingRun,
    TryAgainResponse,
    UnhandledExceptionEvent,
    UnloadModelRequest,
    UntypedAPIFuture,
    WeightsInfoRequest,
    WeightsInfoResponse,
)
from tinkex.types.codec import convert, decode, encode

SESSION = "sess-b4eedb46"
MODEL = "sess-b4eedb46:train:0"
SAMPLER_PATH = "tinker://sess-b4eedb46:train:0/sampler_weights/step-1"


def _fwdbwd_datum() -> Datum:
    return Datum(
        loss_fn_inputs={"target_tokens": [2, 3, 4, 5], "weights": [1, 1, 1, 1]},
        model_input=ModelInput.from_ints([1, 2, 3, 4]),
    )


# Each pair: a request built the way the official SDK 0.16.1 builds it, and the body observed on the wire.
OBSERVED_REQUESTS: list[tuple[msgspec.Struct, bytes]] = [
    (
        CreateSessionRequest(
            tags=[], user_metadata={"purpose": "fake-server-test"}, sdk_version="0.16.1", project_id=None
        ),
        b'{"tags":[],"user_metadata":{"purpose":"fake-server-test"},"sdk_version":"0.16.1","project_id":null}',
    ),
    (
        CreateModelRequest(
            session_id=SESSION,
            model_seq_id=0,
            base_model="Qwen/Qwen3-8B",
            user_metadata=None,
            lora_config=LoraConfig(rank=8),
        ),
        b'{"session_id":"sess-b4eedb46","model_seq_id":0,"base_model":"Qwen/Qwen3-8B","user_metadata":null,'
        b'"lora_config":{"rank":8,"seed":null,"train_unembed":true,"train_mlp":true,"train_attn":true}}',
    ),
    (
        FutureRetrieveRequest(request_id="req-1", allow_metadata_only=True),
        b'{"request_id":"req-1","allow_metadata_only":true}',
    ),
    (
        ForwardBackwardRequest(
            forward_backward_input=ForwardBackwardInput(
                data=[_fwdbwd_datum()], loss_fn="cross_entropy", loss_fn_config=None
            ),
            model_id=MODEL,
            seq_id=1,
        ),
        b'{"forward_backward_input":{"data":[{"loss_fn_inputs":{'
        b'"target_tokens":{"data":[2,3,4,5],"dtype":"int64","shape":[4]},'
        b'"weights":{"data":[1.0,1.0,1.0,1.0],"dtype":"float32","shape":[4]}},'
        b'"model_input":{"chunks":[{"tokens":[1,2,3,4]}]}}],"loss_fn":"cross_entropy","loss_fn_config":null},'
        b'"model_id":"sess-b4eedb46:train:0","seq_id":1}',
    ),
    (
        OptimStepRequest(adam_params=AdamParams(learning_rate=1e-4), model_id=MODEL, seq_id=2),
        b'{"adam_params":{"learning_rate":0.0001},"model_id":"sess-b4eedb46:train:0","seq_id":2}',
    ),
    (
        OptimStepRequest(adam_params=AdamParams(), model_id=MODEL, seq_id=2),
        b'{"adam_params":{},"model_id":"sess-b4eedb46:train:0","seq_id":2}',
    ),
    (
        SaveWeightsForSamplerRequest(model_id=MODEL, path="step-1", seq_id=3, ttl_seconds=None),
        b'{"model_id":"sess-b4eedb46:train:0","path":"step-1","seq_id":3,"ttl_seconds":null}',
    ),
    (
        SaveWeightsForSamplerRequest(model_id=MODEL, sampling_session_seq_id=1, seq_id=5, ttl_seconds=None),
        b'{"model_id":"sess-b4eedb46:train:0","sampling_session_seq_id":1,"seq_id":5,"ttl_seconds":null}',
    ),
    (
        CreateSamplingSessionRequest(
            session_id=SESSION, sampling_session_seq_id=0, base_model=None, model_path=SAMPLER_PATH
        ),
        b'{"session_id":"sess-b4eedb46","sampling_session_seq_id":0,"base_model":null,'
        b'"model_path":"tinker://sess-b4eedb46:train:0/sampler_weights/step-1"}',
    ),
    (
        SampleRequest(
            num_samples=2,
            prompt=ModelInput.from_ints([5, 6, 7]),
            sampling_params=SamplingParams(max_tokens=4, temperature=0.7),
            sampling_session_id="sess-b4eedb46:sample:0",
            seq_id=0,
            prompt_logprobs=False,
            topk_prompt_logprobs=0,
        ),
        b'{"num_samples":2,"prompt":{"chunks":[{"tokens":[5,6,7]}]},'
        b'"sampling_params":{"max_tokens":4,"temperature":0.7},'
        b'"sampling_session_id":"sess-b4eedb46:sample:0","seq_id":0,"prompt_logprobs":false,'
        b'"topk_prompt_logprobs":0}',
    ),
    (
        SampleRequest(
            num_samples=1,
            prompt=ModelInput.from_ints([5, 6, 7]),
            sampling_params=SamplingParams(max_tokens=1),
            sampling_session_id="sess-b4eedb46:sample:1",
            seq_id=1,
            prompt_logprobs=True,
        ),
        b'{"num_samples":1,"prompt":{"chunks":[{"tokens":[5,6,7]}]},"sampling_params":{"max_tokens":1},'
        b'"sampling_session_id":"sess-b4eedb46:sample:1","seq_id":1,"prompt_logprobs":true,'
        b'"topk_prompt_logprobs":0}',
    ),
    (
        SaveWeightsRequest(model_id=MODEL, path="ckpt-1", seq_id=4, ttl_seconds=None),
        b'{"model_id":"sess-b4eedb46:train:0","path":"ckpt-1","seq_id":4,"ttl_seconds":null}',
    ),
    (SessionHeartbeatRequest(session_id=SESSION), b'{"session_id":"sess-b4eedb46"}'),
    (
        TelemetrySendRequest(
            events=[
                SessionStartEvent(
                    event_id="6f1c",
                    event_session_index=0,
                    timestamp=datetime(2026, 11, 26, 3, 16, 59, 806166, tzinfo=timezone.utc),
                )
            ],
            platform="Linux",
            sdk_version="0.16.1",
            session_id=SESSION,
        ),
        b'{"events":[{"event":"SESSION_START","event_id":"6f1c","event_session_index":0,"severity":"INFO",'
        b'"timestamp":"2026-11-26T03:16:59.806166Z"}],"platform":"Linux","sdk_version":"0.16.1",'
        b'"session_id":"sess-b4eedb46"}',
    ),
    # Shapes from the endpoint tables (§1.3, §1.5) that the recorded run did not exercise.
    (GetInfoRequest(model_id=MODEL), b'{"model_id":"sess-b4eedb46:train:0"}'),
    (UnloadModelRequest(model_id=MODEL), b'{"model_id":"sess-b4eedb46:train:0"}'),
    (
        ForwardRequest(
            forward_input=ForwardBackwardInput(data=[], loss_fn="cross_entropy"), model_id=MODEL, seq_id=7
        ),
        b'{"forward_input":{"data":[],"loss_fn":"cross_entropy","loss_fn_config":null},'
        b'"model_id":"sess-b4eedb46:train:0","seq_id":7}',
    ),
    (
        LoadWeightsRequest(model_id=MODEL, path="tinker://r/weights/ckpt-1", optimizer=True, seq_id=6),
        b'{"model_id":"sess-b4eedb46:train:0","path":"tinker://r/weights/ckpt-1","optimizer":true,"seq_id":6}',
    ),
    (WeightsInfoRequest(tinker_path="tinker://r/weights/a"), b'{"tinker_path":"tinker://r/weights/a"}'),
    (SetCheckpointTtlRequest(ttl_seconds=None), b'{"ttl_seconds":null}'),
    (SetCheckpointTtlRequest(ttl_seconds=3600), b'{"ttl_seconds":3600}'),
]


@pytest.mark.parametrize(("request_obj", "wire"), OBSERVED_REQUESTS, ids=lambda v: type(v).__name__)
def test_request_encodes_to_observed_body(request_obj: msgspec.Struct, wire: bytes) -> None:
    assert encode(request_obj) == wire


@pytest.mark.parametrize(("request_obj", "wire"), OBSERVED_REQUESTS, ids=lambda v: type(v).__name__)
def test_strict_server_decodes_observed_body_back(request_obj: msgspec.Struct, wire: bytes) -> None:
    decoded = decode(wire, type(request_obj))
    assert decoded == request_obj
    assert encode(decoded) == wire


@pytest.mark.parametrize(("request_obj", "wire"), OBSERVED_REQUESTS, ids=lambda v: type(v).__name__)
def test_unknown_field_in_request_is_rejected_by_name(request_obj: msgspec.Struct, wire: bytes) -> None:
    tampered = wire[:-1] + b',"surprise_field":1}'
    with pytest.raises(msgspec.ValidationError, match=r"unknown field `surprise_field`") as info:
        decode(tampered, type(request_obj))
    assert type(request_obj).__name__ in str(info.value)


def test_unknown_field_nested_in_a_chunk_names_the_full_path() -> None:
    body = (
        b'{"forward_backward_input":{"data":[{"loss_fn_inputs":{},"model_input":{"chunks":'
        b'[{"tokens":[1]},{"tokens":[2],"colour":"red"}]}}],"loss_fn":"ppo"},"model_id":"m","seq_id":1}'
    )
    with pytest.raises(msgspec.ValidationError) as info:
        decode(body, ForwardBackwardRequest)
    message = str(info.value)
    assert "unknown field `colour`" in message
    assert "`$.forward_backward_input.data[0].model_input.chunks[1]`" in message


def test_wrong_type_inside_a_chunk_names_the_merged_path() -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        decode(b'{"prompt":{"chunks":[{"tokens":[1,"x"]}]},"sampling_params":{}}', SampleRequest)
    assert "Expected `int`, got `str` - at `$.prompt.chunks[0].tokens[1]`" in str(info.value)


def test_unknown_loss_fn_and_malformed_json_are_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.loss_fn"):
        decode(b'{"data":[],"loss_fn":"my_own_loss"}', ForwardBackwardInput)
    with pytest.raises(msgspec.DecodeError):
        decode(b'{"data":', ForwardBackwardInput)


# --- responses (§12.2) -------------------------------------------------------------------------------------


def test_minimal_responses_decode() -> None:
    assert decode(b'{"session_id":"sess-b4eedb46"}', CreateSessionResponse).session_id == SESSION
    future = decode(b'{"request_id":"req-1","model_id":"sess-b4eedb46:train:0"}', UntypedAPIFuture)
    assert (future.request_id, future.model_id) == ("req-1", MODEL)
    assert decode(b'{"request_id":"req-2"}', UntypedAPIFuture).model_id is None
    assert decode(b'{"model_id":"sess-b4eedb46:train:0"}', CreateModelResponse).model_id == MODEL
    try_again = decode(b'{"type":"try_again","request_id":"req-1","queue_state":"active"}', TryAgainResponse)
    assert (try_again.request_id, try_again.queue_state) == ("req-1", "active")
    assert decode(b'{"metrics":{}}', OptimStepResponse).metrics == {}
    assert decode(b"{}", OptimStepResponse).metrics is None
    named = decode(b'{"path":"' + SAMPLER_PATH.encode() + b'"}', SaveWeightsForSamplerResponseInternal)
    assert (named.path, named.sampling_session_id) == (SAMPLER_PATH, None)
    ephemeral = decode(
        b'{"sampling_session_id":"sess-b4eedb46:sample:1","path":null}', SaveWeightsForSamplerResponseInternal
    )
    assert (ephemeral.path, ephemeral.sampling_session_id) == (None, "sess-b4eedb46:sample:1")
    assert (
        decode(b'{"sampling_session_id":"sess-b4eedb46:sample:0"}', CreateSamplingSessionResponse)
        .sampling_session_id
        == "sess-b4eedb46:sample:0"
    )
    assert decode(b"{}", SessionHeartbeatResponse).type == "session_heartbeat"  # official default
    assert decode(b'{"status":"accepted"}', TelemetryResponse).status == "accepted"
    assert decode(b'{"status":"ok"}', HealthResponse).status == "ok"


def test_forward_backward_output_decodes() -> None:
    body = (
        b'{"loss_fn_output_type":"ArrayRecord","loss_fn_outputs":[{"logprobs":{"data":[-0.5,-0.5],'
        b'"dtype":"float32","shape":[2]}}],"metrics":{"loss:sum":1.0}}'
    )
    output = decode(body, ForwardBackwardOutput)
    assert output.loss_fn_output_type == "ArrayRecord"
    assert output.metrics == {"loss:sum": 1.0}
    np.testing.assert_array_equal(output.loss_fn_outputs[0]["logprobs"].to_numpy(), np.array([-0.5, -0.5]))


def test_sample_response_decodes_with_optional_fields() -> None:
    body = b'{"sequences":[{"stop_reason":"length","tokens":[8,9,10,11],"logprobs":[-0.1,-0.1,-0.1,-0.1]}]}'
    response = decode(body, SampleResponse)
    assert response.sequences[0].tokens == [8, 9, 10, 11]
    assert response.sequences[0].stop_reason == "length"
    assert response.prompt_logprobs is None
    with_prompt = decode(
        b'{"sequences":[],"prompt_logprobs":[null,-1.5],"topk_prompt_logprobs":[null,[[3,-0.2]]]}',
        SampleResponse,
    )
    assert with_prompt.prompt_logprobs == [None, -1.5]
    assert with_prompt.topk_prompt_logprobs == [None, [(3, -0.2)]]


def test_failure_and_metadata_only_replies_decode() -> None:
    failed = decode(b'{"error":"boom","category":"user"}', RequestFailedResponse)
    assert failed.category is RequestErrorCategory.User
    assert failed.category.name == "User"
    # Required, as officially: the client reads a category-less failure from the raw body, not this type.
    with pytest.raises(msgspec.ValidationError, match="missing required field `category`"):
        decode(b'{"error":"boom"}', RequestFailedResponse)
    metadata = decode(b'{"status":"complete_metadata","response_payload_size":1234}', FutureMetadataOnlyResponse)
    assert metadata.response_payload_size == 1234


def test_responses_ignore_unknown_fields_including_038_additions() -> None:
    future = decode(b'{"request_id":"r","model_id":null,"sample_sequence_ids":["seq-a"]}', UntypedAPIFuture)
    assert future.request_id == "r"
    caps = decode(
        b'{"supported_models":[{"model_name":"Qwen/Qwen3-8B","max_context_length":32768,"brand_new":1}]}',
        GetServerCapabilitiesResponse,
    )
    assert caps.supported_models[0].model_name == "Qwen/Qwen3-8B"
    info = decode(
        b'{"model_data":{"arch":"qwen","tokenizer_id":"Qwen/Qwen3-8B:rev"},"model_id":"m","is_lora":true}',
        GetInfoResponse,
    )
    assert (info.model_data.tokenizer_id, info.is_lora, info.lora_rank) == ("Qwen/Qwen3-8B:rev", True, None)


@pytest.mark.parametrize(
    ("body", "type_", "field"),
    [
        (b'{"loss_fn_output_type":"x"}', ForwardBackwardOutput, "loss_fn_outputs"),
        (b'{"type":"create_session"}', CreateSessionResponse, "session_id"),
        (b'{"model_id":"m"}', UntypedAPIFuture, "request_id"),
        (b'{"sequences":[{"stop_reason":"stop"}]}', SampleResponse, "tokens"),
        (b'{"base_model":"b"}', WeightsInfoResponse, "is_lora"),
    ],
)
def test_missing_required_response_field_is_named(body: bytes, type_: type, field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=f"missing required field `{field}`") as info:
        decode(body, type_)
    assert type_.__name__ in str(info.value)


def test_response_type_literal_must_match_when_present() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.type"):
        decode(b'{"session_id":"s","type":"sample"}', CreateSessionResponse)


def test_server_side_response_encoding_is_minimal() -> None:
    assert encode(CreateSessionResponse(session_id=SESSION)) == b'{"session_id":"sess-b4eedb46"}'
    assert encode(UntypedAPIFuture(request_id="req-2")) == b'{"request_id":"req-2"}'
    assert encode(OptimStepResponse(metrics={})) == b'{"metrics":{}}'
    assert encode(SessionHeartbeatResponse()) == b"{}"
    assert encode(TelemetryResponse()) == b'{"status":"accepted"}'
    assert encode(FutureMetadataOnlyResponse(response_payload_size=9)) == (
        b'{"status":"complete_metadata","response_payload_size":9}'
    )
    assert encode(TryAgainResponse(request_id="req-1", queue_state="active")).startswith(
        b'{"type":"try_again","request_id":"req-1","queue_state":"active"'
    )
    assert encode(RequestFailedResponse(error="e", category=RequestErrorCategory.Server)) == (
        b'{"error":"e","category":"server"}'
    )


# --- defaults that are read but not sent ---------------------------------------------------------------------


def test_adam_params_read_documented_defaults_but_send_only_what_was_set() -> None:
    params = AdamParams()
    assert (params.learning_rate, params.beta1, params.beta2, params.eps) == (1e-4, 0.9, 0.95, 1e-12)
    assert (params.weight_decay, params.grad_clip_norm) == (0.0, 0.0)
    assert encode(params) == b"{}"
    assert encode(AdamParams(beta2=0.99, grad_clip_norm=1.0)) == b'{"beta2":0.99,"grad_clip_norm":1.0}'
    decoded = decode(b'{"beta1":0.5}', AdamParams)
    assert (decoded.beta1, decoded.learning_rate) == (0.5, 1e-4)
    assert AdamParams() == AdamParams()
    assert AdamParams() != AdamParams(learning_rate=1e-4)


def test_sampling_params_defaults_and_stop_variants() -> None:
    params = SamplingParams()
    assert (params.max_tokens, params.seed, params.stop) == (None, None, None)
    assert (params.temperature, params.top_k, params.top_p) == (1.0, -1, 1.0)
    assert encode(params) == b"{}"
    assert encode(SamplingParams(stop="\n", seed=None)) == b'{"seed":null,"stop":"\\n"}'
    assert encode(SamplingParams(stop=["a", "b"])) == b'{"stop":["a","b"]}'
    assert encode(SamplingParams(stop=(7, 8))) == b'{"stop":[7,8]}'
    with pytest.raises(ValueError, match="not a mix"):
        SamplingParams(stop=["a", 1])


def test_discriminators_are_absent_unless_set_and_read_their_literal() -> None:
    chunk = EncodedTextChunk(tokens=[1])
    assert chunk.type == "encoded_text"
    assert encode(chunk) == b'{"tokens":[1]}'
    assert encode(EncodedTextChunk(tokens=[1], type="encoded_text")) == b'{"tokens":[1],"type":"encoded_text"}'
    assert CreateSessionRequest(tags=[], user_metadata={}, sdk_version="v").type == "create_session"
    assert SaveWeightsForSamplerRequest(model_id="m", seq_id=1).path is None


def test_request_types_are_immutable() -> None:
    with pytest.raises(AttributeError):
        AdamParams().learning_rate = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        EncodedTextChunk(tokens=[1]).tokens = [2]  # type: ignore[misc]


# --- chunks and ModelInput -----------------------------------------------------------------------------------


def test_chunk_variant_is_inferred_from_keys() -> None:
    png = b"\x89PNG\r\n"
    body = (
        b'{"chunks":[{"tokens":[1,2]},{"data":"' + base64.b64encode(png) + b'","format":"png","expected_tokens":3},'
        b'{"format":"jpeg","location":"s3://bucket/cat.jpg"},{"tokens":[9],"type":"encoded_text"}]}'
    )
    model_input = decode(body, ModelInput)
    text, image, pointer, tagged = model_input.chunks
    assert isinstance(text, EncodedTextChunk) and text.tokens == [1, 2]
    assert isinstance(image, ImageChunk) and image.data == png and image.expected_tokens == 3
    assert isinstance(pointer, ImageAssetPointerChunk) and pointer.location == "s3://bucket/cat.jpg"
    assert isinstance(tagged, EncodedTextChunk) and tagged.type == "encoded_text"
    assert all(isinstance(chunk, ModelInputChunk) for chunk in model_input.chunks)
    assert encode(model_input) == body


def test_an_explicit_type_wins_over_key_inference() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `tokens`"):
        decode(b'{"chunks":[{"type":"image_asset_pointer","tokens":[1]}]}', ModelInput)


def test_unrecognisable_chunk_is_rejected_with_its_path() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"cannot tell the ModelInputChunk variant.*\$\.chunks\[0\]"):
        decode(b'{"chunks":[{"text":"hi"}]}', ModelInput)
    with pytest.raises(msgspec.ValidationError, match=r"Expected `object`.*\$\.chunks\[0\]"):
        decode(b'{"chunks":[[1]]}', ModelInput)


def test_image_chunk_bytes_are_base64_on_the_wire() -> None:
    chunk = ImageChunk(data=b"\x00\x01\xff", format="png")
    assert encode(chunk) == b'{"data":"AAH/","format":"png"}'
    assert convert({"data": "AAH/", "format": "png"}, ImageChunk).data == b"\x00\x01\xff"


def test_model_input_helpers() -> None:
    base = ModelInput.from_ints([1, 2])
    longer = base.append_int(3).append(EncodedTextChunk(tokens=[4, 5]))
    assert base.to_ints() == [1, 2]
    assert longer.to_ints() == [1, 2, 3, 4, 5]
    assert longer.length == 5
    assert len(longer.chunks) == 3
    assert ModelInput.empty().length == 0
    with_image = base.append(ImageAssetPointerChunk(format="png", location="x", expected_tokens=7))
    assert with_image.length == 9
    with pytest.raises(ValueError, match="chunk 1 is ImageAssetPointerChunk"):
        with_image.to_ints()
    with pytest.raises(ValueError, match="expected_tokens is not set"):
        _ = ModelInput(chunks=[ImageChunk(data=b"x", format="png")]).length


# --- TensorData and Datum --------------------------------------------------------------------------------------


def test_tensor_data_numpy_round_trips() -> None:
    floats = np.arange(6, dtype=np.float64).reshape(2, 3) / 4
    tensor = TensorData.from_numpy(floats)
    assert (tensor.dtype, tensor.shape) == ("float32", [2, 3])
    back = tensor.to_numpy()
    assert back.dtype == np.float32 and back.shape == (2, 3)
    np.testing.assert_array_equal(back, floats.astype(np.float32))
    ints = TensorData.from_numpy(np.array([[1, 2], [3, 4]], dtype=np.int32))
    assert (ints.dtype, ints.data) == ("int64", [1, 2, 3, 4])
    assert ints.tolist() == [[1, 2], [3, 4]]
    assert decode(encode(ints), TensorData) == ints
    assert TensorData(data=[1, 2], dtype="int64").to_numpy().shape == (2,)
    with pytest.raises(ValueError, match="unsupported numpy dtype uint8"):
        TensorData.from_numpy(np.array([1], dtype=np.uint8))


def test_tensor_data_torch_round_trip() -> None:
    torch = pytest.importorskip("torch")
    source = torch.tensor([[0.5, 1.5], [2.5, 3.5]], dtype=torch.float64)
    tensor = TensorData.from_torch(source)
    assert (tensor.dtype, tensor.shape, tensor.data) == ("float32", [2, 2], [0.5, 1.5, 2.5, 3.5])
    back = tensor.to_torch()
    assert back.dtype == torch.float32 and tuple(back.shape) == (2, 2)
    assert TensorData.from_torch(torch.tensor([1, 2], dtype=torch.int32)).dtype == "int64"


def test_datum_converts_loss_fn_inputs_by_key() -> None:
    datum = Datum(
        loss_fn_inputs={
            "target_tokens": [2, 3],
            "weights": [1, 0],
            "advantages": np.array([0.5, -0.5]),
            "custom_ints": [[1, 2], [3, 4]],
        },
        model_input=ModelInput.from_ints([1, 2]),
    )
    inputs = datum.loss_fn_inputs
    assert (inputs["target_tokens"].dtype, inputs["target_tokens"].data) == ("int64", [2, 3])
    assert (inputs["weights"].dtype, inputs["weights"].data) == ("float32", [1.0, 0.0])
    assert inputs["advantages"].dtype == "float32"
    assert (inputs["custom_ints"].dtype, inputs["custom_ints"].shape) == ("int64", [2, 2])
    assert all(tensor.shape is not None for tensor in inputs.values())


def test_datum_converts_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    datum = Datum(
        loss_fn_inputs={"logprobs": torch.tensor([-1.0, -2.0])}, model_input=ModelInput.from_ints([1])
    )
    assert datum.loss_fn_inputs["logprobs"] == TensorData(data=[-1.0, -2.0], dtype="float32", shape=[2])


def test_datum_rejects_unusable_inputs() -> None:
    with pytest.raises(ValueError, match="'weights'.*rectangular"):
        Datum(loss_fn_inputs={"weights": [[1.0], [1.0, 2.0]]}, model_input=ModelInput.empty())
    with pytest.raises(ValueError, match="'target_tokens'.*numeric"):
        Datum(loss_fn_inputs={"target_tokens": ["a", "b"]}, model_input=ModelInput.empty())
    with pytest.raises(TypeError, match=r"\['weights'\] has unsupported type str"):
        Datum(loss_fn_inputs={"weights": "1,2"}, model_input=ModelInput.empty())  # type: ignore[dict-item]


# --- paths, REST records, telemetry -----------------------------------------------------------------------------


def test_tinker_paths_parse() -> None:
    training = ParsedCheckpointTinkerPath.from_tinker_path("tinker://sess-b4eedb46:train:0/weights/ckpt-1")
    assert training.training_run_id == "sess-b4eedb46:train:0"
    assert training.checkpoint_type == "training"
    assert training.checkpoint_id == "weights/ckpt-1"
    sampler = ParsedCheckpointTinkerPath.from_tinker_path(SAMPLER_PATH)
    assert (sampler.checkpoint_type, sampler.checkpoint_id) == ("sampler", "sampler_weights/step-1")
    assert sampler.tinker_path == SAMPLER_PATH


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("s3://run/weights/x", "must start with"),
        ("tinker://run/weights", "exactly 3"),
        ("tinker://run/weights/x/y", "exactly 3"),
        ("tinker://run//x", "exactly 3"),
        ("tinker://run/checkpoints/x", "kind 'checkpoints'"),
    ],
)
def test_invalid_tinker_paths_are_rejected(path: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ParsedCheckpointTinkerPath.from_tinker_path(path)


def test_rest_records_decode_datetimes() -> None:
    checkpoint_json = (
        b'{"checkpoint_id":"weights/ckpt-1","checkpoint_type":"training","time":"2026-11-26T03:16:59Z",'
        b'"tinker_path":"tinker://r/weights/ckpt-1","size_bytes":1024,"expires_at":null}'
    )
    listing = decode(b'{"checkpoints":[' + checkpoint_json + b"]}", CheckpointsListResponse)
    checkpoint = listing.checkpoints[0]
    assert checkpoint.time == datetime(2026, 11, 26, 3, 16, 59, tzinfo=timezone.utc)
    assert (checkpoint.public, checkpoint.expires_at, listing.cursor) == (False, None, None)
    run = decode(
        b'{"training_run_id":"r","base_model":"b","model_owner":"o","is_lora":true,'
        b'"last_request_time":"2026-11-26T03:17:00+00:00","last_checkpoint":' + checkpoint_json + b"}",
        TrainingRun,
    )
    assert isinstance(run.last_checkpoint, Checkpoint)
    assert (run.corrupted, run.lora_rank, run.user_metadata) == (False, None, None)
    assert run.last_request_time.tzinfo is not None


def test_telemetry_events_encode_and_decode_by_event_key() -> None:
    when = datetime(2026, 11, 26, 3, 16, 59, 806166, tzinfo=timezone.utc)
    events: list[TelemetryEvent] = [
        SessionStartEvent(event_id="a", event_session_index=0, timestamp=when),
        GenericEvent(
            event_id="b",
            event_name="user_error",
            event_session_index=1,
            severity="WARNING",
            timestamp=when,
            event_data={"status_code": 400},
        ),
        UnhandledExceptionEvent(
            error_message="boom", error_type="RuntimeError", event_id="c", event_session_index=2, timestamp=when
        ),
        SessionEndEvent(
            duration=str(timedelta(seconds=0.950423)), event_id="d", event_session_index=3, timestamp=when
        ),
    ]
    request = TelemetrySendRequest(events=events, platform="Linux", sdk_version="0.16.1", session_id=SESSION)
    wire = encode(request)
    assert (
        b'{"duration":"0:00:00.950423","event":"SESSION_END","event_id":"d","event_session_index":3,'
        b'"severity":"INFO","timestamp":"2026-11-26T03:16:59.806166Z"}' in wire
    )
    assert (
        b'{"event":"GENERIC_EVENT","event_id":"b","event_name":"user_error","event_session_index":1,'
        b'"severity":"WARNING","timestamp":"2026-11-26T03:16:59.806166Z","event_data":{"status_code":400}}'
        in wire
    )
    assert b'"error_type":"RuntimeError","event":"UNHANDLED_EXCEPTION"' in wire
    assert b'"severity":"ERROR","timestamp":"2026-11-26T03:16:59.806166Z","traceback":null}' in wire
    decoded = decode(wire, TelemetrySendRequest)
    assert decoded == request
    assert [type(event) for event in decoded.events] == [type(event) for event in events]


def test_telemetry_rejects_unknown_event_types() -> None:
    body = b'{"events":[{"event":"MYSTERY"}],"platform":"Linux","sdk_version":"v","session_id":"s"}'
    with pytest.raises(msgspec.ValidationError, match=r"unknown telemetry event type 'MYSTERY'.*\$\.events\[0\]"):
        decode(body, TelemetrySendRequest)


def test_telemetry_accepts_process_uuid_from_newer_sdks() -> None:
    body = b'{"events":[],"platform":"Linux","sdk_version":"0.38.0","session_id":"s","process_uuid":"p"}'
    assert decode(body, TelemetrySendRequest).process_uuid == "p"
    assert TelemetrySendRequest(events=[], platform="L", sdk_version="v", session_id="s").process_uuid is None
