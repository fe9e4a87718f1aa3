"""Checkpoint wire types: save_weights, load_weights, save_weights_for_sampler, weights_info (§1.3, §10.5).

``ttl_seconds`` is always sent (``null`` = never expire). ``save_weights_for_sampler`` has two shapes: named
(``path`` set) and ephemeral (``sampling_session_seq_id`` set); the unused key is absent.
"""

from __future__ import annotations

from typing import Literal

from msgspec import UNSET, UnsetType

from ._base import RequestStruct, ResponseStruct, unset_reads_as

__all__ = [
    "LoadWeightsRequest",
    "LoadWeightsResponse",
    "SaveWeightsForSamplerRequest",
    "SaveWeightsForSamplerResponse",
    "SaveWeightsForSamplerResponseInternal",
    "SaveWeightsRequest",
    "SaveWeightsResponse",
    "WeightsInfoRequest",
    "WeightsInfoResponse",
]


@unset_reads_as(path=None, type="save_weights")
class SaveWeightsRequest(RequestStruct, kw_only=True):
    model_id: str
    path: str | None | UnsetType = UNSET
    """Checkpoint name; the result path is ``tinker://<run>/weights/<name>``."""
    seq_id: int
    ttl_seconds: int | None = None
    type: Literal["save_weights"] | UnsetType = UNSET


class SaveWeightsResponse(ResponseStruct, kw_only=True):
    path: str
    type: Literal["save_weights"] | None = None


@unset_reads_as(type="load_weights")
class LoadWeightsRequest(RequestStruct, kw_only=True):
    model_id: str
    path: str
    """A ``tinker://`` path."""
    optimizer: bool = False
    seq_id: int
    type: Literal["load_weights"] | UnsetType = UNSET


class LoadWeightsResponse(ResponseStruct, kw_only=True):
    path: str | None = None
    type: Literal["load_weights"] | None = None


@unset_reads_as(path=None, sampling_session_seq_id=None, type="save_weights_for_sampler")
class SaveWeightsForSamplerRequest(RequestStruct, kw_only=True):
    model_id: str
    path: str | None | UnsetType = UNSET
    sampling_session_seq_id: int | None | UnsetType = UNSET
    seq_id: int
    ttl_seconds: int | None = None
    type: Literal["save_weights_for_sampler"] | UnsetType = UNSET


class SaveWeightsForSamplerResponseInternal(ResponseStruct, kw_only=True):
    """The future's result: ``path`` for a named save, ``sampling_session_id`` (and ``path`` null) for an
    ephemeral one."""

    path: str | None = None
    sampling_session_id: str | None = None
    type: Literal["save_weights_for_sampler"] | None = None


class SaveWeightsForSamplerResponse(ResponseStruct, kw_only=True):
    """What ``TrainingClient.save_weights_for_sampler`` returns to the user."""

    path: str


class WeightsInfoRequest(RequestStruct, kw_only=True):
    tinker_path: str


class WeightsInfoResponse(ResponseStruct, kw_only=True):
    base_model: str
    is_lora: bool
    lora_rank: int | None = None
    train_unembed: bool | None = None
    train_mlp: bool | None = None
    train_attn: bool | None = None
