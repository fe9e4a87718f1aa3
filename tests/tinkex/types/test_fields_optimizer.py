"""Optimizer configs and per-step params [0.38], and OptimStepRequest's two spellings (0.16 ``adam_params``,
0.38 ``optim_params``)."""

from __future__ import annotations

import json

import msgspec
import pytest

from tinkex.types import (
    AdamOptimizerConfig,
    AdamParams,
    CreateModelRequest,
    DimuonOptimizerConfig,
    DimuonParams,
    GetInfoResponse,
    LoadWeightsRequest,
    ModelData,
    OptimizerConfig,
    OptimizerConfigBase,
    OptimParams,
    OptimParamsBase,
    OptimStepRequest,
    WeightsInfoResponse,
)
from tinkex.types.codec import decode, encode


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"type":"adamw"}', AdamOptimizerConfig()),
        (b'{"type":"dimuon","version":1}', DimuonOptimizerConfig()),
        (b'{"type":"dimuon"}', DimuonOptimizerConfig()),
        (b'{"type":"lion","beta":0.5}', OptimizerConfigBase(type="lion")),
    ],
)
def test_optimizer_config_decodes_to_its_family(body: bytes, expected: OptimizerConfig) -> None:
    assert decode(body, OptimizerConfig) == expected
    assert isinstance(expected, OptimizerConfig)


def test_optimizer_config_needs_a_type_and_a_known_family_rejects_unknown_keys() -> None:
    with pytest.raises(msgspec.ValidationError, match="`type`"):
        decode(b"{}", OptimizerConfig)
    with pytest.raises(msgspec.ValidationError, match="unknown field `x`"):
        decode(b'{"type":"adamw","x":1}', OptimizerConfig)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"learning_rate":0.5}', AdamParams(learning_rate=0.5)),
        (b"{}", AdamParams()),
        (b'{"type":"dimuon","learning_rate":0.1}', DimuonParams(learning_rate=0.1)),
        (b'{"type":"muon2","learning_rate":0.1}', OptimParamsBase(type="muon2")),
    ],
)
def test_optim_params_untagged_is_adam_tagged_is_its_family(body: bytes, expected: OptimParams) -> None:
    assert decode(body, OptimParams) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"learning_rate": -0.1}, "learning_rate must be >= 0"),
        ({"learning_rate": 0.1, "beta1": 1.0}, r"beta1 must be in \[0, 1\)"),
        ({"learning_rate": float("nan")}, "must be finite"),
        ({"learning_rate": 0.1, "grad_clip_norm": float("inf")}, "must be finite"),
    ],
)
def test_dimuon_params_are_range_checked(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DimuonParams(**kwargs)


def test_dimuon_params_defaults_are_the_official_ones() -> None:
    params = DimuonParams(learning_rate=0.01)
    assert (params.type, params.grad_clip_norm, params.beta1) == ("dimuon", 0.0, 0.9)
    assert json.loads(encode(params)) == {"type": "dimuon", "learning_rate": 0.01, "grad_clip_norm": 0.0, "beta1": 0.9}


# --- OptimStepRequest ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_obj", "wire"),
    [
        # 0.16 form: exactly what 0.16.1 sends.
        (
            OptimStepRequest(adam_params=AdamParams(learning_rate=1e-4), model_id="m", seq_id=3),
            {"adam_params": {"learning_rate": 1e-4}, "model_id": "m", "seq_id": 3},
        ),
        # 0.38 form with Adam: the same 0.16 wire shape.
        (
            OptimStepRequest(optim_params=AdamParams(learning_rate=1e-4), model_id="m", seq_id=3),
            {"adam_params": {"learning_rate": 1e-4}, "model_id": "m", "seq_id": 3},
        ),
        # Another family goes under 0.38's `optimizer_params`.
        (
            OptimStepRequest(optim_params=DimuonParams(learning_rate=0.02), model_id="m", seq_id=4),
            {
                "optimizer_params": {"type": "dimuon", "learning_rate": 0.02, "grad_clip_norm": 0.0, "beta1": 0.9},
                "model_id": "m",
                "seq_id": 4,
            },
        ),
    ],
)
def test_optim_step_request_wire_shapes(request_obj: OptimStepRequest, wire: dict[str, object]) -> None:
    assert json.loads(encode(request_obj)) == wire
    assert decode(encode(request_obj), OptimStepRequest) == request_obj


