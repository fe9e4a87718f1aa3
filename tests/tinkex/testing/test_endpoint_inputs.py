"""LocalServer's shared endpoint helpers as pure functions, by tables: what a request's inputs mean to the tiny
model (tokens, stop settings, the vocabulary check), user metadata as reported, and FastAPI-style query values."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tinkex import types as t
from tinkex.testing import tiny_lm
from tinkex.testing.calls import Call, Rejection
from tinkex.testing.model_inputs import check_vocabulary, tokens_of
from tinkex.testing.registry import metadata_strings
from tinkex.testing.rest_endpoints import query_rejection, query_value
from tinkex.testing.sampling_endpoints import sampling_settings

EOS = tiny_lm.end_of_sequence(tiny_lm.DEFAULT_VOCAB_SIZE)


@pytest.mark.parametrize(
    ("stop", "stop_tokens", "stop_strings"),
    [
        (None, {EOS}, ()),  # the implicit end-of-sequence stop
        ([], set(), ()),  # disabled
        ("\n", {EOS}, ("\n",)),  # a string adds to it
        (["a", "b"], {EOS}, ("a", "b")),
        ([7, 9], {7, 9}, ()),  # token ids replace it
    ],
)
def test_sampling_settings_stop(stop: Any, stop_tokens: set[int], stop_strings: tuple[str, ...]) -> None:
    settings = sampling_settings(t.SamplingParams(stop=stop), "seed", tiny_lm.DEFAULT_VOCAB_SIZE)
    assert (set(settings.stop_tokens), settings.stop_strings) == (stop_tokens, stop_strings)


def test_sampling_settings_without_an_eos_token_have_no_implicit_stop() -> None:
    settings = sampling_settings(t.SamplingParams(), "seed", tiny_lm.DEFAULT_VOCAB_SIZE + 1000)
    assert settings.stop_tokens == frozenset()


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([t.EncodedTextChunk(tokens=[5, 6])], [5, 6]),
        ([t.EncodedTextChunk(tokens=[5]), t.ImageChunk(data=b"x", format="png", expected_tokens=3)], [5, 0, 0, 0]),
    ],
)
def test_tokens_of(chunks: list[Any], expected: list[int]) -> None:
    assert tokens_of(t.ModelInput(chunks=chunks), "prompt") == expected


def test_an_image_without_expected_tokens_is_a_user_error_naming_the_chunk() -> None:
    model_input = t.ModelInput(chunks=[t.EncodedTextChunk(tokens=[1]), t.ImageChunk(data=b"x", format="png")])
    with pytest.raises(tiny_lm.ModelInputError, match=r"prompt\.chunks\[1\]"):
        tokens_of(model_input, "prompt")


def test_a_token_outside_the_vocabulary_is_a_400_naming_where() -> None:
    model_input = t.ModelInput(chunks=[t.EncodedTextChunk(tokens=[1, tiny_lm.DEFAULT_VOCAB_SIZE])])
    with pytest.raises(Rejection) as refused:
        check_vocabulary(model_input, tiny_lm.DEFAULT_VOCAB_SIZE, "prompt")
    assert refused.value.reply.status == 400
    assert b"prompt.chunks[0].tokens" in refused.value.reply.body
    check_vocabulary(model_input, tiny_lm.DEFAULT_VOCAB_SIZE + 1, "prompt")  # a larger vocabulary knows it


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [(None, None), ({}, None), ({"step": 3, "name": "run"}, {"step": "3", "name": "run"})],
)
def test_metadata_strings(metadata: dict[str, Any] | None, expected: dict[str, str] | None) -> None:
    assert metadata_strings(metadata) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [({}, None), ({"limit": []}, None), ({"limit": ["5"]}, "5"), ({"limit": ["5", "7"]}, "7"), ({"limit": [""]}, "")],
)
def test_query_value_is_the_last_one_sent(query: dict[str, list[str]], expected: str | None) -> None:
    call = Call(endpoint="list_sessions", params={}, query=query, headers={}, base_url="http://127.0.0.1")
    assert query_value(call, "limit") == expected


def test_query_rejection_names_the_parameter_in_the_fastapi_shape() -> None:
    reply = query_rejection("limit", "limit must be a non-negative integer, got '-1'").reply
    assert reply.status == 422
    assert json.loads(reply.body) == {
        "detail": [{"loc": ["query", "limit"], "msg": "limit must be a non-negative integer, got '-1'",
                    "type": "value_error"}]
    }
    assert query_rejection("day", "bad day", 400).reply.status == 400
