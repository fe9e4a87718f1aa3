"""REST record types: training runs, checkpoints, sessions, samplers (`docs/wire.md` §1.5, §10.6)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ._base import RequestStruct, ResponseStruct
from .paths import CheckpointType

__all__ = [
    "AccessScope",
    "Checkpoint",
    "CheckpointArchiveUrlResponse",
    "CheckpointsListResponse",
    "Cursor",
    "GetSamplerResponse",
    "GetSessionResponse",
    "ListSessionsResponse",
    "SetCheckpointTtlRequest",
    "TrainingRun",
    "TrainingRunsResponse",
]

AccessScope = Literal["owned", "accessible"]


class Cursor(ResponseStruct, kw_only=True):
    offset: int
    limit: int
    total_count: int


class Checkpoint(ResponseStruct, kw_only=True):
    checkpoint_id: str
    checkpoint_type: CheckpointType
    time: datetime
    tinker_path: str
    size_bytes: int | None = None
    public: bool = False
    user_metadata: dict[str, str] | None = None
    """[0.38] Metadata given when the checkpoint was saved."""
    expires_at: datetime | None = None
    """``None`` = never expires."""


class CheckpointsListResponse(ResponseStruct, kw_only=True):
    checkpoints: list[Checkpoint]
    cursor: Cursor | None = None


class TrainingRun(ResponseStruct, kw_only=True):
    training_run_id: str
    base_model: str
    model_owner: str
    is_lora: bool
    corrupted: bool = False
    lora_rank: int | None = None
    last_request_time: datetime
    last_checkpoint: Checkpoint | None = None
    last_sampler_checkpoint: Checkpoint | None = None
    user_metadata: dict[str, str] | None = None


class TrainingRunsResponse(ResponseStruct, kw_only=True):
    training_runs: list[TrainingRun]
    cursor: Cursor


class GetSessionResponse(ResponseStruct, kw_only=True):
    training_run_ids: list[str]
    sampler_ids: list[str]
    display_name: str | None = None
    """[0.38]"""
    user_metadata: dict[str, str] | None = None
    """[0.38]"""


class ListSessionsResponse(ResponseStruct, kw_only=True):
    sessions: list[str]


class GetSamplerResponse(ResponseStruct, kw_only=True):
    sampler_id: str
    base_model: str
    model_path: str | None = None


class CheckpointArchiveUrlResponse(ResponseStruct, kw_only=True):
    """Built client-side from the archive endpoint's 302 ``Location`` and ``Expires`` headers."""

    url: str
    expires: datetime


class SetCheckpointTtlRequest(RequestStruct, kw_only=True):
    """Body of ``PUT …/checkpoints/{id}/ttl``; ``null`` removes the expiry."""

    ttl_seconds: int | None
