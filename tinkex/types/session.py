"""Service and session wire types (`tinker-wire.md` §1.2)."""

from __future__ import annotations

from typing import Any, Literal

from msgspec import UNSET, UnsetType

from ._base import RequestStruct, ResponseStruct, unset_reads_as

__all__ = [
    "CreateSamplingSessionRequest",
    "CreateSamplingSessionResponse",
    "CreateSessionRequest",
    "CreateSessionResponse",
    "GetServerCapabilitiesResponse",
    "HealthResponse",
    "SessionHeartbeatRequest",
    "SessionHeartbeatResponse",
    "SupportedModel",
]


@unset_reads_as(type="create_session")
class CreateSessionRequest(RequestStruct, kw_only=True):
    tags: list[str]
    user_metadata: dict[str, Any] | None
    """The SDK sends ``{}`` when the user gave none."""
    sdk_version: str
    project_id: str | None = None
    type: Literal["create_session"] | UnsetType = UNSET


class CreateSessionResponse(ResponseStruct, kw_only=True):
    session_id: str
    type: Literal["create_session"] | None = None
    info_message: str | None = None
    warning_message: str | None = None
    error_message: str | None = None


@unset_reads_as(type="session_heartbeat")
class SessionHeartbeatRequest(RequestStruct, kw_only=True):
    session_id: str
    type: Literal["session_heartbeat"] | UnsetType = UNSET


class SessionHeartbeatResponse(ResponseStruct, kw_only=True):
    type: Literal["session_heartbeat"] | None = None


@unset_reads_as(type="create_sampling_session")
class CreateSamplingSessionRequest(RequestStruct, kw_only=True):
    """Exactly one of ``base_model`` / ``model_path`` is set; both keys are always sent."""

    session_id: str
    sampling_session_seq_id: int
    base_model: str | None = None
    model_path: str | None = None
    type: Literal["create_sampling_session"] | UnsetType = UNSET


class CreateSamplingSessionResponse(ResponseStruct, kw_only=True):
    sampling_session_id: str
    type: Literal["create_sampling_session"] | None = None


class SupportedModel(ResponseStruct, kw_only=True):
    model_name: str | None = None
    max_context_length: int | None = None
    trainable: bool | None = None
    sampleable: bool | None = None


class GetServerCapabilitiesResponse(ResponseStruct, kw_only=True):
    supported_models: list[SupportedModel]


class HealthResponse(ResponseStruct, kw_only=True, omit_defaults=False):
    status: Literal["ok"] = "ok"
