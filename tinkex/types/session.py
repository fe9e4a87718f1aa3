"""Service and session wire types (`docs/wire.md` §1.2)."""

from __future__ import annotations

from typing import Any, Literal

from msgspec import UNSET, UnsetType

from ._base import RequestStruct, ResponseStruct, unset_reads_as

__all__ = [
    "AuthTokenResponse",
    "ClientConfigRequest",
    "ClientConfigResponse",
    "ClientDynamicConfigResponse",
    "CreateSamplingSessionRequest",
    "CreateSamplingSessionResponse",
    "CreateSessionRequest",
    "CreateSessionResponse",
    "GetServerCapabilitiesResponse",
    "HealthResponse",
    "JoinSamplingSessionRequest",
    "JoinSamplingSessionResponse",
    "SessionHeartbeatRequest",
    "SessionHeartbeatResponse",
    "SupportedModel",
    "WhoamiResponse",
]


@unset_reads_as(display_name=None, type="create_session")
class CreateSessionRequest(RequestStruct, kw_only=True):
    tags: list[str]
    user_metadata: dict[str, Any] | None
    """The SDK sends ``{}`` when the user gave none."""
    sdk_version: str
    project_id: str | None = None
    display_name: str | None | UnsetType = UNSET
    """[0.34+] Name shown in the console; sent only when set."""
    type: Literal["create_session"] | UnsetType = UNSET


class CreateSessionResponse(ResponseStruct, kw_only=True):
    session_id: str
    type: Literal["create_session"] = "create_session"
    info_message: str | None = None
    warning_message: str | None = None
    error_message: str | None = None


@unset_reads_as(type="session_heartbeat")
class SessionHeartbeatRequest(RequestStruct, kw_only=True):
    session_id: str
    type: Literal["session_heartbeat"] | UnsetType = UNSET


class SessionHeartbeatResponse(ResponseStruct, kw_only=True):
    type: Literal["session_heartbeat"] = "session_heartbeat"


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
    type: Literal["create_sampling_session"] = "create_sampling_session"


class JoinSamplingSessionRequest(RequestStruct, kw_only=True):
    """[0.38] Join an existing sampling session as another client (e.g. an unpickled SamplingClient)."""

    sampling_session_id: str
    type: Literal["join_sampling_session"] = "join_sampling_session"


class JoinSamplingSessionResponse(ResponseStruct, kw_only=True):
    type: Literal["join_sampling_session"] = "join_sampling_session"
    client_counter: int
    """Server-allocated id, unique among the sampling session's clients (the original client is 0)."""


class SupportedModel(ResponseStruct, kw_only=True):
    model_name: str | None = None
    max_context_length: int | None = None
    trainable: bool | None = None
    sampleable: bool | None = None


class GetServerCapabilitiesResponse(ResponseStruct, kw_only=True):
    supported_models: list[SupportedModel]


class HealthResponse(ResponseStruct, kw_only=True, omit_defaults=False):
    status: Literal["ok"] = "ok"


class WhoamiResponse(ResponseStruct, kw_only=True):
    """[0.38] ``GET /api/v1/auth/apikey/me``: who the credential acts as."""

    user_urn: str
    org_urn: str
    email: str | None = None


class ClientConfigRequest(RequestStruct, kw_only=True):
    """[0.38] Body of ``client/config`` and ``client/dynamic_config``."""

    sdk_version: str


class ClientConfigResponse(ResponseStruct, kw_only=True):
    """[0.38] Server feature flags fetched before anything else (``docs/wire.md`` §12.1)."""

    pjwt_auth_enabled: bool = False
    credential_default_source: str = "api_key"
    use_pyqwest_transport: bool = True
    inflight_response_bytes_semaphore_size: int = 52_428_800
    sample_dispatch_bytes_semaphore_size: int = 10_485_760
    fwdbwd_dispatch_bytes_semaphore_size: int = 50_000_000
    fwdbwd_max_chunk_len: int = 1024
    fwdbwd_max_chunk_bytes_count: int = 5_000_000
    parallel_fwdbwd_chunks: bool = True
    proto_compress_fwdbwd: bool = False
    sample_max_concurrent_requests: int = 2000
    sample_enable_stuck_detection: bool = True
    sample_no_retries: bool = False
    sample_use_retrieve_futures: bool = False
    sample_join_sampling_session: bool = False
    billing_exception_max_pause_duration_sec: int = 3600
    custom_loss_server_side: bool = False


class ClientDynamicConfigResponse(ResponseStruct, kw_only=True):
    """[0.38] Flags refreshed every ``refresh_interval_sec`` (at least 10 s)."""

    refresh_interval_sec: int = 300
    sample_cancel_enabled: bool = False
    sample_cancel_max_batch_size: int = 64


class AuthTokenResponse(ResponseStruct, kw_only=True):
    """[0.38] ``auth/token``: a short-lived JWT exchanged for the API key. Never logged."""

    jwt: str

    def __repr__(self) -> str:
        return "AuthTokenResponse(jwt='***')"
