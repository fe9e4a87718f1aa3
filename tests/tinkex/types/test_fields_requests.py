"""0.38's request fields: absent from the JSON until the caller sets them (so the body is 0.16.1's), read as
0.38's defaults meanwhile, sent and decoded once set; and the new 0.38-only request types."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from tinkex.types import (
    CopyWeightsRequest,
    CreateSessionRequest,
    EncodedTextChunk,
    JoinSamplingSessionRequest,
    LoadWeightsRequest,
    ModelInput,
    SampleRequest,
    SamplingParams,
    SaveWeightsExternalRequest,
    SaveWeightsForSamplerRequest,
    SaveWeightsRequest,
    TensorData,
)
from tinkex.types.codec import decode, encode

PROMPT = ModelInput(chunks=[EncodedTextChunk(tokens=[1, 2, 3])])


def _sample(**extra: Any) -> SampleRequest:
    return SampleRequest(
        prompt=PROMPT, sampling_params=SamplingParams(max_tokens=4), sampling_session_id="s:sample:0", seq_id=1,
        prompt_logprobs=False, **extra,
    )


# Each row: a request built the 0.16 way, its 0.38 fields with the default they read as, and one set value.
NEW_FIELDS: list[tuple[Any, str, Any, Any]] = [
    (lambda **kw: SaveWeightsRequest(model_id="m", path="c", seq_id=1, **kw), "overwrite", False, True),
    (lambda **kw: SaveWeightsRequest(model_id="m", path="c", seq_id=1, **kw), "user_metadata", None, {"a": "b"}),
    (lambda **kw: SaveWeightsForSamplerRequest(model_id="m", path="c", seq_id=1, **kw), "kind", "snapshot", "inflight"),
    (lambda **kw: SaveWeightsForSamplerRequest(model_id="m", path="c", seq_id=1, **kw), "user_metadata", None, {"k": "v"}),
    (lambda **kw: LoadWeightsRequest(model_id="m", path="tinker://r/weights/c", optimizer=True, seq_id=2, **kw),
     "weights_access_token", None, "tok"),
    (lambda **kw: LoadWeightsRequest(model_id="m", path="tinker://r/weights/c", optimizer=True, seq_id=2, **kw),
     "base_model", None, "Qwen/Qwen3-8B"),
    (lambda **kw: CreateSessionRequest(tags=[], user_metadata={}, sdk_version="0.16.1", **kw), "display_name", None, "run"),
    (_sample, "topk_sample_logprobs", 0, 5),
    (_sample, "prompt_alt_tokens_k", 0, 2),
    (_sample, "prompt_logprobs_last_n", None, 3),
    (_sample, "record_stability_info", None, True),
    (_sample, "target_prompt_logprobs", None, TensorData(data=[1, -1], dtype="int64", shape=[2, 1])),
]


@pytest.mark.parametrize(("build", "field", "default", "value"), NEW_FIELDS, ids=lambda v: v if isinstance(v, str) else None)
def test_a_038_field_is_absent_until_set_and_reads_its_default(build: Any, field: str, default: Any, value: Any) -> None:
    plain = build()
    assert field not in json.loads(encode(plain))
    assert getattr(plain, field) == default
    with_value = build(**{field: value})
    assert field in json.loads(encode(with_value))
    assert getattr(with_value, field) == value
    assert decode(encode(with_value), type(with_value)) == with_value


def test_016_bodies_are_unchanged() -> None:
    assert encode(SaveWeightsRequest(model_id="m", path="c", seq_id=1)) == (
        b'{"model_id":"m","path":"c","seq_id":1,"ttl_seconds":null}'
    )
    assert encode(LoadWeightsRequest(model_id="m", path="tinker://r/weights/c", optimizer=False, seq_id=2)) == (
        b'{"model_id":"m","path":"tinker://r/weights/c","optimizer":false,"seq_id":2}'
    )
    assert json.loads(encode(_sample())) == {
        "num_samples": 1,
        "prompt": {"chunks": [{"tokens": [1, 2, 3]}]},
        "sampling_params": {"max_tokens": 4},
        "sampling_session_id": "s:sample:0",
        "seq_id": 1,
        "prompt_logprobs": False,
        "topk_prompt_logprobs": 0,
    }


def test_official_defaults_of_fields_016_always_sends() -> None:
    assert SampleRequest(prompt=PROMPT, sampling_params=SamplingParams()).prompt_logprobs is None
    assert SaveWeightsRequest(model_id="m").seq_id is None
    assert SaveWeightsForSamplerRequest(model_id="m").seq_id is None


def test_create_via_load_addressing_sends_only_what_was_set() -> None:
    request = LoadWeightsRequest(session_id="s", model_seq_id=0, path="tinker://r/weights/c", optimizer=False)
    assert json.loads(encode(request)) == {
        "path": "tinker://r/weights/c", "optimizer": False, "seq_id": None, "session_id": "s", "model_seq_id": 0,
    }
    assert request.model_id is None


@pytest.mark.parametrize(
    "request_obj",
    [
        LoadWeightsRequest(model_id="m", path="tinker://r/weights/c", optimizer=False, weights_access_token="tok-SECRET"),
        CopyWeightsRequest(source_path="tinker://r/weights/c", weights_access_token="tok-SECRET"),
    ],
)
def test_access_tokens_never_show_in_reprs(request_obj: msgspec.Struct) -> None:
    assert "tok-SECRET" not in repr(request_obj)
    assert "weights_access_token='***'" in repr(request_obj)
    assert json.loads(encode(request_obj))["weights_access_token"] == "tok-SECRET"


@pytest.mark.parametrize(
    ("request_obj", "wire"),
    [
        (
            CopyWeightsRequest(session_id="s", model_seq_id=1, source_path="tinker://r/weights/c", ttl_seconds=3600),
            {"session_id": "s", "model_seq_id": 1, "destination_project_id": None, "source_path": "tinker://r/weights/c",
             "ttl_seconds": 3600, "weights_access_token": None},
        ),
        (
            SaveWeightsExternalRequest(model_id="m", path="export", seq_id=3, age_encryption_recipients=["age1x"]),
            {"model_id": "m", "path": "export", "seq_id": 3, "ttl_seconds": None,
             "age_encryption_recipients": ["age1x"], "type": "save_weights_external"},
        ),
        (
            JoinSamplingSessionRequest(sampling_session_id="s:sample:0"),
            {"sampling_session_id": "s:sample:0", "type": "join_sampling_session"},
        ),
    ],
)
def test_038_only_requests_round_trip(request_obj: msgspec.Struct, wire: dict[str, Any]) -> None:
    assert json.loads(encode(request_obj)) == wire
    assert decode(encode(request_obj), type(request_obj)) == request_obj


def test_an_unknown_kind_is_rejected_by_name() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.kind"):
        decode(b'{"model_id":"m","kind":"live"}', SaveWeightsForSamplerRequest)
