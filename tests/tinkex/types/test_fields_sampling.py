"""Sampling outputs [0.38]: sequence ids, top-k sampled logprobs, target prompt logprobs, prompt alt tokens,
cache hits and the numpy views; provenance spans on Datum."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinkex.types import (
    MASK_LOGPROB,
    Datum,
    EncodedTextChunk,
    ModelInput,
    PromptAltTokens,
    PromptProvenanceSpan,
    SampledProvenanceSpan,
    SampledSequence,
    SampleResponse,
    TensorData,
    TopkLogprobs,
    UntypedAPIFuture,
    topk_to_lists,
)
from tinkex.types.codec import decode, encode


def test_a_016_sample_response_still_decodes_and_reads_038_defaults() -> None:
    body = b'{"sequences":[{"stop_reason":"length","tokens":[8,9],"logprobs":[-0.1,-0.2]}],"type":"sample"}'
    response = decode(body, SampleResponse)
    sequence = response.sequences[0]
    assert (sequence.tokens, sequence.logprobs, sequence.sequence_id, sequence.topk_logprobs) == (
        [8, 9], [-0.1, -0.2], None, None,
    )
    assert (response.prompt_cache_hit_tokens, response.target_prompt_logprobs, response.prompt_alt_tokens) == (0, None, None)
    assert response.prompt_logprobs_np is None and response.topk_prompt_logprobs_np is None


def test_038_sample_outputs_round_trip() -> None:
    response = SampleResponse(
        sequences=[
            SampledSequence(
                stop_reason="stop", tokens=[5, 6], logprobs=[-1.0, -2.0], sequence_id="seq-a",
                topk_logprobs=[[(5, -1.0), (7, -3.0)], None],
            )
        ],
        prompt_logprobs=[None, -0.5],
        topk_prompt_logprobs=[None, [(2, -0.5)]],
        prompt_cache_hit_tokens=1,
        target_prompt_logprobs=TensorData(data=[-0.25], dtype="float32", shape=[1, 1]),
        prompt_alt_tokens=PromptAltTokens(
            tokens=TensorData(data=[4], dtype="int64", shape=[1, 1]),
            logprobs=TensorData(data=[-0.7], dtype="float32", shape=[1, 1]),
        ),
    )
    again = decode(encode(response), SampleResponse)
    assert again == response
    assert again.sequences[0].topk_logprobs == [[(5, -1.0), (7, -3.0)], None]


def test_numpy_views_follow_the_lists() -> None:
    sequence = SampledSequence(stop_reason="stop", tokens=[5, 6], logprobs=[-1.0, -2.0], topk_logprobs=[[(5, -1.0)], None])
    assert sequence.tokens_np.dtype == np.int32 and sequence.tokens_np.tolist() == [5, 6]
    assert sequence.logprobs_np is not None and sequence.logprobs_np.dtype == np.float32
    topk = sequence.topk_logprobs_np
    assert topk is not None and topk.token_ids.shape == (2, 1)
    assert topk.logprobs[1, 0] == np.float32(MASK_LOGPROB)
    assert topk.to_lists() == [[(5, -1.0)], None]
    no_logprobs = SampledSequence(stop_reason="length", tokens=[1])
    assert no_logprobs.logprobs_np is None and no_logprobs.topk_logprobs_np is None
    prompt = SampleResponse(sequences=[], prompt_logprobs=[None, -0.5]).prompt_logprobs_np
    assert prompt is not None and np.isnan(prompt[0]) and prompt[1] == np.float32(-0.5)


def test_topk_from_lists_pads_ragged_rows_with_the_mask() -> None:
    topk = TopkLogprobs.from_lists([[(1, -0.1), (2, -0.2)], [(3, -0.3)], None])
    assert topk.token_ids.tolist() == [[1, 2], [3, 0], [0, 0]]
    assert topk.to_lists() == [[(1, pytest.approx(-0.1)), (2, pytest.approx(-0.2))], [(3, pytest.approx(-0.3))], None]
    assert topk_to_lists(topk) == topk.to_lists()


def test_the_asample_future_carries_sequence_ids() -> None:
    future = decode(b'{"request_id":"r","sample_sequence_ids":["seq-a","seq-b"]}', UntypedAPIFuture)
    assert future.sample_sequence_ids == ["seq-a", "seq-b"]
    assert decode(b'{"request_id":"r"}', UntypedAPIFuture).sample_sequence_ids is None


# --- provenance ----------------------------------------------------------------------------------------------
def _datum() -> Datum:
    return Datum(model_input=ModelInput(chunks=[EncodedTextChunk(tokens=[1, 2, 3, 4])]), loss_fn_inputs={"target_tokens": [2, 3, 4, 5]})


def test_a_datum_without_provenance_sends_016_json() -> None:
    datum = _datum()
    assert set(json.loads(encode(datum))) == {"loss_fn_inputs", "model_input"}
    assert datum.model_input_spans is None and datum.loss_fn_input_spans is None


def test_with_provenance_attaches_both_span_lists_and_they_round_trip() -> None:
    datum = _datum().with_provenance(
        model_input=[PromptProvenanceSpan(sequence_id="seq-a", length=2), SampledProvenanceSpan(sequence_id="seq-a", length=2)],
        loss_fn_inputs=[SampledProvenanceSpan(sequence_id="seq-a", offset=0, length=4)],
    )
    wire = json.loads(encode(datum))
    assert wire["model_input_spans"] == [
        {"type": "prompt_tokens", "sequence_id": "seq-a", "offset": 0, "length": 2},
        {"type": "sampled_tokens", "sequence_id": "seq-a", "offset": 0, "length": 2},
    ]
    assert decode(encode(datum), Datum) == datum


def test_spans_that_do_not_tile_the_field_are_rejected_at_the_call() -> None:
    with pytest.raises(ValueError, match="model_input spans cover 3 positions but the field has 4"):
        _datum().with_provenance(
            model_input=[PromptProvenanceSpan(sequence_id="s", length=3)],
            loss_fn_inputs=[SampledProvenanceSpan(sequence_id="s", length=4)],
        )
    with pytest.raises(ValueError, match="loss_fn_inputs spans cover 5"):
        _datum().with_provenance(
            model_input=[PromptProvenanceSpan(sequence_id="s", length=4)],
            loss_fn_inputs=[SampledProvenanceSpan(sequence_id="s", length=5)],
        )


def test_provenance_comes_as_a_pair() -> None:
    with pytest.raises(ValueError, match="as a pair"):
        Datum(model_input=ModelInput.empty(), model_input_spans=[])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sequence_id": "s", "length": -1}, "length must be >= 0"),
        ({"sequence_id": "", "length": 1}, "sequence_id must be non-empty"),
        ({"sequence_id": "s", "length": 1, "offset": -2}, "offset must be >= 0"),
    ],
)
@pytest.mark.parametrize("span_type", [PromptProvenanceSpan, SampledProvenanceSpan])
def test_span_fields_are_checked(span_type: type, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        span_type(**kwargs)


def test_datum_loss_fn_inputs_default_to_empty_as_in_038() -> None:
    assert Datum(model_input=ModelInput.empty()).loss_fn_inputs == {}
