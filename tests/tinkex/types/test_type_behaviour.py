"""Construction-time conversion and the pydantic-like behaviour of the wire types, on tinkex alone.

``test_type_behaviour_official.py`` compares outcomes with the official SDK case by case; this file checks what
that table cannot: errors name the type, field and value; a caller's list changed after construction changes
nothing that is sent (down to a real LocalServer request); unset fields stay unset through every copy; and
``dataclasses.replace`` on a Datum encodes like a Datum built directly.
"""

from __future__ import annotations

import dataclasses
import enum
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

import tinkex
from tinkex import types
from tinkex.testing import LocalServer
from tinkex.types import ValidationError, codec

API_KEY = "tml-type-behaviour-0123456789"
BASE_MODEL = "Qwen/Qwen3-8B"


# --- conversion and errors ------------------------------------------------------------------------------------
def test_numpy_scalars_become_python_numbers_at_construction() -> None:
    np = pytest.importorskip("numpy")
    params = types.SamplingParams(max_tokens=np.int64(16), temperature=np.float64(0.5), top_p=np.float32(0.25))
    assert (type(params.max_tokens), type(params.temperature), type(params.top_p)) == (int, float, float)
    assert codec.encode(params) == b'{"max_tokens":16,"temperature":0.5,"top_p":0.25}'
    chunk = types.EncodedTextChunk(tokens=[np.int64(3), np.int32(4), 5])
    assert [type(t) for t in chunk.tokens] == [int, int, int]
    assert codec.encode(types.ModelInput(chunks=[chunk])) == b'{"chunks":[{"tokens":[3,4,5]}]}'


def test_torch_tensors_become_lists() -> None:
    torch = pytest.importorskip("torch")
    chunk = types.EncodedTextChunk(tokens=torch.tensor([1, 2, 3]))
    assert chunk.tokens == [1, 2, 3] and all(type(t) is int for t in chunk.tokens)
    params = types.SamplingParams(max_tokens=torch.tensor(8))
    assert params.max_tokens == 8 and type(params.max_tokens) is int


def test_nested_dicts_tuples_and_enums_are_converted() -> None:
    model_input = types.ModelInput(chunks=({"tokens": (1, 2)}, {"type": "encoded_text", "tokens": [3]}))
    assert isinstance(model_input.chunks, list)
    assert all(type(chunk) is types.EncodedTextChunk for chunk in model_input.chunks)
    assert codec.encode(model_input) == b'{"chunks":[{"tokens":[1,2]},{"tokens":[3],"type":"encoded_text"}]}'

    class ImageFormat(enum.Enum):
        PNG = "png"

    chunk = types.ImageAssetPointerChunk(format=ImageFormat.PNG, location="s3://b/k")  # type: ignore[arg-type]
    assert chunk.format == "png" and type(chunk.format) is str
    with pytest.raises(ValidationError, match=r"ImageAssetPointerChunk\.format"):
        types.ImageAssetPointerChunk(format="gif", location="s3://b/k")  # type: ignore[arg-type]


def test_a_value_that_cannot_be_converted_is_a_validation_error_naming_type_field_and_value() -> None:
    with pytest.raises(ValidationError) as info:
        types.EncodedTextChunk(tokens=[1, 2, "three"])
    error = info.value
    assert isinstance(error, ValueError) and isinstance(error, msgspec.ValidationError)
    assert (error.type_name, error.field) == ("EncodedTextChunk", "tokens[2]")
    assert str(error).startswith("invalid EncodedTextChunk.tokens[2]: Expected `int`, got `str`")
    assert "'three'" in str(error)
    with pytest.raises(ValidationError, match=r"^invalid SamplingParams\.max_tokens: .*given 16\.5 of type float$"):
        types.SamplingParams(max_tokens=16.5)


def test_a_nested_error_names_the_path_inside_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        types.ModelInput(chunks=[{"tokens": [1]}, {"tokens": [1, None]}])
    assert info.value.field == "chunks[1].tokens[1]"
    with pytest.raises(ValidationError) as info:
        types.SampleRequest(prompt=types.ModelInput.from_ints([1]), sampling_params={"stop": ["a", 1]})
    assert info.value.field == "sampling_params.stop"
    assert str(info.value).startswith("invalid SampleRequest.sampling_params.stop: a string, a list of strings")


def test_a_long_value_is_shortened_in_the_message() -> None:
    with pytest.raises(ValidationError) as info:
        types.EncodedTextChunk(tokens=["x"] * 1000)
    assert len(str(info.value)) < 300


