"""The decisions that let one call form serve both 0.16 and 0.38, as tables."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from tinkex import types
from tinkex.client import _check_pass_through_arguments, _exit_status, _from_state_arguments
from tinkex.sampling_client import _new_options
from tinkex.training_client import _check_loss_type_input, _optim_params, _set_only

ADAM = types.AdamParams(learning_rate=0.1)
DIMUON = types.DimuonParams(learning_rate=0.1)


@pytest.mark.parametrize(
    ("base_model", "user_metadata", "expected"),
    [
        (None, None, (None, None)),
        ("Qwen/Qwen3-8B", None, ("Qwen/Qwen3-8B", None)),  # 0.38: base_model override
        ("Qwen/Qwen3-8B", {"a": "b"}, ("Qwen/Qwen3-8B", {"a": "b"})),
        ({"a": "b"}, None, (None, {"a": "b"})),  # 0.16: (path, user_metadata) positionally
        (None, {"a": "b"}, (None, {"a": "b"})),
    ],
)
def test_from_state_arguments(base_model: Any, user_metadata: Any, expected: tuple[Any, Any]) -> None:
    assert _from_state_arguments(base_model, user_metadata) == expected


def test_from_state_metadata_given_twice_is_refused() -> None:
    with pytest.raises(TypeError, match="twice"):
        _from_state_arguments({"a": "b"}, {"c": "d"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc_type", "status"),
    [(None, "success"), (ValueError, "errored"), (KeyboardInterrupt, "interrupted"), (SystemExit, "interrupted")],
)
def test_exit_status(exc_type: type[BaseException] | None, status: str) -> None:
    assert _exit_status(exc_type) == status


@pytest.mark.parametrize(
    ("kwargs", "outcome"),
    [
        ({}, "silent"),
        ({"timeout": 5}, "warns"),
        ({"max_retries": 2, "http_client": None}, "warns"),
        ({"base_ulr": "x"}, "refused"),
        ({"timeout": 5, "tags_": ["x"]}, "refused"),
    ],
)
def test_pass_through_arguments(kwargs: dict[str, Any], outcome: str) -> None:
    if outcome == "refused":
        with pytest.raises(TypeError):
            _check_pass_through_arguments(kwargs)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _check_pass_through_arguments(kwargs)
    assert bool(caught) == (outcome == "warns")


@pytest.mark.parametrize(
    ("optim_params", "adam_params", "expected"),
    [(ADAM, None, ADAM), (None, ADAM, ADAM), (DIMUON, None, DIMUON)],
)
def test_optim_params(optim_params: Any, adam_params: Any, expected: Any) -> None:
    assert _optim_params(optim_params, adam_params) is expected


@pytest.mark.parametrize(
    ("optim_params", "adam_params", "error"),
    [(ADAM, ADAM, ValueError), (None, None, TypeError), ({"learning_rate": 1}, None, TypeError)],
)
def test_optim_params_refused(optim_params: Any, adam_params: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        _optim_params(optim_params, adam_params)


@pytest.mark.parametrize(("value", "ok"), [(None, True), ("logprobs", True), ("probs", False)])
def test_loss_type_input(value: Any, ok: bool) -> None:
    if ok:
        _check_loss_type_input(value)
    else:
        with pytest.raises(ValueError, match="logprobs"):
            _check_loss_type_input(value)


def test_only_set_fields_are_kept() -> None:
    assert _set_only(overwrite=None, user_metadata=None) == {}
    assert _set_only(overwrite=True, user_metadata={}) == {"overwrite": True, "user_metadata": {}}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((False, False, 0, None, 0, None), {}),  # a 0.16 call: nothing new on the wire
        ((True, False, 0, None, 0, None), {"record_stability_info": True}),
        ((False, False, 5, None, 0, None), {"topk_sample_logprobs": 5}),
        ((False, False, 0, None, 3, None), {"prompt_alt_tokens_k": 3}),
        ((False, True, 0, None, 0, 4), {"prompt_logprobs_last_n": 4}),
    ],
)
def test_new_sampling_options(args: tuple[Any, ...], expected: dict[str, Any]) -> None:
    assert _new_options(*args) == expected
