"""Session status, the client's finish report, and session search [0.38].

``ServiceClient.close(status, detail)`` posts a :class:`FinishSessionRequest` to ``/sessions/{id}/finish``;
``sessions/search`` takes a :class:`SessionSearchRequest` and returns summaries whose ``status`` is one of the
:class:`SessionStatus` variants. Every union here is told apart by its ``type`` key, which is always encoded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from ._base import RequestStruct, ResponseStruct
from ._tagged import TypeTaggedUnion

__all__ = [
    "AccessibleSearchOwner",
    "ActiveSessionStatusQuery",
    "CancelledSessionStatusQuery",
    "ClientFinishedSessionStatusQuery",
    "ClientSessionFinishErrored",
    "ClientSessionFinishInterrupted",
    "ClientSessionFinishReason",
    "ClientSessionFinishReasonType",
    "ClientSessionFinishSuccess",
    "ClientSessionFinished",
    "FailedSessionStatusQuery",
    "FinishSessionRequest",
    "OwnSearchOwner",
    "SearchOwner",
    "SessionActive",
    "SessionCancelled",
    "SessionFailed",
    "SessionFailedReason",
    "SessionFailedRequestReason",
    "SessionFailedSamplingSessionReason",
    "SessionFailedTrainingRunReason",
    "SessionSearchCursor",
    "SessionSearchRequest",
    "SessionSearchResponse",
    "SessionStatus",
    "SessionStatusQuery",
    "SessionSummary",
    "UserSearchOwner",
]

ClientSessionFinishReasonType = Literal["success", "errored", "interrupted"]


class _TaggedResponse(ResponseStruct, kw_only=True, omit_defaults=False):
    """A response-side union variant: ``type`` (a default) must still be encoded so readers can tell it."""


# --- why a session failed ----------------------------------------------------------------------------------
class SessionFailedReason(TypeTaggedUnion):
    """``SessionFailedRequestReason | SessionFailedTrainingRunReason | SessionFailedSamplingSessionReason``."""

    __slots__ = ()


class SessionFailedRequestReason(_TaggedResponse, SessionFailedReason, kw_only=True):
    type: Literal["request"] = "request"
    request_id: str
    request_type: str


class SessionFailedTrainingRunReason(_TaggedResponse, SessionFailedReason, kw_only=True):
    type: Literal["training_run"] = "training_run"
    training_run_id: str


class SessionFailedSamplingSessionReason(_TaggedResponse, SessionFailedReason, kw_only=True):
    type: Literal["sampling_session"] = "sampling_session"
    sampling_session_id: str


SessionFailedReason.register(
    SessionFailedRequestReason, SessionFailedTrainingRunReason, SessionFailedSamplingSessionReason
)


# --- the client's finish report ----------------------------------------------------------------------------
class ClientSessionFinishReason(TypeTaggedUnion):
    """``ClientSessionFinishSuccess | ClientSessionFinishErrored | ClientSessionFinishInterrupted``."""

    __slots__ = ()


class ClientSessionFinishSuccess(_TaggedResponse, ClientSessionFinishReason, kw_only=True):
    type: Literal["success"] = "success"


class ClientSessionFinishErrored(_TaggedResponse, ClientSessionFinishReason, kw_only=True):
    type: Literal["errored"] = "errored"


class ClientSessionFinishInterrupted(_TaggedResponse, ClientSessionFinishReason, kw_only=True):
    type: Literal["interrupted"] = "interrupted"


ClientSessionFinishReason.register(
    ClientSessionFinishSuccess, ClientSessionFinishErrored, ClientSessionFinishInterrupted
)

_FINISH_REASON_BY_TYPE: dict[str, type[ClientSessionFinishReason]] = {
    "success": ClientSessionFinishSuccess,
    "errored": ClientSessionFinishErrored,
    "interrupted": ClientSessionFinishInterrupted,
}


class FinishSessionRequest(RequestStruct, kw_only=True):
    """Body of ``POST /api/v1/sessions/{session_id}/finish`` (tinkex name; the official SDK posts a dict)."""

    reason: ClientSessionFinishReason
    detail: str | None = None

    @classmethod
    def for_status(cls, status: ClientSessionFinishReasonType, detail: str | None = None) -> FinishSessionRequest:
        """The body ``ServiceClient.close(status, detail)`` sends."""
        variant = _FINISH_REASON_BY_TYPE.get(status)
        if variant is None:
            raise ValueError(f"session finish status must be one of {sorted(_FINISH_REASON_BY_TYPE)}, got {status!r}")
        return cls(reason=variant(), detail=detail)


# --- session status ----------------------------------------------------------------------------------------
class SessionStatus(TypeTaggedUnion):
    """``SessionFailed | SessionCancelled | ClientSessionFinished | SessionActive``."""

    __slots__ = ()


class SessionFailed(_TaggedResponse, SessionStatus, kw_only=True):
    """The session was failed by one of its requests, training runs or sampling sessions."""

    type: Literal["failed"] = "failed"
    category: Literal["user", "internal"]
    reason: SessionFailedReason
    message: str


class SessionCancelled(_TaggedResponse, SessionStatus, kw_only=True):
    type: Literal["cancelled"] = "cancelled"
    detail: str | None = None


class ClientSessionFinished(_TaggedResponse, SessionStatus, kw_only=True):
    """The session's client reported it was done."""

    type: Literal["client_finished"] = "client_finished"
    reason: ClientSessionFinishReason
    detail: str | None = None


