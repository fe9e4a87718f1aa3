"""Model lifecycle wire types: create_model, get_info, unload_model (`docs/wire.md` §1.3)."""

from __future__ import annotations

from typing import Any, Literal

from msgspec import UNSET, UnsetType

from ._base import RequestStruct, ResponseStruct, unset_reads_as
from .optimizer import AdamOptimizerConfig, OptimizerConfig

__all__ = [
    "CreateModelRequest",
    "CreateModelResponse",
    "GetInfoRequest",
    "GetInfoResponse",
    "LoraConfig",
    "ModelData",
    "UnloadModelRequest",
    "UnloadModelResponse",
]


class LoraConfig(RequestStruct, kw_only=True):
    """LoRA settings. Every field is always sent, as the official SDK sets them all explicitly."""

    rank: int
    seed: int | None = None
    train_unembed: bool = True
    train_mlp: bool = True
    train_attn: bool = True


@unset_reads_as(lora_config=None, optimizer_config=AdamOptimizerConfig(), type="create_model")
class CreateModelRequest(RequestStruct, kw_only=True):
    session_id: str
    model_seq_id: int
    base_model: str
    user_metadata: dict[str, Any] | None = None
    lora_config: LoraConfig | None | UnsetType = UNSET
    optimizer_config: OptimizerConfig | UnsetType = UNSET
    """[0.38] The optimizer family; sent only when set (the server's default is Adam)."""
    type: Literal["create_model"] | UnsetType = UNSET


class CreateModelResponse(ResponseStruct, kw_only=True):
    model_id: str
    type: Literal["create_model"] = "create_model"


@unset_reads_as(type="get_info")
class GetInfoRequest(RequestStruct, kw_only=True):
    model_id: str
    type: Literal["get_info"] | UnsetType = UNSET


class ModelData(ResponseStruct, kw_only=True):
    arch: str | None = None
    model_name: str | None = None
    tokenizer_id: str | None = None


class GetInfoResponse(ResponseStruct, kw_only=True):
    model_data: ModelData
    model_id: str
    is_lora: bool | None = None
    lora_rank: int | None = None
    model_name: str | None = None
    optimizer_config: OptimizerConfig = AdamOptimizerConfig()
    """[0.38] The model's optimizer family (Adam when the server does not say)."""
    type: Literal["get_info"] | None = None


@unset_reads_as(type="unload_model")
class UnloadModelRequest(RequestStruct, kw_only=True):
    model_id: str
    type: Literal["unload_model"] | UnsetType = UNSET


class UnloadModelResponse(ResponseStruct, kw_only=True):
    model_id: str
    type: Literal["unload_model"] | None = None
