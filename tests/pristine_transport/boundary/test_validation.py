"""Case 4 of the boundary: argument checks as tables (tinkex.validation). Each wrong argument is refused at once
with a message naming the argument and the fix; each right one comes back as it was."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from tinkex import types
from tinkex.validation import (
    LOSS_FN_NAMES,
    InvalidArgumentError,
    check_data,
    check_loss_fn,
    check_loss_fn_config,
    check_model_input,
    check_num_samples,
    check_sampling_params,
)

PROMPT = types.ModelInput.from_ints([1, 2, 3])
DATUM = types.Datum(model_input=PROMPT, loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [1.0, 1.0, 1.0]})


@pytest.mark.parametrize(
    ("value", "argument", "fix"),
    [
        ("hello world", "prompt", "ModelInput.from_ints(tokenizer.encode(text))"),
        ([1, 2, 3], "prompt", "ModelInput.from_ints(...)"),
        ({"chunks": []}, "prompt", "ModelInput.from_ints(tokens)"),
        (None, "prompt", "ModelInput.from_ints(tokens)"),
    ],
)
def test_a_prompt_that_is_not_a_model_input_is_refused(value: Any, argument: str, fix: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check_model_input(value)
    assert caught.value.argument == argument and str(caught.value).startswith(f"{argument}: ")
    assert fix in str(caught.value)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)


def test_a_model_input_passes() -> None:
    assert check_model_input(PROMPT) is PROMPT


@pytest.mark.parametrize(
    ("data", "argument", "fix"),
    [
        (DATUM, "data", "pass [datum]"),
        ([], "data", "at least one Datum"),
        ("text", "data", "expected a list of Datum"),
        ({"model_input": PROMPT}, "data", "expected a list of Datum"),
        ([DATUM, {"model_input": [1]}], "data[1]", "Datum(model_input=ModelInput.from_ints(...)"),
        (42, "data", "expected a list of Datum"),
    ],
)
def test_data_that_is_not_a_list_of_datum_is_refused(data: Any, argument: str, fix: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check_data(data)
    assert caught.value.argument == argument and fix in str(caught.value)


def test_a_list_or_tuple_of_datum_passes_as_a_list() -> None:
    assert check_data([DATUM, DATUM]) == [DATUM, DATUM]
    assert check_data((DATUM,)) == [DATUM]


@pytest.mark.parametrize(
    ("loss_fn", "expected"),
    [
        ("crossentropy", "did you mean 'cross_entropy'?"),
        ("ppo2", "did you mean 'ppo'?"),
        ("mse", "one of cross_entropy, importance_sampling, ppo"),
        (None, "expected a loss name (str)"),
        (lambda data, logprobs: 0.0, "forward_backward_custom"),
    ],
)
def test_an_unknown_loss_is_refused_with_the_valid_names(loss_fn: Any, expected: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check_loss_fn(loss_fn)
    assert caught.value.argument == "loss_fn" and expected in str(caught.value)


@pytest.mark.parametrize("name", LOSS_FN_NAMES)
def test_every_known_loss_passes(name: str) -> None:
    assert check_loss_fn(name) == name


def test_known_losses_are_the_types_own() -> None:
    from typing import get_args

    assert set(LOSS_FN_NAMES) == set(get_args(types.LossFnType))


@pytest.mark.parametrize(
    ("params", "argument"),
    [
        (types.SamplingParams(temperature=-0.1), "sampling_params.temperature"),
        (types.SamplingParams(temperature=float("nan")), "sampling_params.temperature"),
        (types.SamplingParams(top_p=0.0), "sampling_params.top_p"),
        (types.SamplingParams(top_p=1.5), "sampling_params.top_p"),
        (types.SamplingParams(top_k=0), "sampling_params.top_k"),
        (types.SamplingParams(top_k=-2), "sampling_params.top_k"),
        (types.SamplingParams(max_tokens=0), "sampling_params.max_tokens"),
        ({"max_tokens": 4}, "sampling_params"),
    ],
)
def test_sampling_params_out_of_range_are_refused(params: Any, argument: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check_sampling_params(params)
    assert caught.value.argument == argument


@pytest.mark.parametrize(
    "params",
    [
        types.SamplingParams(),
        types.SamplingParams(max_tokens=16, temperature=0.0, top_k=-1, top_p=1.0, seed=3, stop="\n"),
        types.SamplingParams(max_tokens=None, top_k=50, top_p=0.9, stop=[13, 14]),
    ],
)
def test_sampling_params_in_range_pass(params: types.SamplingParams) -> None:
    assert check_sampling_params(params) is params


@pytest.mark.parametrize(("value", "ok"), [(1, True), (8, True), (0, False), (-1, False), (True, False), (2.0, False)])
def test_num_samples(value: Any, ok: bool) -> None:
    if ok:
        assert check_num_samples(value) == value
    else:
        with pytest.raises(InvalidArgumentError, match="num_samples: expected an int >= 1"):
            check_num_samples(value)


@pytest.mark.parametrize(
    ("config", "argument"),
    [([1.0], "loss_fn_config"), ({1: 1.0}, "loss_fn_config"), ({"clip": float("inf")}, "loss_fn_config['clip']")],
)
def test_a_bad_loss_fn_config_is_refused(config: Any, argument: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check_loss_fn_config(config)
    assert caught.value.argument == argument


def test_a_good_loss_fn_config_passes() -> None:
    assert check_loss_fn_config(None) is None
    assert check_loss_fn_config({"clip_low": 0.8, "clip_high": 1}) == {"clip_low": 0.8, "clip_high": 1}


def test_the_error_pickles_with_its_argument_and_problem() -> None:
    """A worker process's refusal reaches the parent whole (it used to fail to unpickle: two-argument __init__)."""
    with pytest.raises(InvalidArgumentError) as caught:
        check_num_samples(0)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is InvalidArgumentError and str(copy) == str(caught.value)
    assert (copy.argument, copy.problem) == (caught.value.argument, caught.value.problem)
