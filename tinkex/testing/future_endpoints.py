"""The future endpoints: ``retrieve_future`` (a long poll that answers the result, a failure, ``try_again`` while it
runs, 410 once its result expired, or 0.38's metadata-only answer for a large result) and 0.38's ``cancel_future``.

Fault rules may override a poll (``try_again`` with a queue state, ``expire``, ``metadata_only``); they match the
endpoint that created the polled future (:meth:`FutureEndpoints.polled_endpoint`).
"""

from __future__ import annotations

import msgspec

from tinkex import types as t

from . import dialect
from .calls import Call, Result, reject
from .endpoint_state import EndpointState
from .faults import FaultKind
from .futures_store import Failure, FutureRecord
from .replies import Reply, error_reply, json_reply

__all__ = ["CANCELLED_MESSAGE", "CancelFutureRequest", "FutureEndpoints"]

_POLL_OVERRIDES: frozenset[FaultKind] = frozenset({"try_again", "expire"})
_METADATA_ONLY: frozenset[FaultKind] = frozenset({"metadata_only"})

CANCELLED_MESSAGE = "request {request_id} was cancelled by the client (cancel_future)"
"""What a cancelled future resolves to; tinkex's manifest lists "cancelled by the client" as a cancellation."""


class CancelFutureRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /api/v1/cancel_future`` (the official SDK posts a literal dict)."""

    request_id: str


def _expired_reply(record: FutureRecord) -> Reply:
    return error_reply(
        410,
        f"future {record.request_id} expired: its operation ran but the result is no longer kept "
        "(submitting it again runs it a second time)",
    )


def _try_again(record: FutureRecord, queue_state: str, reason: str | None) -> Reply:
    return json_reply(
        t.TryAgainResponse(request_id=record.request_id, queue_state=queue_state, queue_state_reason=reason)
    )


class FutureEndpoints:
    def __init__(self, state: EndpointState) -> None:
        self.state = state
        self.futures = state.futures

    def polled_endpoint(self, request: t.FutureRetrieveRequest) -> str | None:
        """The endpoint that created the polled future (``None`` for an unknown one)."""
        record = self.futures.get(request.request_id)
        return record.endpoint if record is not None else None

    async def retrieve_future(self, call: Call) -> Result:
        request: t.FutureRetrieveRequest = call.body
        state = self.state
        record = self.futures.get(request.request_id)
        if record is None:
            return Result(error_reply(404, f"unknown request_id {request.request_id!r}"))
        if not record.expired and self.futures.past_ttl(record):
            state.expire(record)
        if record.expired:
            return Result(_expired_reply(record))
        override = state.faults.take("retrieve_future", _POLL_OVERRIDES, future_endpoint=record.endpoint)
        if override is not None and override.kind == "expire":
            state.expire(record)
            return Result(_expired_reply(record))
        if override is not None:
            return Result(_try_again(record, override.queue_state, override.queue_state_reason))
        if not await self.futures.wait_ready(record, state.config.long_poll_timeout):
            return Result(_try_again(record, "active", None))
        if record.expired:
            return Result(_expired_reply(record))
        if record.failure is not None:
            category = t.RequestErrorCategory(record.failure.category)
            return Result(json_reply(t.RequestFailedResponse(error=record.failure.message, category=category)))
        assert record.result is not None
        if request.allow_metadata_only:
            threshold = state.config.metadata_only_threshold
            too_large = threshold is not None and len(record.result) > threshold
            if too_large or state.faults.take("retrieve_future", _METADATA_ONLY, future_endpoint=record.endpoint):
                reply = t.FutureMetadataOnlyResponse(response_payload_size=len(record.result))
                return Result(json_reply(reply))
        return Result(dialect.result_reply(record.endpoint, record.result, call.headers.get("accept")))

    def cancel_future(self, call: Call) -> Result:
        """The future's work is abandoned: a later retrieve answers a failure that says it was cancelled."""
        request: CancelFutureRequest = call.body
        record = self.futures.get(request.request_id)
        if record is None:
            raise reject(404, f"unknown request_id {request.request_id!r}")
        if not record.expired:
            self.futures.cancel(record, Failure(CANCELLED_MESSAGE.format(request_id=record.request_id), "user"))
        return Result(json_reply({}), request_id=record.request_id, model_id=record.model_id)
