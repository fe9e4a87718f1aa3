"""Future wire types: the future handle, retrieve_future and its non-result replies (`docs/wire.md` §2)."""

from __future__ import annotations

import enum
from typing import Literal

from ._base import RequestStruct, ResponseStruct
from ._tagged import TypeTaggedUnion

__all__ = [
    "FutureCompletion",
    "FutureFailed",
    "FutureFinished",
    "FutureMetadataOnlyResponse",
    "FutureRetrieveRequest",
    "FuturesRetrieveRequest",
    "FuturesRetrieveResponse",
    "ModelID",
    "QueueState",
    "RequestErrorCategory",
    "RequestFailedResponse",
    "RequestID",
    "SamplingSessionFuturesTarget",
    "TryAgainResponse",
    "UntypedAPIFuture",
]

QueueState = Literal["active", "paused_rate_limit", "paused_capacity"]

ModelID = str
"""A training model's id (official alias)."""
RequestID = str
"""A future's request id (official alias)."""


class UntypedAPIFuture(ResponseStruct, kw_only=True):
    """What every "future" endpoint returns: the id to poll ``retrieve_future`` with."""

    request_id: str
    model_id: str | None = None
    sample_sequence_ids: list[str] | None = None
    """[0.38] asample futures only: one id per requested sample, in the response's sequence order; each
    becomes the matching ``SampledSequence.sequence_id``."""


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
    """A future that resolved to a failure. The client reads failures from the raw body (a missing or unknown
    ``category`` means Unknown there); this type, like the official one, requires it."""

    error: str
    category: RequestErrorCategory


class FutureMetadataOnlyResponse(ResponseStruct, kw_only=True, omit_defaults=False):
    """The result is ready and ``response_payload_size`` bytes long; poll again without metadata-only."""

    status: Literal["complete_metadata"] = "complete_metadata"
    response_payload_size: int


class SamplingSessionFuturesTarget(RequestStruct, kw_only=True):
    """[0.38] Poll target of ``retrieve_futures``: one sampling session, or a clone of it
    (``cloned_sampler_id = seq_id // 1_000_000_000``; 0 for the original client)."""

    type: Literal["sampling_session"] = "sampling_session"
    sampling_session_id: str
    cloned_sampler_id: int = 0


class FuturesRetrieveRequest(RequestStruct, kw_only=True):
    """[0.38] Body of ``POST /api/v1/retrieve_futures``: batched completion polling for a sampling session."""

    target: SamplingSessionFuturesTarget
    prev_cursor: int = 0
    """The previous response's ``cursor``; completions at or before it are trimmed server-side."""
    timeout: float | None = None
    retrieved_request_ids: list[str] = []
    """Requests whose results were fully retrieved, so the server may drop their payloads."""


class FutureCompletion(TypeTaggedUnion):
    """``FutureFinished | FutureFailed``, told apart by ``state``."""

    __slots__ = ()
    tag_key = "state"


class FutureFinished(ResponseStruct, FutureCompletion, kw_only=True, omit_defaults=False):
    """A finished request; its payload size lets the client reserve response bytes before fetching it."""

    state: Literal["finished"] = "finished"
    request_id: str
    response_payload_uncompressed_size: int | None = None


class FutureFailed(ResponseStruct, FutureCompletion, kw_only=True, omit_defaults=False):
    """A failed request (fetch it with ``retrieve_future`` for the error)."""

    state: Literal["failed"] = "failed"
    request_id: str


FutureCompletion.register(FutureFinished, FutureFailed)


class FuturesRetrieveResponse(ResponseStruct, kw_only=True, omit_defaults=False):
    completions: list[FutureCompletion]
    cursor: int
    """Opaque; pass back as ``prev_cursor``."""
