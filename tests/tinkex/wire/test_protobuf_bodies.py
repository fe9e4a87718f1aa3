"""tinkex.wire.protobuf_bodies: every body round-trips, the protocol's conventions hold, bad bodies are named."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinkex import types as t
from tinkex.proto import tinker_public_pb2 as pb
from tinkex.wire.protobuf_bodies import (
    ProtobufBodyError,
    decode_forward_backward_output,
    decode_forward_backward_request,
    decode_sample_response,
    encode_forward_backward_output,
    encode_forward_backward_request,
    encode_sample_response,
)


def _datum(tokens: list[int], spans: bool = False) -> t.Datum:
    datum = t.Datum(
        model_input=t.ModelInput(chunks=[t.EncodedTextChunk(tokens=tokens[:2]), t.EncodedTextChunk(tokens=tokens[2:])]),
        loss_fn_inputs={
            "target_tokens": t.TensorData(data=[x + 1 for x in tokens], dtype="int64", shape=[len(tokens)]),
            "weights": t.TensorData(data=[0.5] * len(tokens), dtype="float32", shape=[len(tokens)]),
        },
    )
    if spans:
        datum = datum.with_provenance(
            [t.PromptProvenanceSpan(sequence_id="q", offset=0, length=len(tokens))],
            [t.SampledProvenanceSpan(sequence_id="q", offset=1, length=len(tokens))],
        )
    return datum


@pytest.mark.parametrize(
    "config", [None, {"clip_low_threshold": 0.75, "clip_high_threshold": 1.25}, {"beta": 0.5, "mode": "stable"}]
)
@pytest.mark.parametrize("spans", [False, True])
def test_forward_backward_request_round_trips(config: dict[str, float | str] | None, spans: bool) -> None:
    request = t.ForwardBackwardRequest(
        forward_backward_input=t.ForwardBackwardInput(
            data=[_datum([1, 2, 3, 4], spans), _datum([2**31 - 1, 0, 5], spans)], loss_fn="ppo", loss_fn_config=config
        ),
        model_id="sess:train:0",
        seq_id=7,
    )
    assert decode_forward_backward_request(encode_forward_backward_request(request)) == request


def test_forward_request_travels_as_forward_only() -> None:
    request = t.ForwardRequest(
        forward_input=t.ForwardBackwardInput(data=[_datum([3, 4, 5])], loss_fn="cross_entropy"),
        model_id="sess:train:0",
        seq_id=2,
    )
    body = encode_forward_backward_request(request)
    assert pb.ForwardBackwardRequest.FromString(body).forward_only
    assert decode_forward_backward_request(body) == request


def test_numbers_go_to_both_config_maps_and_v2_wins_when_read() -> None:
    request = t.ForwardBackwardRequest(
        forward_backward_input=t.ForwardBackwardInput(data=[], loss_fn="ppo", loss_fn_config={"a": 1.5, "b": "x"}),
        model_id="m",
        seq_id=1,
    )
    message = pb.ForwardBackwardRequest.FromString(encode_forward_backward_request(request))
    assert dict(message.loss_fn_config) == {"a": 1.5}
    assert {k: v.WhichOneof("value") for k, v in message.loss_fn_config_v2.items()} == {"a": "number", "b": "text"}
    legacy_only = pb.ForwardBackwardRequest(model_id="m", seq_id=1, loss_fn="ppo", loss_fn_config={"c": 2.0})
    decoded = decode_forward_backward_request(legacy_only.SerializeToString())
    assert isinstance(decoded, t.ForwardBackwardRequest)
    assert decoded.forward_backward_input.loss_fn_config == {"c": 2.0}


def test_tokens_are_int32_little_endian() -> None:
    request = t.ForwardBackwardRequest(
        forward_backward_input=t.ForwardBackwardInput(data=[_datum([1, 258, 3])], loss_fn="cross_entropy"),
        model_id="m",
        seq_id=1,
    )
    message = pb.ForwardBackwardRequest.FromString(encode_forward_backward_request(request))
    assert message.data[0].model_input[0].encoded_text.tokens == b"\x01\x00\x00\x00\x02\x01\x00\x00"
    target = message.data[0].loss_fn_inputs["target_tokens"]
    assert (target.dtype, list(target.shape), target.dense[:8]) == (pb.DTYPE_INT64, [3], b"\x02" + b"\x00" * 7)


@pytest.mark.parametrize(
    ("dtype", "raw", "expected_dtype", "expected"),
    [
        (pb.DTYPE_INT32, np.array([1, -2], dtype="<i4").tobytes(), "int64", [1, -2]),
        (pb.DTYPE_INT64, np.array([3, 4], dtype="<i8").tobytes(), "int64", [3, 4]),
        (pb.DTYPE_FLOAT32, np.array([0.5, 2.0], dtype="<f4").tobytes(), "float32", [0.5, 2.0]),
        # bfloat16 is a float32's upper 16 bits: 0x3F80 is 1.0, 0xC000 is -2.0.
        (pb.DTYPE_BFLOAT16, np.array([0x3F80, 0xC000], dtype="<u2").tobytes(), "float32", [1.0, -2.0]),
    ],
)
def test_tensor_dtypes_widen_to_the_public_ones(dtype: int, raw: bytes, expected_dtype: str, expected: list[float]) -> None:
    message = pb.ForwardBackwardRequest(model_id="m", seq_id=1, loss_fn="cross_entropy")
    datum = message.data.add()
    datum.model_input.add().encoded_text.tokens = np.array([1, 2], dtype="<i4").tobytes()
    datum.loss_fn_inputs["x"].dense = raw
    datum.loss_fn_inputs["x"].dtype = dtype  # type: ignore[assignment]
    datum.loss_fn_inputs["x"].shape.append(2)
    decoded = decode_forward_backward_request(message.SerializeToString())
    assert isinstance(decoded, t.ForwardBackwardRequest)
    tensor = decoded.forward_backward_input.data[0].loss_fn_inputs["x"]
    assert (tensor.dtype, tensor.data, tensor.shape) == (expected_dtype, expected, [2])


def test_sparse_csr_tensors_arrive_dense() -> None:
    message = pb.ForwardBackwardRequest(model_id="m", seq_id=1, loss_fn="cross_entropy")
    tensor = message.data.add().loss_fn_inputs["w"]
    tensor.dtype = pb.DTYPE_FLOAT32
    tensor.shape.extend([2, 3])
    tensor.sparse_csr.values = np.array([1.0, 2.0, 3.0], dtype="<f4").tobytes()
    tensor.sparse_csr.crow_indices = np.array([0, 1, 3], dtype="<i8").tobytes()
    tensor.sparse_csr.col_indices = np.array([2, 0, 1], dtype="<i8").tobytes()
    decoded = decode_forward_backward_request(message.SerializeToString())
    assert isinstance(decoded, t.ForwardBackwardRequest)
    dense = decoded.forward_backward_input.data[0].loss_fn_inputs["w"]
    assert dense.data == [0.0, 0.0, 1.0, 2.0, 3.0, 0.0] and dense.shape == [2, 3]


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b"\xff\xff\xff", "not a valid tinker_public.ForwardBackwardRequest"),
        (pb.ForwardBackwardRequest(data=[pb.Datum(model_input=[pb.Chunk()])]).SerializeToString(), "chunk has no content"),
        (
            pb.ForwardBackwardRequest(
                data=[pb.Datum(model_input=[pb.Chunk(encoded_text=pb.EncodedTextChunk(tokens=b"\x01\x02\x03"))])]
            ).SerializeToString(),
            "not a whole number of int32 tokens",
        ),
        (
            pb.ForwardBackwardRequest(
                data=[pb.Datum(loss_fn_inputs={"x": pb.Tensor(dense=b"\x00" * 8, dtype=pb.DTYPE_FLOAT32, shape=[3])})]
            ).SerializeToString(),
            "do not fill shape [3]",
        ),
        (
            pb.ForwardBackwardRequest(
                data=[pb.Datum(loss_fn_inputs={"x": pb.Tensor(dense=b"", dtype=pb.DTYPE_UNSPECIFIED)})]
            ).SerializeToString(),
            "unsupported protobuf dtype 0",
        ),
        (
            pb.ForwardBackwardRequest(
                data=[pb.Datum(model_input_spans=[pb.ProvenanceSpan(prompt_tokens=pb.PromptProvenanceSpan(
                    sequence_id="q", length=1))])]
            ).SerializeToString(),
            "provenance comes as a pair",
        ),
        (
            pb.ForwardBackwardRequest(
                data=[pb.Datum(model_input_spans=[pb.ProvenanceSpan(prompt_tokens=pb.PromptProvenanceSpan(
                    sequence_id="", length=1))])]
            ).SerializeToString(),
            "sequence_id must be non-empty",
        ),
    ],
)
def test_a_bad_body_is_named(body: bytes, names: str) -> None:
    with pytest.raises(ProtobufBodyError) as caught:
        decode_forward_backward_request(body)
    assert names in str(caught.value)


def _tensor(values: list[float], dtype: str, shape: list[int]) -> t.TensorData:
    return t.TensorData(data=values, dtype=dtype, shape=shape)  # type: ignore[arg-type]


def test_forward_backward_output_round_trips_with_ragged_fields() -> None:
    output = t.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=[
            {"logprobs": _tensor([-0.5, -0.25], "float32", [2]), "elementwise_loss": _tensor([0.5, 0.25], "float32", [2])},
            {"logprobs": _tensor([-1.0], "float32", [1]), "elementwise_loss": _tensor([1.0], "float32", [1])},
            # a different trailing shape starts a new ArrayRecord
            {"logprobs": _tensor([-1.0, -2.0, -3.0, -4.0], "float32", [2, 2]),
             "elementwise_loss": _tensor([1.0, 2.0], "float32", [2])},
            {"token_ids": _tensor([3, 4], "int64", [2])},
        ],
        metrics={"loss:sum": 2.5, "tokens:sum": 9.0},
    )
    body = encode_forward_backward_output(output)
    message = pb.ForwardBackwardOutput.FromString(body)
    assert [r.num_datums for r in message.loss_fn_outputs] == [2, 1, 1]
    first = message.loss_fn_outputs[0].fields["logprobs"]
    assert np.frombuffer(first.offsets, dtype="<i8").tolist() == [0, 8, 12]  # byte offsets, datums + 1
    assert decode_forward_backward_output(body) == output


def test_forward_backward_output_type_keeps_its_last_segment() -> None:
    body = pb.ForwardBackwardOutput(loss_fn_output_type="pkg.module:ArrayRecord").SerializeToString()
    assert decode_forward_backward_output(body).loss_fn_output_type == "ArrayRecord"


def test_sample_response_round_trips() -> None:
    response = t.SampleResponse(
        sequences=[
            t.SampledSequence(stop_reason="length", tokens=[1, 2, 3], logprobs=[-0.5, -0.25, -1.0],
                              topk_logprobs=[[(4, -0.5), (5, -1.5)], None, [(6, -0.25)]]),
            t.SampledSequence(stop_reason="stop", tokens=[9], logprobs=None),
        ],
        prompt_logprobs=[None, -0.5, -2.0],
        topk_prompt_logprobs=[None, [(1, -0.5)], [(2, -2.0)]],
        prompt_cache_hit_tokens=2,
        target_prompt_logprobs=_tensor([0.0, -0.5], "float32", [2]),
        prompt_alt_tokens=t.PromptAltTokens(tokens=_tensor([7, 8], "int64", [2, 1]),
                                            logprobs=_tensor([-0.5, -1.0], "float32", [2, 1])),
    )
    body = encode_sample_response(response)
    message = pb.SampleResponse.FromString(body)
    assert math.isnan(np.frombuffer(message.prompt_logprobs, dtype="<f4")[0])  # not scored: NaN
    assert (message.sequences[0].topk_sampled_logprobs.length, message.sequences[0].topk_sampled_logprobs.k) == (3, 2)
    assert not message.sequences[1].HasField("logprobs")
    assert decode_sample_response(body) == response


def test_sample_response_unknown_stop_reason_is_named() -> None:
    body = pb.SampleResponse(sequences=[pb.SampledSequence(stop_reason=7)]).SerializeToString()  # type: ignore[arg-type]
    with pytest.raises(ProtobufBodyError, match="unknown stop_reason 7"):
        decode_sample_response(body)