def test_values_of_the_exact_type_are_kept_as_they_are() -> None:
    chunk = types.EncodedTextChunk(tokens=[1])
    model_input = types.ModelInput(chunks=[chunk])
    assert model_input.chunks[0] is chunk
    name = "a" * 40
    assert types.LoraConfig(rank=4, seed=None).rank == 4
    assert types.CreateSamplingSessionRequest(session_id=name, sampling_session_seq_id=0).session_id is name


def test_decoding_still_validates_and_unknown_request_fields_are_still_rejected() -> None:
    decoded = codec.decode(b'{"chunks":[{"tokens":[1,2]}]}', types.ModelInput)
    assert decoded.to_ints() == [1, 2]
    with pytest.raises(msgspec.ValidationError, match="Expected `int`"):
        codec.decode(b'{"chunks":[{"tokens":[1,"2"]}]}', types.ModelInput)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        codec.decode(b'{"max_tokens":1,"surprise":2}', types.SamplingParams)


# --- lists are copied ---------------------------------------------------------------------------------------------
def test_a_callers_list_changed_after_construction_changes_nothing() -> None:
    tokens, stop = [1, 2, 3], ["\n"]
    chunk = types.EncodedTextChunk(tokens=tokens)
    params = types.SamplingParams(stop=stop)
    weights = [1.0, 0.5, 0.0]
    datum = types.Datum(model_input=types.ModelInput(chunks=[chunk]), loss_fn_inputs={"weights": weights})
    before = codec.encode(types.SampleRequest(prompt=types.ModelInput(chunks=[chunk]), sampling_params=params))
    before_datum = codec.encode(datum)
    tokens.append(4)
    stop.append("END")
    weights[0] = 9.0
    assert chunk.tokens == [1, 2, 3] and params.stop == ["\n"]
    assert codec.encode(types.SampleRequest(prompt=types.ModelInput(chunks=[chunk]), sampling_params=params)) == before
    assert codec.encode(datum) == before_datum