def test_optim_params_reads_the_step_parameters_whichever_keyword_gave_them() -> None:
    legacy = OptimStepRequest(adam_params=AdamParams(learning_rate=0.3), model_id="m")
    assert legacy.optim_params == AdamParams(learning_rate=0.3)
    dimuon = OptimStepRequest(optim_params=DimuonParams(learning_rate=0.02), model_id="m")
    assert dimuon.optim_params == DimuonParams(learning_rate=0.02)
    assert dimuon.adam_params is None
    assert legacy.type == "optim_step" and legacy.seq_id is None


def test_optim_step_request_takes_exactly_one_of_the_two_keywords() -> None:
    with pytest.raises(ValueError, match="not both"):
        OptimStepRequest(adam_params=AdamParams(), optim_params=AdamParams(), model_id="m")
    with pytest.raises(ValueError, match="needs optim_params"):
        OptimStepRequest(model_id="m")


def test_a_038_body_with_optimizer_params_decodes() -> None:
    body = b'{"optimizer_params":{"type":"dimuon","learning_rate":0.5},"model_id":"m","seq_id":1,"type":"optim_step"}'
    request = decode(body, OptimStepRequest)
    assert request.optim_params == DimuonParams(learning_rate=0.5)


# --- optimizer_config on the model-lifecycle types -----------------------------------------------------------
def test_create_model_sends_optimizer_config_only_when_set_and_reads_adam_otherwise() -> None:
    plain = CreateModelRequest(session_id="s", model_seq_id=0, base_model="b")
    assert "optimizer_config" not in json.loads(encode(plain))
    assert plain.optimizer_config == AdamOptimizerConfig()
    dimuon = CreateModelRequest(session_id="s", model_seq_id=0, base_model="b", optimizer_config=DimuonOptimizerConfig())
    assert json.loads(encode(dimuon))["optimizer_config"] == {"type": "dimuon", "version": 1}
    assert decode(encode(dimuon), CreateModelRequest) == dimuon


def test_responses_without_optimizer_config_read_adam_and_038_ones_keep_theirs() -> None:
    info = decode(b'{"model_data":{},"model_id":"m"}', GetInfoResponse)
    assert info.optimizer_config == AdamOptimizerConfig() and info.model_data == ModelData()
    info = decode(b'{"model_data":{},"model_id":"m","optimizer_config":{"type":"dimuon","version":1}}', GetInfoResponse)
    assert info.optimizer_config == DimuonOptimizerConfig()
    weights = decode(b'{"base_model":"b","is_lora":true,"optimizer_config":{"type":"dimuon"}}', WeightsInfoResponse)
    assert weights.optimizer_config == DimuonOptimizerConfig()


def test_load_weights_optimizer_config_reads_none_until_set() -> None:
    request = LoadWeightsRequest(session_id="s", model_seq_id=0, path="tinker://r/weights/c", optimizer=False)
    assert request.optimizer_config is None
    with_config = LoadWeightsRequest(
        session_id="s", model_seq_id=0, path="tinker://r/weights/c", optimizer=False,
        optimizer_config=DimuonOptimizerConfig(),
    )
    assert decode(encode(with_config), LoadWeightsRequest).optimizer_config == DimuonOptimizerConfig()


def test_step_params_given_as_a_dict_are_converted_before_they_are_placed() -> None:
    adam = OptimStepRequest(optim_params={"learning_rate": 0.1}, model_id="m")  # type: ignore[arg-type]
    assert json.loads(encode(adam))["adam_params"] == {"learning_rate": 0.1}
    dimuon = OptimStepRequest(optim_params={"type": "dimuon", "learning_rate": 0.1}, model_id="m")  # type: ignore[arg-type]
    assert dimuon.optim_params == DimuonParams(learning_rate=0.1)
    with pytest.raises(ValueError, match="learning_rate must be >= 0"):
        OptimStepRequest(optim_params={"type": "dimuon", "learning_rate": -1}, model_id="m")  # type: ignore[arg-type]