class SessionActive(_TaggedResponse, SessionStatus, kw_only=True):
    type: Literal["active"] = "active"


SessionStatus.register(SessionFailed, SessionCancelled, ClientSessionFinished, SessionActive)


# --- search queries ----------------------------------------------------------------------------------------
class SessionStatusQuery(TypeTaggedUnion):
    """``ActiveSessionStatusQuery | CancelledSessionStatusQuery | FailedSessionStatusQuery |
    ClientFinishedSessionStatusQuery``."""

    __slots__ = ()


class ActiveSessionStatusQuery(RequestStruct, SessionStatusQuery, kw_only=True):
    """Sessions still running."""

    type: Literal["active"] = "active"


class CancelledSessionStatusQuery(RequestStruct, SessionStatusQuery, kw_only=True):
    """Sessions cancelled from the console."""

    type: Literal["cancelled"] = "cancelled"


class FailedSessionStatusQuery(RequestStruct, SessionStatusQuery, kw_only=True):
    """Sessions failed by a request, training run or sampling session."""

    type: Literal["failed"] = "failed"


class ClientFinishedSessionStatusQuery(RequestStruct, SessionStatusQuery, kw_only=True):
    """Sessions whose client reported it was done; ``reasons`` (non-empty) narrows to those reasons."""

    type: Literal["client_finished"] = "client_finished"
    reasons: list[ClientSessionFinishReasonType] | None = None

    def _after_conversion(self) -> None:
        if self.reasons is not None and not self.reasons:
            raise ValueError("ClientFinishedSessionStatusQuery.reasons must be None or non-empty")


SessionStatusQuery.register(
    ActiveSessionStatusQuery, CancelledSessionStatusQuery, FailedSessionStatusQuery, ClientFinishedSessionStatusQuery
)


class SearchOwner(TypeTaggedUnion):
    """``OwnSearchOwner | AccessibleSearchOwner | UserSearchOwner``: whose sessions a search covers."""

    __slots__ = ()


class OwnSearchOwner(RequestStruct, SearchOwner, kw_only=True):
    """The caller's own sessions."""

    type: Literal["own"] = "own"


class AccessibleSearchOwner(RequestStruct, SearchOwner, kw_only=True):
    """Every owner's sessions."""

    type: Literal["accessible"] = "accessible"


class UserSearchOwner(RequestStruct, SearchOwner, kw_only=True):
    """The listed users' sessions (1 to 10 owner URNs)."""

    type: Literal["user"] = "user"
    owner_urns: list[str]

    def _after_conversion(self) -> None:
        if not 1 <= len(self.owner_urns) <= 10:
            raise ValueError(f"UserSearchOwner.owner_urns must list 1 to 10 URNs, got {len(self.owner_urns)}")


SearchOwner.register(OwnSearchOwner, AccessibleSearchOwner, UserSearchOwner)


class SessionSearchCursor(ResponseStruct, kw_only=True):
    """Where the next page starts; pass a response's ``next_cursor`` back unchanged."""

    last_created_at: datetime
    """Timezone-aware."""
    last_session_id: str

    def _after_conversion(self) -> None:
        if self.last_created_at.tzinfo is None:
            raise ValueError("SessionSearchCursor.last_created_at must be timezone-aware")


class SessionSearchRequest(RequestStruct, kw_only=True):
    """A session search; results are restricted to projects the caller may list."""

    session_id: str | None = None
    project_ids: list[str] | None = None
    user_metadata: dict[str, str] = msgspec.field(default_factory=dict)
    display_name: str | None = None
    owner: SearchOwner = msgspec.field(default_factory=OwnSearchOwner)
    statuses: list[SessionStatusQuery] | None = None
    limit: int = 50
    cursor: SessionSearchCursor | None = None

    def _after_conversion(self) -> None:
        if self.display_name is not None and not self.display_name:
            raise ValueError("SessionSearchRequest.display_name must be None or non-empty")
        if self.statuses is not None and not self.statuses:
            raise ValueError("SessionSearchRequest.statuses must be None or non-empty")
        if not 1 <= self.limit <= 200:
            raise ValueError(f"SessionSearchRequest.limit must be 1 to 200, got {self.limit}")


class SessionSummary(ResponseStruct, kw_only=True):
    session_id: str
    created_at: datetime
    owner: str
    project_id: str
    status: SessionStatus | None = None
    """None when the session neither finished nor is known to be running."""
    checkpoints_count: int
    display_name: str | None = None
    user_metadata: dict[str, str] | None = None
    checkpoint_storage_bytes: int | None = None


class SessionSearchResponse(ResponseStruct, kw_only=True):
    """One page of results, newest first."""

    sessions: list[SessionSummary]
    next_cursor: SessionSearchCursor | None = None
