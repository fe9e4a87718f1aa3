"""tinkex's types against the official 0.38 types, case by case: construction inputs and pydantic methods.

The expected outcomes were recorded once by ``tools/official_type_outcomes.py`` in the official package's venv
(``data/official_type_outcomes.json``); here the same expressions run against ``tinkex.types``. A case passes when
both accept it with the same value (described by the tool's ``describe``: JSON dumps, TensorData's data, dtype
and shape), or both reject it with the same kind of error (pydantic's ``ValidationError`` <-> tinkex's).
``DELIBERATE`` lists where tinkex differs on purpose, with the reason; each must still differ.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tinkex.types import codec

DATA = Path(__file__).parent / "data" / "official_type_outcomes.json"


def _load_tool() -> Any:
    path = Path(__file__).parents[3] / "tools" / "official_type_outcomes.py"
    spec = importlib.util.spec_from_file_location("official_type_outcomes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()
OFFICIAL: dict[str, Any] = json.loads(DATA.read_text())

DELIBERATE: dict[str, str] = {
    "chunk_numpy_array": "a numpy array is accepted wherever a list is (pydantic rejects it for Sequence-typed "
    "fields such as tokens, and accepts it for List-typed ones)",
    "model_input_from_numpy_array": "same: from_ints(np.arange(3)) works (official: EncodedTextChunk rejects the array)",
    "sampling_stop_numpy_array": "same: stop=np.array([...]) is a list of token ids",
    "datum_tuple": "tuples are accepted wherever lists are (the official Datum raises TypeError for a tuple)",
    "datum_model_input_dict": "a nested dict is converted to its type (the official dataclass keeps the dict, "
    "which fails only when the request is sent)",
    "datum_unknown_key_list": "a list under a key without a known dtype takes its values' kind (the official "
    "Datum raises KeyError)",
    "sampling_bool_for_int": "msgspec never reads a bool as an int: True for max_tokens is rejected",
    "sampling_unknown_keyword": "an unknown keyword is a TypeError at construction (msgspec's __init__); the "
    "official SamplingParams (a response-style BaseModel) ignores it",
    "lora_missing_rank": "a missing required argument is msgspec's TypeError, raised before any validation",
    "equal_explicit_default": "equality compares what is sent: an unset field (absent from the JSON) is not "
    "equal to the same field set to its default (sent); pydantic compares the values only",
    "frozen": "assigning to a frozen type raises AttributeError (pydantic raises its ValidationError)",
}


def _strictly_equal(a: Any, b: Any) -> bool:
    """Equality that tells ``1`` from ``1.0`` (and ``True`` from ``1``), at any depth."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strictly_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_strictly_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _same(official: dict[str, Any], ours: dict[str, Any]) -> bool:
    if official["outcome"] != ours["outcome"]:
        return False
    if official["outcome"] == "accepted":
        return _strictly_equal(official["value"], ours["value"])
    if official["error"] == "ValueError":  # tinkex's ValidationError is a ValueError too
        return ours["error"] in ("ValueError", "ValidationError")
    return bool(official["error"] == ours["error"])


@pytest.fixture(scope="module")
def namespace() -> dict[str, Any]:
    pytest.importorskip("numpy")
    result: dict[str, Any] = tool.namespace_for("tinkex")
    return result


def _cases(section: str) -> list[Any]:
    return [pytest.param(case, id=case) for case in sorted(OFFICIAL[section])]


def test_the_data_was_recorded_from_the_official_038_package() -> None:
    assert OFFICIAL["package"] == "tinker" and OFFICIAL["version"] == "0.38.0"
    assert set(OFFICIAL["construction"]) == set(tool.CONSTRUCTION_CASES), "re-run the tool: the table changed"
    assert set(OFFICIAL["methods"]) == set(tool.METHOD_CASES), "re-run the tool: the table changed"
    assert set(DELIBERATE) <= set(OFFICIAL["construction"]) | set(OFFICIAL["methods"])


@pytest.mark.parametrize("case", _cases("construction"))
def test_construction_has_the_official_outcome(case: str, namespace: dict[str, Any]) -> None:
    official = OFFICIAL["construction"][case]
    ours = tool.outcome(official["expression"], namespace)
    if case in DELIBERATE:
        assert not _same(official, ours), f"{case} now matches the official outcome: drop it from DELIBERATE"
        return
    assert _same(official, ours), f"{official['expression']}\nofficial: {official}\ntinkex:   {ours}"
    if ours["outcome"] == "accepted":
        # What was accepted must also be sendable: the failure used to come only at encoding.
        codec.encode(eval(official["expression"], namespace))  # noqa: S307 - the committed table


@pytest.mark.parametrize("case", _cases("methods"))
def test_pydantic_methods_return_the_official_values(case: str, namespace: dict[str, Any]) -> None:
    official = OFFICIAL["methods"][case]
    ours = tool.outcome(official["expression"], namespace)
    if case in DELIBERATE:
        assert not _same(official, ours), f"{case} now matches the official outcome: drop it from DELIBERATE"
        return
    assert _same(official, ours), f"{official['expression']}\nofficial: {official}\ntinkex:   {ours}"


def test_rejections_are_tinkex_validation_errors_naming_the_type_and_field(namespace: dict[str, Any]) -> None:
    official = OFFICIAL["construction"]["chunk_fractional"]
    ours = tool.outcome(official["expression"], namespace)
    assert ours["error"] == "ValidationError"
    assert ours["message"].startswith("invalid EncodedTextChunk.tokens[0]: ")
    assert "1.5" in ours["message"]
