"""Telemetry batch and event types (`docs/wire.md` §7).

Every event carries ``event`` (its type), a uuid4 ``event_id``, a per-session ``event_session_index`` from 0,
a ``severity`` and a UTC ``timestamp`` (encoded ISO-8601 with ``Z`` when the datetime is timezone-aware).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from ._base import InferredUnion, RequestStruct, ResponseStruct, unset_reads_as

__all__ = [
    "EventType",
    "GenericEvent",
    "SessionEndEvent",
    "SessionStartEvent",
    "Severity",
    "TelemetryBatch",
    "TelemetryEvent",
    "TelemetryResponse",
    "TelemetrySendRequest",
    "UnhandledExceptionEvent",
]

EventType = Literal["SESSION_START", "SESSION_END", "UNHANDLED_EXCEPTION", "GENERIC_EVENT"]
Severity = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class TelemetryEvent(InferredUnion):
    """The event union: ``SessionStartEvent | SessionEndEvent | UnhandledExceptionEvent | GenericEvent``,
    told apart by the ``event`` key."""

    __slots__ = ()

    @classmethod
    def variant_for(cls, obj: dict[str, Any]) -> type[msgspec.Struct]:
        event = obj.get("event")
        variant = _EVENT_BY_TYPE.get(event) if isinstance(event, str) else None
        if variant is None:
            raise ValueError(f"unknown telemetry event type {event!r}: expected one of {sorted(_EVENT_BY_TYPE)}")
        return variant


class SessionStartEvent(RequestStruct, TelemetryEvent, kw_only=True):
    event: Literal["SESSION_START"] = "SESSION_START"
    event_id: str
    event_session_index: int
    severity: Severity = "INFO"
    timestamp: datetime


class SessionEndEvent(RequestStruct, TelemetryEvent, kw_only=True):
    duration: str
    """``str(timedelta)``, e.g. ``"0:00:00.950423"`` (not ISO-8601)."""
    event: Literal["SESSION_END"] = "SESSION_END"
    event_id: str
    event_session_index: int
    severity: Severity = "INFO"
    timestamp: datetime


class UnhandledExceptionEvent(RequestStruct, TelemetryEvent, kw_only=True):
    error_message: str
    error_type: str
    event: Literal["UNHANDLED_EXCEPTION"] = "UNHANDLED_EXCEPTION"
    event_id: str
    event_session_index: int
    severity: Severity = "ERROR"
    timestamp: datetime
    traceback: str | None = None


class GenericEvent(RequestStruct, TelemetryEvent, kw_only=True):
    event: Literal["GENERIC_EVENT"] = "GENERIC_EVENT"
    event_id: str
    event_name: str
    event_session_index: int
    severity: Severity = "INFO"
    timestamp: datetime
    event_data: dict[str, Any] = {}


_EVENT_BY_TYPE: dict[str, type[msgspec.Struct]] = {
    "SESSION_START": SessionStartEvent,
    "SESSION_END": SessionEndEvent,
    "UNHANDLED_EXCEPTION": UnhandledExceptionEvent,
    "GENERIC_EVENT": GenericEvent,
}


@unset_reads_as(process_uuid=None)
class TelemetrySendRequest(RequestStruct, kw_only=True):
    events: list[TelemetryEvent]
    platform: str
    """``platform.system()``, e.g. ``"Linux"``."""
    sdk_version: str
    session_id: str
    process_uuid: str | None | UnsetType = UNSET
    """Sent by 0.24+ SDKs only; accepted so a strict server does not reject them."""


class TelemetryBatch(ResponseStruct, kw_only=True):
    """A telemetry batch as the official SDK models it (the body of ``telemetry`` is
    :class:`TelemetrySendRequest`)."""

    events: list[TelemetryEvent]
    platform: str
    sdk_version: str
    session_id: str
    process_uuid: str | None = None
    """[0.24+] Identifies the client process, shared by all its sessions. 0.38 requires it and 0.16 has no such
    field, so it is optional here: both releases' batches read."""


class TelemetryResponse(ResponseStruct, kw_only=True, omit_defaults=False):
    status: Literal["accepted"] = "accepted"
