"""LocalServer refuses out-of-range values like a strict server: 400 naming the field and the allowed range, before
anything runs (never a 500 from the fake model). A table of the pure rule, then real HTTP on a loopback server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tinkex import types as t
from tinkex.testing import LocalServer
from tinkex.testing.request_rules import request_problem
from tinkex.types import codec

PROMPT = {"chunks": [{"tokens": [1, 2, 3], "type": "encoded_text"}]}


def _sample(**params: Any) -> dict[str, Any]:
    return {"prompt": PROMPT, "num_samples": 1, "sampling_params": params, "base_model": "Qwen/Qwen3-8B"}


def _datum() -> dict[str, Any]:
    return {"model_input": PROMPT, "loss_fn_inputs": {"target_tokens": {"data": [2, 3, 4], "dtype": "int64", "shape": [3]}}}


# endpoint, body, the field the answer must name (None: accepted)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("asample", _sample(temperature=-1.0), "sampling_params.temperature"),
    ("asample", _sample(max_tokens=-5), "sampling_params.max_tokens"),
    ("asample", _sample(top_p=1.5), "sampling_params.top_p"),
    ("asample", _sample(top_k=-7), "sampling_params.top_k"),
    ("asample", {**_sample(max_tokens=4), "num_samples": 0}, "num_samples"),
    ("asample", _sample(max_tokens=4, temperature=0.7, top_p=1.0, top_k=-1), None),
    ("create_model", {"session_id": "s", "model_seq_id": 0, "base_model": "m", "lora_config": {"rank": 0}},
     "lora_config.rank"),
    ("create_model", {"session_id": "s", "model_seq_id": 0, "base_model": "m", "lora_config": {"rank": 8}}, None),
    ("forward_backward", {"model_id": "m", "forward_backward_input": {"data": [], "loss_fn": "cross_entropy"}},
     "forward_backward_input.data"),
    ("forward", {"model_id": "m", "forward_input": {"data": [], "loss_fn": "cross_entropy"}}, "forward_input.data"),
    ("forward_backward", {"model_id": "m", "forward_backward_input": {"data": [_datum()], "loss_fn": "cross_entropy"}},
     None),
    ("optim_step", {"model_id": "m", "adam_params": {"learning_rate": -1.0}}, "adam_params.learning_rate"),
    ("optim_step", {"model_id": "m", "adam_params": {"learning_rate": 1e-4, "beta1": 1.0}}, "adam_params.beta1"),
    ("optim_step", {"model_id": "m", "adam_params": {"learning_rate": 1e-4, "eps": 0.0}}, "adam_params.eps"),
    ("optim_step", {"model_id": "m", "adam_params": {"learning_rate": 1e-4, "weight_decay": -0.1}},
     "adam_params.weight_decay"),
    ("optim_step", {"model_id": "m", "adam_params": {"learning_rate": 0.0}}, None),
]

REQUEST_TYPES = {
    "asample": t.SampleRequest,
    "create_model": t.CreateModelRequest,
    "forward_backward": t.ForwardBackwardRequest,
    "forward": t.ForwardRequest,
    "optim_step": t.OptimStepRequest,
}


@pytest.mark.parametrize(("endpoint", "body", "field"), CASES)
def test_rule_table(endpoint: str, body: dict[str, Any], field: str | None) -> None:
    decoded = codec.decode(codec.encode(body), REQUEST_TYPES[endpoint])
    problem = request_problem(endpoint, decoded)
    if field is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(f"{field}: ")


@pytest.mark.parametrize(("endpoint", "body", "field"), [case for case in CASES if case[2] is not None])
def test_server_answers_400_naming_the_field_and_runs_nothing(
    endpoint: str, body: dict[str, Any], field: str
) -> None:
    with LocalServer() as server:
        response = httpx.post(f"{server.base_url}/api/v1/{endpoint}", json=body, headers={"X-API-Key": "tml-test"})
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert detail.startswith(f"{field}: ") and ("expected" in detail or "empty" in detail)
        assert server.ledger.executions() == []
