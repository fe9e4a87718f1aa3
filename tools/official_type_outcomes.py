"""What the official SDK's types do with a table of construction inputs and pydantic method calls.

Run it once in the official package's own venv and commit its output as test data::

    /work/scratch/t038/bin/python tools/official_type_outcomes.py > tests/tinkex/types/data/official_type_outcomes.json

``tests/tinkex/types/test_type_behaviour_official.py`` evaluates the same expressions (read from the data file) against
``tinkex.types`` and compares: accepted with the same value, or rejected with the same kind of error. The script
imports nothing of tinkex, so it runs unchanged in a venv that only has the official package (and numpy).

Each case is a Python expression over ``T`` (the SDK's ``types`` module), ``np`` (numpy) and ``LossName`` (a
``str`` enum), so the table is data both sides can evaluate.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import sys
from typing import Any

CONSTRUCTION_CASES: dict[str, str] = {
    # SamplingParams (a pydantic BaseModel in 0.38)
    "sampling_plain": "T.SamplingParams(max_tokens=16, temperature=0.75, top_k=5)",
    "sampling_numpy_int": "T.SamplingParams(max_tokens=np.int64(16), seed=np.int32(7))",
    "sampling_numpy_float64": "T.SamplingParams(temperature=np.float64(0.5))",
    "sampling_numpy_float32": "T.SamplingParams(top_p=np.float32(0.25))",
    "sampling_int_for_float": "T.SamplingParams(temperature=1)",
    "sampling_digit_string": "T.SamplingParams(max_tokens='16')",
    "sampling_whole_float_for_int": "T.SamplingParams(max_tokens=16.0)",
    "sampling_fractional_for_int": "T.SamplingParams(max_tokens=16.5)",
    "sampling_word_for_int": "T.SamplingParams(max_tokens='many')",
    "sampling_list_for_float": "T.SamplingParams(temperature=[0.5])",
    "sampling_stop_string": "T.SamplingParams(stop='\\n')",
    "sampling_stop_tuple": "T.SamplingParams(stop=('a', 'b'))",
    "sampling_stop_token_ids": "T.SamplingParams(stop=[1, 2])",
    "sampling_stop_numpy_ids": "T.SamplingParams(stop=[np.int64(1), np.int64(2)])",
    "sampling_stop_mixed": "T.SamplingParams(stop=['a', 1])",
    "sampling_stop_numpy_array": "T.SamplingParams(stop=np.array([1, 2]))",
    "sampling_bool_for_int": "T.SamplingParams(max_tokens=True)",
    "sampling_unknown_keyword": "T.SamplingParams(max_token=16)",
    # EncodedTextChunk / ModelInput (StrictBase)
    "chunk_list": "T.EncodedTextChunk(tokens=[1, 2, 3])",
    "chunk_tuple": "T.EncodedTextChunk(tokens=(1, 2, 3))",
    "chunk_range": "T.EncodedTextChunk(tokens=range(3))",
    "chunk_numpy_scalars": "T.EncodedTextChunk(tokens=[np.int64(1), np.int32(2)])",
    "chunk_whole_floats": "T.EncodedTextChunk(tokens=[1.0, 2.0])",
    "chunk_digit_strings": "T.EncodedTextChunk(tokens=['1', '2'])",
    "chunk_fractional": "T.EncodedTextChunk(tokens=[1.5])",
    "chunk_word": "T.EncodedTextChunk(tokens=['one'])",
    "chunk_none_token": "T.EncodedTextChunk(tokens=[None])",
    "chunk_numpy_array": "T.EncodedTextChunk(tokens=np.array([1, 2]))",
    "chunk_type_given": "T.EncodedTextChunk(tokens=[1], type='encoded_text')",
    "chunk_wrong_type": "T.EncodedTextChunk(tokens=[1], type='image')",
    "model_input_from_numpy_scalars": "T.ModelInput.from_ints([np.int64(5), np.int64(6)])",
    "model_input_from_numpy_array": "T.ModelInput.from_ints(np.arange(3))",
    "model_input_dict_chunk": "T.ModelInput(chunks=[{'tokens': [1, 2]}])",
    "model_input_tagged_dict_chunk": "T.ModelInput(chunks=[{'type': 'encoded_text', 'tokens': [1, 2]}])",
    "model_input_dict_pointer_chunk": (
        "T.ModelInput(chunks=[{'type': 'image_asset_pointer', 'format': 'png', 'location': 's3://b/k',"
        " 'expected_tokens': np.int64(4)}])"
    ),
    "model_input_tuple_of_chunks": "T.ModelInput(chunks=(T.EncodedTextChunk(tokens=[1]),))",
    "model_input_unknown_chunk": "T.ModelInput(chunks=[{'words': ['a']}])",
    "model_input_chunks_not_a_list": "T.ModelInput(chunks=5)",
    "model_input_dict": "T.ModelInput.model_validate({'chunks': [{'tokens': [np.int64(3)]}]})",
    # AdamParams, LoraConfig (StrictBase)
    "adam_numpy": "T.AdamParams(learning_rate=np.float64(0.001), weight_decay=np.float32(0.5))",
    "adam_int_for_float": "T.AdamParams(learning_rate=1)",
    "adam_numeric_string": "T.AdamParams(learning_rate='0.5')",
    "adam_word": "T.AdamParams(learning_rate='fast')",
    "lora_numpy_rank": "T.LoraConfig(rank=np.int64(8))",
    "lora_string_rank": "T.LoraConfig(rank='8')",
    "lora_fractional_rank": "T.LoraConfig(rank=8.5)",
    "lora_int_for_bool": "T.LoraConfig(rank=8, train_mlp=0)",
    "lora_missing_rank": "T.LoraConfig()",
    # TensorData (a dataclass with its own __init__ in 0.38)
    "tensor_list": "T.TensorData(data=[1, 2, 3], dtype='int64', shape=[3])",
    "tensor_numpy_array": "T.TensorData(data=np.array([0.5, 0.25]), dtype='float32')",
    "tensor_from_numpy_2d": "T.TensorData.from_numpy(np.arange(4, dtype=np.int32).reshape(2, 2))",
    "tensor_ints_for_float32": "T.TensorData(data=[1, 2], dtype='float32').tolist()",
    "tensor_unknown_dtype": "T.TensorData(data=[1], dtype='int32')",
    "tensor_missing_dtype": "T.TensorData(data=[1])",
    # Datum (a frozen dataclass with its own __post_init__ in 0.38)
    "datum_lists": (
        "T.Datum(model_input=T.ModelInput.from_ints([1, 2, 3]),"
        " loss_fn_inputs={'target_tokens': [2, 3, 4], 'weights': [1.0, 1.0, 0.0]})"
    ),
    "datum_numpy": (
        "T.Datum(model_input=T.ModelInput.from_ints([1, 2]),"
        " loss_fn_inputs={'target_tokens': np.array([2, 3], dtype=np.int32), 'weights': np.array([0.5, 1.0])})"
    ),
    "datum_numpy_scalars_in_lists": (
        "T.Datum(model_input=T.ModelInput.from_ints([1, 2]),"
        " loss_fn_inputs={'target_tokens': [np.int64(2), np.int64(3)], 'advantages': [np.float32(0.5), 1]})"
    ),
    "datum_int_weights": (
        "T.Datum(model_input=T.ModelInput.from_ints([1, 2]), loss_fn_inputs={'weights': [1, 0]})"
    ),
    "datum_2d": (
        "T.Datum(model_input=T.ModelInput.from_ints([1, 2]),"
        " loss_fn_inputs={'weights': [[0.5, 1.0], [0.25, 0.0]]})"
    ),
    "datum_tuple": (
        "T.Datum(model_input=T.ModelInput.from_ints([1, 2]), loss_fn_inputs={'target_tokens': (2, 3)})"
    ),
    "datum_model_input_dict": (
        "T.Datum(model_input={'chunks': [{'tokens': [1, 2]}]}, loss_fn_inputs={'target_tokens': [2, 3]})"
    ),
    "datum_ragged": (
        "T.Datum(model_input=T.ModelInput.from_ints([1, 2]), loss_fn_inputs={'weights': [[1.0], [1.0, 2.0]]})"
    ),
    "datum_string_value": (
        "T.Datum(model_input=T.ModelInput.from_ints([1, 2]), loss_fn_inputs={'weights': 'heavy'})"
    ),
    "datum_unknown_key_list": (
        "T.Datum(model_input=T.ModelInput.from_ints([1, 2]), loss_fn_inputs={'mask': [1, 0]})"
    ),
    "datum_no_loss_fn_inputs": "T.Datum(model_input=T.ModelInput.from_ints([1]))",
    # ForwardBackwardInput (a plain frozen dataclass in 0.38: nothing is validated)
    "fwd_bwd_unknown_loss": "T.ForwardBackwardInput(data=[], loss_fn='no_such_loss')",
    "fwd_bwd_enum_loss": "T.ForwardBackwardInput(data=[], loss_fn=LossName.cross_entropy)",
}
"""Case id -> constructor expression. The outcome of each is recorded (accepted with a value, or rejected)."""

METHOD_CASES: dict[str, str] = {
    "dump": "T.SamplingParams(max_tokens=16, top_k=5, temperature=0.5, top_p=0.5).model_dump()",
    "dump_exclude_unset": "T.SamplingParams(max_tokens=16, top_k=5).model_dump(exclude_unset=True)",
    "dump_exclude_none": "T.SamplingParams(max_tokens=16, top_k=5).model_dump(exclude_none=True)",
    "dump_exclude_defaults": "T.SamplingParams(max_tokens=16, top_k=-1).model_dump(exclude_defaults=True)",
    "dump_json_mode": "T.SamplingParams(stop=('a', 'b'), top_k=5).model_dump(mode='json')",
    "dump_include": "T.SamplingParams(max_tokens=16, top_k=5).model_dump(include={'top_k'})",
    "dump_exclude": "T.SamplingParams(max_tokens=16, top_k=5).model_dump(exclude={'top_k', 'stop'})",
    "dump_nested": "T.ModelInput.from_ints([1, 2]).model_dump()",
    "dump_nested_exclude_unset": "T.ModelInput.from_ints([1, 2]).model_dump(exclude_unset=True)",
    "dump_adam": "T.AdamParams(learning_rate=0.5).model_dump()",
    "dump_adam_exclude_unset": "T.AdamParams(learning_rate=0.5).model_dump(exclude_unset=True)",
    "dump_lora": "T.LoraConfig(rank=4).model_dump()",
    "dump_image_chunk": "T.ImageChunk(data=b'\\x00\\x01', format='png').model_dump()",
    "dump_image_chunk_json": "T.ImageChunk(data=b'\\x00\\x01', format='png').model_dump(mode='json')",
    "dump_json_text": "T.SamplingParams(max_tokens=16, temperature=0.5, top_p=0.5).model_dump_json()",
    "dump_json_text_exclude_unset": "T.SamplingParams(max_tokens=16).model_dump_json(exclude_unset=True)",
    "dump_json_text_indent": "T.LoraConfig(rank=4).model_dump_json(indent=2)",
    "dump_json_text_nested": "T.ModelInput.from_ints([1, 2]).model_dump_json()",
    "validate": "T.SamplingParams.model_validate({'max_tokens': 8, 'stop': ['x']}).model_dump()",
    "validate_numpy": "T.SamplingParams.model_validate({'max_tokens': np.int64(8)}).model_dump()",
    "validate_instance_is_same": "(lambda p: T.SamplingParams.model_validate(p) is p)(T.SamplingParams(top_k=3))",
    "validate_nested": "T.ModelInput.model_validate({'chunks': [{'tokens': [1, 2]}]}).to_ints()",
    "validate_json": "T.SamplingParams.model_validate_json('{\"max_tokens\": 8, \"seed\": 1}').model_dump()",
    "validate_json_nested": "T.ModelInput.model_validate_json('{\"chunks\": [{\"tokens\": [4]}]}').length",
    "copy_update": "T.SamplingParams(max_tokens=16, top_k=5).model_copy(update={'max_tokens': 4}).model_dump()",
    "copy_is_equal": "(lambda p: p.model_copy() == p)(T.SamplingParams(max_tokens=16))",
    "fields": "sorted(T.SamplingParams.model_fields)",
    "field_defaults": "{k: v.default for k, v in T.LoraConfig.model_fields.items() if not v.is_required()}",
    "field_required": "{k: v.is_required() for k, v in T.ModelInput.model_fields.items()}",
    "field_annotation": "T.LoraConfig.model_fields['rank'].annotation.__name__",
    "construct": "T.SamplingParams.model_construct(max_tokens=4).max_tokens",
    "equal": "T.SamplingParams(max_tokens=16) == T.SamplingParams(max_tokens=16)",
    "equal_explicit_default": "T.SamplingParams() == T.SamplingParams(temperature=1.0, top_k=-1)",
    "not_equal": "T.SamplingParams(max_tokens=16) == T.SamplingParams(max_tokens=17)",
    "equal_other_type": "T.EncodedTextChunk(tokens=[1]) == T.ModelInput.from_ints([1])",
    "hash_equal": "hash(T.LoraConfig(rank=4)) == hash(T.LoraConfig(rank=4, seed=None))",
    "repr_chunk": "repr(T.EncodedTextChunk(tokens=[1, 2]))",
    "repr_model_input": "repr(T.ModelInput.from_ints([1, 2]))",
    "repr_lora": "repr(T.LoraConfig(rank=4))",
    "repr_sampling": "repr(T.SamplingParams(max_tokens=16, temperature=0.5, top_p=0.5))",
    "str_sampling": "str(T.SamplingParams(max_tokens=16, temperature=0.5, top_p=0.5))",
    "pickle_round_trip": "(lambda p: pickle.loads(pickle.dumps(p)) == p)(T.SamplingParams(max_tokens=16, stop=['x']))",
    "frozen": "(lambda p: setattr(p, 'max_tokens', 3))(T.SamplingParams())",
    "datum_replace": (
        "(lambda d: describe(dataclasses.replace(d, loss_fn_inputs={'target_tokens': [7, 8]})))"
        "(T.Datum(model_input=T.ModelInput.from_ints([1, 2]), loss_fn_inputs={'target_tokens': [2, 3]}))"
    ),
    "datum_replace_model_input": (
        "(lambda d: describe(dataclasses.replace(d, model_input=T.ModelInput.from_ints([9]))))"
        "(T.Datum(model_input=T.ModelInput.from_ints([1, 2]), loss_fn_inputs={'target_tokens': [2, 3]}))"
    ),
    "datum_is_dataclass": "dataclasses.is_dataclass(T.Datum(model_input=T.ModelInput.from_ints([1])))",
    "datum_field_names": "sorted(f.name for f in dataclasses.fields(T.Datum))",
}
"""Case id -> expression whose (JSON-described) result is recorded."""


class LossName(str, enum.Enum):
    cross_entropy = "cross_entropy"


def describe(value: Any) -> Any:
    """A JSON-able description of a constructed value, the same for the official and tinkex types.

    Models are described by their JSON dump (dataclass models field by field), ``TensorData`` by its flat data,
    dtype and shape; tuples read as lists, numpy scalars and enums as their Python values.
    """
    if type(value).__name__ == "TensorData":
        shape = value.shape
        return {"data": describe(list(value.data)), "dtype": value.dtype, "shape": None if shape is None else list(shape)}
    if isinstance(value, type):
        return value.__name__
    if dataclasses.is_dataclass(value):
        return {f.name: describe(getattr(value, f.name)) for f in dataclasses.fields(type(value))}
    if hasattr(value, "model_dump"):
        return describe(value.model_dump(mode="json"))
    if isinstance(value, enum.Enum):
        return describe(value.value)
    if isinstance(value, dict):
        return {str(key): describe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, range)):
        return [describe(item) for item in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return describe(value.tolist())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def error_kind(exc: BaseException) -> str:
    """``ValidationError`` for pydantic's (and tinkex's) validation error, else the builtin base class."""
    if type(exc).__name__ == "ValidationError":
        return "ValidationError"
    for kind in (KeyError, TypeError, ValueError, AttributeError):
        if isinstance(exc, kind):
            return kind.__name__
    return type(exc).__name__


def outcome(expression: str, namespace: dict[str, Any]) -> dict[str, Any]:
    try:
        value = eval(expression, namespace)  # noqa: S307 - the expressions are this file's own table
    except Exception as exc:  # noqa: BLE001 - the outcome is the point
        return {"outcome": "rejected", "error": error_kind(exc), "message": str(exc).splitlines()[0][:200]}
    return {"outcome": "accepted", "value": describe(value), "type": type(value).__name__}


def namespace_for(package: str) -> dict[str, Any]:
    import pickle

    import numpy as np

    return {
        "T": importlib.import_module(f"{package}.types"),
        "np": np,
        "LossName": LossName,
        "dataclasses": dataclasses,
        "pickle": pickle,
        "describe": describe,
    }


def record(package: str) -> dict[str, Any]:
    namespace = namespace_for(package)
    version = getattr(importlib.import_module(package), "__version__", "?")
    return {
        "package": package,
        "version": version,
        "construction": {
            case: {"expression": expr, **outcome(expr, namespace)} for case, expr in CONSTRUCTION_CASES.items()
        },
        "methods": {case: {"expression": expr, **outcome(expr, namespace)} for case, expr in METHOD_CASES.items()},
    }


def main(argv: list[str]) -> int:
    package = argv[0] if argv else "tinker"
    json.dump(record(package), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
