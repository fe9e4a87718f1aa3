"""Future wire types: the future handle, retrieve_future and its non-result replies (`tinker-wire.md` §2)."""

from __future__ import annotations

import enum
from typing import Literal

from ._base import RequestStruct, ResponseStruct

__all__ = [
    "FutureMetadataOnlyResponse",
    "FutureRetrieveRequest",
    "QueueState",
    "RequestErrorCategory",
    "RequestFailedResponse",
    "TryAgainResponse",
    "UntypedAPIFuture",
]

QueueState = Literal["active", "paused_rate_limit", "paused_capacity"]


class UntypedAPIFuture(ResponseStruct, kw_only=True):
    """What every "future" endpoint returns: the id to poll ``retrieve_future`` with."""

    request_id: str
    model_id: str | None = None


class FutureRetrieveRequest(RequestStruct, kw_only=True):
    request_id: str
    allow_metadata_only: bool = False


class TryAgainResponse(ResponseStruct, kw_only=True, omit_defaults=False):
    """Result not ready yet. ``queue_state`` is kept as a plain string: unknown values mean UNKNOWN."""

    type: Literal["try_again"] = "try_again"
    request_id: str
    queue_state: str | None = None
    queue_state_reason: str | None = None


class RequestErrorCategory(enum.StrEnum):
    """Wire values are lowercase; telemetry reports the member name (e.g. ``"User"``)."""

    Unknown = "unknown"
    Server = "server"
    User = "user"


class RequestFailedResponse(ResponseStruct, kw_only=True):
    error: str
    category: RequestErrorCategory = RequestErrorCategory.Unknown


class FutureMetadataOnlyResponse(ResponseStruct, kw_only=True, omit_defaults=False):
    """The result is ready and ``response_payload_size`` bytes long; poll again without metadata-only."""

    status: Literal["complete_metadata"] = "complete_metadata"
    response_payload_size: int
