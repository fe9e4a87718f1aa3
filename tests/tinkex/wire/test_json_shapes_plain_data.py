"""``dump_038`` walks only what can hold a request type: plain data (token lists, dicts of numbers) goes to the JSON
encoder as it is, and request types inside plain containers are still given 0.38's shape."""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

from tinkex import types as t
from tinkex.wire import json_shapes
from tinkex.wire.json_shapes import dump_038


@pytest.mark.parametrize(
    ("declared", "plain"),
    [
        (list[int], True),
        (dict[str, float | str], True),
        (int | None, True),
        (tuple[int, str], True),
        (list[str | int] | str | None, True),
        (t.TensorData, False),
        (dict[str, t.TensorData], False),
        (list[t.SamplingParams] | None, False),
        (Any, False),
    ],
)
def test_which_declared_types_are_walked(declared: Any, plain: bool) -> None:
    assert json_shapes._holds_no_struct(mi.type_info(declared)) is plain


def test_a_token_list_is_sent_as_it_is() -> None:
    request = t.SampleRequest(
        prompt=t.ModelInput.from_ints(list(range(100))), sampling_params=t.SamplingParams(max_tokens=4)
    )
    dumped = dump_038(request)
    assert dumped["prompt"]["chunks"][0]["tokens"] is request.prompt.chunks[0].tokens  # not copied item by item
    assert dumped["sampling_params"] == {"max_tokens": 4, "temperature": 1, "top_k": -1, "top_p": 1}


def test_request_types_inside_plain_containers_still_take_the_0_38_shape() -> None:
    params = t.SamplingParams(max_tokens=2, seed=None)
    shaped = {"max_tokens": 2, "temperature": 1, "top_k": -1, "top_p": 1}
    assert dump_038([params, 3, None]) == [shaped, 3, None]
    assert dump_038({"a": params, "b": (1, 2)}) == {"a": shaped, "b": (1, 2)}
    assert dump_038(({"nested": [params]},)) == [{"nested": [shaped]}]


def test_the_dump_needs_one_call_per_request_type_not_per_token(monkeypatch: pytest.MonkeyPatch) -> None:
    request = t.SampleRequest(
        num_samples=4,
        prompt=t.ModelInput.from_ints(list(range(32))),
        sampling_params=t.SamplingParams(max_tokens=64, temperature=0.7),
        sampling_session_id="s",
        seq_id=1,
    )
    calls = 0
    real = json_shapes.dump_038

    def counted(value: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(value)

    monkeypatch.setattr(json_shapes, "dump_038", counted)  # the recursion looks the name up in the module
    body = msgspec.json.encode(counted(request))
    # SampleRequest, its ModelInput, the chunk list, the chunk, SamplingParams: the 32 tokens are not visited.
    assert calls == 5
    assert msgspec.json.decode(body)["prompt"]["chunks"][0]["tokens"] == list(range(32))
