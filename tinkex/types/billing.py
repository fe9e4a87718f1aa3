"""Account records [0.38]: the audit log, hourly billing usage and current checkpoint storage usage.

All are read through REST (``audit``, ``billing/usage/events``, ``billing/usage/checkpoints/current``); the two
request types are query parameters, not JSON bodies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from ._base import RequestStruct, ResponseStruct
from ._tagged import TypeTaggedUnion

__all__ = [
    "AuditLogEntry",
    "AuditLogResponse",
    "BillingEventInfo",
    "BillingUsageEvent",
    "BillingUsageResponse",
    "BillingUsageSession",
    "CheckpointBillingEvent",
    "CurrentCheckpointStorageUsageItem",
    "CurrentCheckpointStorageUsageResponse",
    "GetBillingUsageRequest",
    "GetCurrentCheckpointStorageUsageRequest",
    "SamplingPrefillBillingEvent",
    "SamplingSampleBillingEvent",
    "StorageBillingEvent",
    "TrainingBillingEvent",
]


# --- audit log ---------------------------------------------------------------------------------------------
class AuditLogEntry(ResponseStruct, kw_only=True):
    timestamp: datetime
    event: str
    """``<resource>_<action>``, e.g. ``checkpoint_read``."""
    event_details: dict[str, object] = msgspec.field(default_factory=dict)
    model_id: str | None = None
    """Deprecated upstream in favour of ``event_details``; set on checkpoint events only."""
    tinker_path: str | None = None
    purpose: str | None = None


class AuditLogResponse(ResponseStruct, kw_only=True):
    entries: list[AuditLogEntry]
    """Sorted by timestamp."""


# --- billing usage -----------------------------------------------------------------------------------------
class GetBillingUsageRequest(RequestStruct, kw_only=True):
    """Query of ``GET /api/v1/billing/usage/events``: a window of UTC hours, at most 14 days long."""

    starting_on: datetime
    """Inclusive, on an hour boundary, not in the future."""
    ending_before: datetime
    """Exclusive, on an hour boundary."""


class BillingEventInfo(TypeTaggedUnion):
    """``TrainingBillingEvent | SamplingPrefillBillingEvent | SamplingSampleBillingEvent |
    CheckpointBillingEvent | StorageBillingEvent``, by ``type``."""

    __slots__ = ()


class _BillingEvent(ResponseStruct, BillingEventInfo, kw_only=True, omit_defaults=False):
    """A billing event variant; ``type`` is always encoded so readers can tell it."""


class TrainingBillingEvent(_BillingEvent, kw_only=True):
    type: Literal["training"] = "training"
    token_count: int


class SamplingPrefillBillingEvent(_BillingEvent, kw_only=True):
    type: Literal["sampling_prefill"] = "sampling_prefill"
    cached: bool
    """Served from the prefill cache (billed at the cached rate)."""
    token_count: int


class SamplingSampleBillingEvent(_BillingEvent, kw_only=True):
    type: Literal["sampling_sample"] = "sampling_sample"
    token_count: int


class CheckpointBillingEvent(_BillingEvent, kw_only=True):
    type: Literal["checkpoint"] = "checkpoint"
    count: int


class StorageBillingEvent(_BillingEvent, kw_only=True):
    type: Literal["storage"] = "storage"
    free: bool = False
    gigabyte_hours: float


BillingEventInfo.register(
    TrainingBillingEvent,
    SamplingPrefillBillingEvent,
    SamplingSampleBillingEvent,
    CheckpointBillingEvent,
    StorageBillingEvent,
)


class BillingUsageEvent(ResponseStruct, kw_only=True):
    """One hourly bucket of usage; ``event_info`` says what kind and how much."""

    bucket_start: datetime
    bucket_end: datetime
    base_model: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    session_id: str | None = None
    project_id: str | None = None
    estimated_cost_usd: float | None = None
    """Gross estimate before credits; not an amount due."""
    effective_rate_usd_per_million_tokens: float | None = None
    effective_rate_usd_per_gigabyte_month: float | None = None
    event_info: BillingEventInfo


class BillingUsageSession(ResponseStruct, kw_only=True):
    user_metadata: dict[str, str] | None = None


class BillingUsageResponse(ResponseStruct, kw_only=True):
    data: list[BillingUsageEvent]
    sessions: dict[str, BillingUsageSession] = msgspec.field(default_factory=dict)
    """Attributes of every session in ``data``, by session id."""
    cost_data_through: datetime | None = None
    """Boundary between invoice-priced (before) and rate-card-priced (after) estimates."""


# --- checkpoint storage ------------------------------------------------------------------------------------
class GetCurrentCheckpointStorageUsageRequest(RequestStruct, kw_only=True):
    """Query of ``GET /api/v1/billing/usage/checkpoints/current``; no project means the whole organization."""

    project_id: str | None = None


class CurrentCheckpointStorageUsageItem(ResponseStruct, kw_only=True):
    project_id: str | None = None
    org_user_urn: str | None = None
    user_email: str | None = None
    user_name: str | None = None
    checkpoint_count: int
    size_bytes: int
    size_gigabytes: float
    estimated_monthly_cost_usd: float | None = None


class CurrentCheckpointStorageUsageResponse(ResponseStruct, kw_only=True):
    effective_rate_usd_per_gigabyte_month: float | None = None
    data: list[CurrentCheckpointStorageUsageItem]
    """Grouped by project and session owner; may lag by 1-2 hours."""
