"""forward_backward chunking and metric reduction (docs/wire.md §1.6, §4.3)."""

from __future__ import annotations

import pytest

from tinkex.chunking import (
    MAX_CHUNK_BYTES_COUNT,
    MAX_CHUNK_LEN,
    chunk_data,
    combine_forward_backward_outputs,
    reduce_metrics,
)
from tinkex.estimate import estimate_datum_bytes
from tinkex.types import Datum, ForwardBackwardOutput, ModelInput, TensorData


def _datum(tokens: int) -> Datum:
    """A datum estimated at exactly ``tokens * 10`` bytes."""
    return Datum(loss_fn_inputs={}, model_input=ModelInput.from_ints(list(range(tokens))))


def _sizes(chunks: list[list[Datum]]) -> list[int]:
    return [len(chunk) for chunk in chunks]


def test_official_limits() -> None:
    assert (MAX_CHUNK_LEN, MAX_CHUNK_BYTES_COUNT) == (1024, 5_000_000)


def test_empty_data_gives_no_chunks() -> None:
    assert chunk_data([]) == []


def test_chunks_by_count_keep_order() -> None:
    data = [_datum(1) for _ in range(7)]
    chunks = chunk_data(data, max_len=3)
    assert _sizes(chunks) == [3, 3, 1]
    assert [d for chunk in chunks for d in chunk] == data


def test_default_count_limit_is_1024() -> None:
    assert _sizes(chunk_data([_datum(1) for _ in range(2049)])) == [1024, 1024, 1]


def test_chunks_by_bytes_allow_exactly_the_limit() -> None:
    data = [_datum(4) for _ in range(5)]  # 40 bytes each
    assert estimate_datum_bytes(data[0]) == 40
    assert _sizes(chunk_data(data, max_bytes=80)) == [2, 2, 1]  # 40 + 40 == 80 fits
    assert _sizes(chunk_data(data, max_bytes=79)) == [1, 1, 1, 1, 1]


def test_oversize_datum_forms_its_own_chunk() -> None:
    small, huge = _datum(1), _datum(100)  # 10 and 1000 bytes
    assert _sizes(chunk_data([huge, small, small], max_bytes=50)) == [1, 2]
    assert _sizes(chunk_data([small, huge, small], max_bytes=50)) == [1, 1, 1]
    assert _sizes(chunk_data([huge, huge], max_bytes=50)) == [1, 1]


def test_tensor_elements_count_towards_chunk_bytes() -> None:
    heavy = Datum(loss_fn_inputs={"weights": [1.0] * 5}, model_input=ModelInput.from_ints([1]))  # 60 bytes
    assert _sizes(chunk_data([heavy, heavy, heavy], max_bytes=120)) == [2, 1]


def test_invalid_max_len_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_len"):
        chunk_data([_datum(1)], max_len=0)


# --- combining outputs ----------------------------------------------------------------------------------------


def _output(n_outputs: int, metrics: dict[str, float], tag: float = 0.0) -> ForwardBackwardOutput:
    outputs = [{"loss": TensorData(data=[tag + i], dtype="float32", shape=[1])} for i in range(n_outputs)]
    return ForwardBackwardOutput(loss_fn_output_type="ArrayRecord", loss_fn_outputs=outputs, metrics=metrics)


def test_empty_list_gives_an_empty_output() -> None:
    assert combine_forward_backward_outputs([]) == ForwardBackwardOutput(
        loss_fn_output_type="", loss_fn_outputs=[], metrics={}
    )


def test_outputs_are_concatenated_in_chunk_order() -> None:
    combined = combine_forward_backward_outputs([_output(2, {}, tag=10), _output(1, {}, tag=20)])
    assert combined.loss_fn_output_type == "ArrayRecord"
    assert [o["loss"].data for o in combined.loss_fn_outputs] == [[10.0], [11.0], [20.0]]


def test_each_reduction() -> None:
    first = _output(1, {"loss:mean": 2.0, "tokens:sum": 5.0, "lr:min": 3.0, "grad:max": 1.0, "t:slack": 2.0})
    second = _output(3, {"loss:mean": 6.0, "tokens:sum": 7.0, "lr:min": 1.0, "grad:max": 4.0, "t:slack": 6.0})
    metrics = reduce_metrics([first, second])
    # weights are the output counts 1 and 3: (2*1 + 6*3) / 4 = 5
    assert metrics["loss:mean"] == pytest.approx(5.0)
    assert metrics["tokens:sum"] == 12.0
    assert metrics["lr:min"] == 1.0
    assert metrics["grad:max"] == 4.0
    # max 6 minus weighted mean 5
    assert metrics["t:slack"] == pytest.approx(1.0)


def test_unique_keeps_every_value_with_suffixes() -> None:
    outputs = [_output(1, {"step:unique": v}) for v in (4.0, 5.0, 6.0)]
    assert reduce_metrics(outputs) == {"step:unique": 4.0, "step:unique_1": 5.0, "step:unique_2": 6.0}


def test_hash_unordered_ignores_chunk_order() -> None:
    forward = reduce_metrics([_output(1, {"ids:hash_unordered": 11.0}), _output(1, {"ids:hash_unordered": 3.0})])
    backward = reduce_metrics([_output(1, {"ids:hash_unordered": 3.0}), _output(1, {"ids:hash_unordered": 11.0})])
    assert forward == backward == {"ids:hash_unordered": hash((3, 11))}


def test_unknown_reduction_and_partially_missing_metrics_are_dropped() -> None:
    first = _output(1, {"a:median": 1.0, "b:sum": 1.0, "c:sum": 2.0})
    second = _output(1, {"a:median": 1.0, "c:sum": 3.0, "d:sum": 9.0})
    assert reduce_metrics([first, second]) == {"c:sum": 5.0}


def test_key_without_exactly_one_colon_raises_naming_the_key() -> None:
    with pytest.raises(ValueError, match="'loss'"):
        reduce_metrics([_output(1, {"loss": 1.0})])
    with pytest.raises(ValueError, match="'a:b:sum'"):
        combine_forward_backward_outputs([_output(1, {"a:b:sum": 1.0})])


def test_mean_without_any_outputs_falls_back_to_plain_mean() -> None:
    assert reduce_metrics([_output(0, {"x:mean": 1.0}), _output(0, {"x:mean": 3.0})]) == {"x:mean": 2.0}


def test_single_output_passes_through() -> None:
    single = _output(2, {"loss:mean": 0.25, "n:unique": 1.0})
    combined = combine_forward_backward_outputs([single])
    assert combined.metrics == {"loss:mean": 0.25, "n:unique": 1.0}
    assert combined.loss_fn_outputs == single.loss_fn_outputs