class _RecordingTransport(httpx.AsyncBaseTransport):
    """Forwards to the real server and keeps every request body, by endpoint."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.bodies: dict[str, list[Any]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raw = await request.aread()
        endpoint = request.url.path.rsplit("/", 1)[-1]
        self.bodies.setdefault(endpoint, []).append(msgspec.json.decode(raw) if raw else None)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(long_poll_timeout=0.2) as running:
        yield running


def test_a_list_changed_after_construction_is_not_what_the_server_receives(server: LocalServer) -> None:
    recording = _RecordingTransport()
    client = tinkex.Client(
        api_key=API_KEY, base_url=server.base_url, env={}, telemetry=False, transport=lambda: recording
    )
    tokens, stop = [5, 6, 7, 8], [99]
    prompt = types.ModelInput(chunks=[types.EncodedTextChunk(tokens=tokens)])
    params = types.SamplingParams(max_tokens=4, stop=stop)
    try:
        sampler = client.create_sampling_client(base_model=BASE_MODEL)
        tokens[:] = [1]  # the caller reuses its lists before the requests go out
        stop.append(100)
        logprobs = sampler.compute_logprobs(prompt).result(10)
        sampler.sample(prompt, num_samples=1, sampling_params=params).result(10)
    finally:
        client.close()
    assert len(logprobs) == 4, "the server computed logprobs for the four tokens given at construction"
    sent = recording.bodies["asample"]
    assert [body["prompt"]["chunks"][0]["tokens"] for body in sent] == [[5, 6, 7, 8], [5, 6, 7, 8]]
    # (LocalServer speaks the 0.38 dialect, whose bodies also carry temperature, top_k and top_p at their defaults.)
    assert {key: sent[-1]["sampling_params"][key] for key in ("max_tokens", "stop")} == {"max_tokens": 4, "stop": [99]}


# --- pydantic methods ------------------------------------------------------------------------------------------
def test_model_dump_reports_official_values_for_unset_fields_and_exclude_unset_leaves_them_out() -> None:
    params = types.SamplingParams(max_tokens=8)
    assert params.model_dump() == {
        "max_tokens": 8, "seed": None, "stop": None, "temperature": 1.0, "top_k": -1, "top_p": 1.0
    }
    assert params.model_dump(exclude_unset=True) == {"max_tokens": 8}
    assert params.model_dump(exclude_none=True) == {"max_tokens": 8, "temperature": 1.0, "top_k": -1, "top_p": 1.0}
    assert types.SamplingParams().model_dump(exclude_defaults=True) == {}
    assert params.model_dump_json(exclude_unset=True) == '{"max_tokens":8}'


def test_model_dump_json_mode_gives_json_values() -> None:
    chunk = types.ImageChunk(data=b"\x00\x01", format="png")
    assert chunk.model_dump()["data"] == "AAE="  # base64 in both modes, as the official field serializer
    assert chunk.model_dump(mode="json")["data"] == "AAE="
    with pytest.raises(ValueError, match="mode"):
        chunk.model_dump(mode="yaml")


def test_model_dump_include_and_exclude_take_nested_dicts() -> None:
    datum = types.Datum(model_input=types.ModelInput.from_ints([1]), loss_fn_inputs={"weights": [1.0]})
    dumped = datum.model_dump(include={"model_input", "loss_fn_inputs"}, exclude={"loss_fn_inputs": {"weights"}})
    assert dumped == {"loss_fn_inputs": {}, "model_input": {"chunks": [{"tokens": [1], "type": "encoded_text"}]}}
    assert datum.model_dump(include={"loss_fn_inputs": {"weights": {"dtype"}}}) == {
        "loss_fn_inputs": {"weights": {"dtype": "float32"}}
    }
    model_input = types.ModelInput(chunks=[types.EncodedTextChunk(tokens=[1]), types.EncodedTextChunk(tokens=[2])])
    assert model_input.model_dump(include={"chunks": {1: {"tokens"}}}) == {"chunks": [{"tokens": [2]}]}


def test_model_validate_converts_like_the_constructor_and_names_the_problem() -> None:
    assert types.ModelInput.model_validate({"chunks": [{"tokens": ["1", 2.0]}]}).to_ints() == [1, 2]
    assert types.SamplingParams.model_validate_json(b'{"max_tokens": 3}') == types.SamplingParams(max_tokens=3)
    with pytest.raises(ValidationError, match=r"^invalid ModelInput\.chunks\[0\]\.tokens\[0\]"):
        types.ModelInput.model_validate({"chunks": [{"tokens": ["one"]}]})
    with pytest.raises(ValidationError, match="unknown field"):
        types.LoraConfig.model_validate({"rank": 4, "rnak": 8})
    with pytest.raises(ValidationError, match="invalid JSON"):
        types.LoraConfig.model_validate_json("{")
    with pytest.raises(ValidationError, match="rank"):
        types.LoraConfig.model_validate({"rank": "4"}, strict=True)


def test_model_copy_keeps_unset_fields_unset() -> None:
    params = types.SamplingParams(max_tokens=8)
    copied = params.model_copy(update={"seed": 3})
    assert codec.encode(copied) == b'{"max_tokens":8,"seed":3}'
    assert params.model_copy() == params and params.model_copy(deep=True) == params


def test_model_fields_have_annotation_default_and_factory() -> None:
    fields = types.SamplingParams.model_fields
    assert fields["temperature"].annotation is float and fields["temperature"].default == 1.0
    assert fields["max_tokens"].annotation == int | None or str(fields["max_tokens"].annotation) == "typing.Optional[int]"
    required = types.ModelInput.model_fields["chunks"]
    assert required.is_required() and required.default is Ellipsis
    assert types.Datum.model_fields["loss_fn_inputs"].default_factory is dict
    assert types.SamplingParams(max_tokens=1).model_fields is fields


def test_the_parity_tool_reads_model_fields_with_the_official_defaults() -> None:
    sys.path.insert(0, str(Path(__file__).parents[3] / "tools"))
    try:
        import api_surface
    finally:
        sys.path.pop(0)
    described = api_surface.describe_fields(types.SamplingParams)
    assert described["top_k"] == {"type": "int", "default": "-1"}
    assert described["stop"]["default"] == "None"


def test_model_construct_keeps_the_values_as_given() -> None:
    tokens = (1, 2)
    chunk = types.EncodedTextChunk.model_construct(tokens=tokens)  # type: ignore[arg-type]
    assert chunk.tokens is tokens, "no check, no copy, as pydantic's model_construct"
    assert types.EncodedTextChunk(tokens=tokens).tokens == [1, 2]
    assert codec.encode(types.SamplingParams.model_construct(max_tokens=3)) == b'{"max_tokens":3}'


def test_unset_fields_survive_pickling() -> None:
    params = types.SamplingParams(max_tokens=8, stop=["x"])
    restored = pickle.loads(pickle.dumps(params))
    assert restored == params and codec.encode(restored) == codec.encode(params)


def test_repr_shows_every_field_with_its_official_value() -> None:
    assert repr(types.LoraConfig(rank=4)) == (
        "LoraConfig(rank=4, seed=None, train_unembed=True, train_mlp=True, train_attn=True)"
    )
    assert str(types.EncodedTextChunk(tokens=[1])) == "EncodedTextChunk(tokens=[1], type='encoded_text')"


# --- dataclasses.replace on Datum -----------------------------------------------------------------------------------
def _datum(**extra: Any) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3]),
        loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [1.0, 1.0, 0.0]},
        **extra,
    )


def test_dataclasses_replace_on_a_datum_encodes_like_a_datum_built_directly() -> None:
    datum = _datum()
    replaced = dataclasses.replace(datum, loss_fn_inputs={"target_tokens": [7, 8, 9], "weights": [0.5, 0.5, 0.5]})
    direct = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3]),
        loss_fn_inputs={"target_tokens": [7, 8, 9], "weights": [0.5, 0.5, 0.5]},
    )
    assert codec.encode(replaced) == codec.encode(direct)
    assert b"spans" not in codec.encode(replaced), "unset provenance stays unset (absent on the wire)"
    assert dataclasses.is_dataclass(datum) and not dataclasses.is_dataclass(types.SamplingParams())
    fields = {f.name: f for f in dataclasses.fields(types.Datum)}
    assert list(fields) == ["model_input", "loss_fn_inputs", "model_input_spans", "loss_fn_input_spans"]
    assert fields["model_input_spans"].default is None and fields["loss_fn_inputs"].default_factory() == {}
    assert pickle.loads(pickle.dumps(replaced)) == replaced


def test_dataclasses_replace_keeps_and_sets_provenance() -> None:
    spans = [types.PromptProvenanceSpan(sequence_id="s-1", length=3)]
    with_spans = _datum().with_provenance(model_input=spans, loss_fn_inputs=spans)
    replaced = dataclasses.replace(with_spans, model_input=types.ModelInput.from_ints([4, 5, 6]))
    assert replaced.model_input_spans == spans and replaced.loss_fn_input_spans == spans
    assert dataclasses.replace(_datum(), model_input_spans=spans, loss_fn_input_spans=spans).model_input_spans == spans


def test_types_that_are_dataclasses_in_the_official_sdk_keep_what_they_cannot_convert() -> None:
    # The official ForwardBackwardInput validates nothing: an unknown loss reaches the server, which rejects it.
    fwd = types.ForwardBackwardInput(data=[], loss_fn="no_such_loss")  # type: ignore[arg-type]
    assert fwd.loss_fn == "no_such_loss"
    np = pytest.importorskip("numpy")
    config = types.ForwardBackwardInput(data=[], loss_fn="ppo", loss_fn_config={"clip": np.float64(0.2)})
    assert config.loss_fn_config == {"clip": 0.2} and type(config.loss_fn_config["clip"]) is float


def _wire_types() -> list[type]:
    return sorted(
        {obj for name in dir(types) if isinstance(obj := getattr(types, name), type) and issubclass(obj, msgspec.Struct)},
        key=lambda cls: cls.__name__,
    )


@pytest.mark.parametrize("cls", _wire_types(), ids=lambda cls: cls.__name__)
def test_every_wire_type_has_a_field_check_and_model_fields(cls: type) -> None:
    # A check that cannot be compiled (an annotation that never resolves) would silently check nothing.
    from tinkex.types import _base

    _base._compile_validator(cls)
    assert set(cls.model_fields) == set(cls.__struct_fields__)  # type: ignore[attr-defined]


def test_the_cookbooks_replace_calls_work_unchanged() -> None:
    # tinker_cookbook 0.6.1, rl/data_processing.py (_drop_first_position) and rl/train.py (_remove_mask).
    spans = [types.SampledProvenanceSpan(sequence_id="seq-1", length=3)]
    first = spans[0]
    dropped = [dataclasses.replace(first, offset=first.offset + 1, length=first.length - 1), *spans[1:]]
    assert dropped == [types.SampledProvenanceSpan(sequence_id="seq-1", offset=1, length=2)]
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3]),
        loss_fn_inputs={"target_tokens": [2, 3, 4], "mask": [1.0, 1.0, 0.0]},
    ).with_provenance(model_input=spans, loss_fn_inputs=spans)
    removed = dataclasses.replace(datum, loss_fn_inputs={k: v for k, v in datum.loss_fn_inputs.items() if k != "mask"})
    assert removed.model_input_spans == spans and set(removed.loss_fn_inputs) == {"target_tokens"}
    direct = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={"target_tokens": [2, 3, 4]}
    ).with_provenance(model_input=spans, loss_fn_inputs=spans)
    assert codec.encode(removed) == codec.encode(direct)


@pytest.mark.parametrize(
    ("model_input", "hint"),
    [([1, 2, 3], "ModelInput.from_ints"), ("the quick", "tokenize it first"), ({"chunks": 1}, "ModelInput")],
)
def test_a_datum_refuses_what_is_not_a_model_input_where_it_is_made(model_input: object, hint: str) -> None:
    # The official Datum keeps these and the batch fails when sent, far from the line that made it.
    with pytest.raises(ValueError, match=rf"Datum.model_input: .*{hint}"):
        types.Datum(model_input=model_input, loss_fn_inputs={"target_tokens": [1, 2, 3]})  # type: ignore[arg-type]
