"""The local server's account records and the reports made from them: the audit log, hourly billing usage and
current checkpoint storage (the ``audit`` and ``billing/usage/*`` endpoints of 0.38's ``AdminClient``).

Records are appended by :class:`~tinkex.testing.admin_endpoints.AdminEndpoints` as operations execute; everything
else here is a pure function of records and query values, so the reports are table-tested without a server.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Literal

from tinkex import types as t

__all__ = [
    "AUDIT_EVENT_TYPES",
    "MAX_BILLING_WINDOW",
    "AccountJournal",
    "AuditRecord",
    "QueryProblem",
    "StoredCheckpoint",
    "UsageKind",
    "UsageRecord",
    "audit_day",
    "audit_entries",
    "billing_events",
    "billing_window",
    "hour_floor",
    "storage_items",
]

AuditEventType = Literal["all", "checkpoints", "projects", "teams", "organizations"]
AUDIT_EVENT_TYPES: Mapping[str, str | None] = {
    "all": None,
    "checkpoints": "checkpoint_",
    "projects": "project_",
    "teams": "team_",
    "organizations": "organization_",
}
"""``event_type`` query value -> the prefix of the event names it selects (``<resource>_<action>``)."""

MAX_BILLING_WINDOW = timedelta(days=14)
_GIGABYTE = 1_000_000_000
UsageKind = Literal["training", "sampling_prefill", "sampling_sample", "checkpoint"]
_KIND_ORDER: Mapping[str, int] = {"training": 0, "sampling_prefill": 1, "sampling_sample": 2, "checkpoint": 3}


class QueryProblem(ValueError):
    """A query parameter the endpoint refuses; ``field`` names it (the reply is a 400 that says which)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class AuditRecord:
    time: datetime
    """Wall-clock UTC time the operation executed."""
    event: str
    details: Mapping[str, object]
    model_id: str | None = None
    tinker_path: str | None = None


@dataclass(frozen=True)
class UsageRecord:
    time: datetime
    kind: UsageKind
    amount: int
    """Tokens for training and sampling, checkpoints for ``checkpoint``."""
    base_model: str | None
    user_id: str | None
    session_id: str | None
    project_id: str | None


@dataclass(frozen=True)
class StoredCheckpoint:
    """A live checkpoint as the storage report sees it."""

    project_id: str | None
    owner: str | None
    size_bytes: int


@dataclass
class AccountJournal:
    """What the server executed, in order, for the account reports. Thread-safe (tests read it while serving)."""

    _audit: list[AuditRecord] = field(default_factory=list)
    _usage: list[UsageRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    listener: Callable[[list[AuditRecord], list[UsageRecord]], None] | None = None
    """Told of every record (with a state directory: the write journal, so the reports survive a restart)."""

    def record(self, audit: Iterable[AuditRecord], usage: Iterable[UsageRecord]) -> None:
        audit, usage = list(audit), list(usage)
        with self._lock:
            self._audit.extend(audit)
            self._usage.extend(usage)
        if self.listener is not None:
            self.listener(audit, usage)

    def audit(self) -> list[AuditRecord]:
        with self._lock:
            return list(self._audit)

    def usage(self) -> list[UsageRecord]:
        with self._lock:
            return list(self._usage)


# --- audit log ---------------------------------------------------------------------------------------------
def audit_day(value: str | None, today: date) -> date:
    """The ``day`` query value (ISO date), ``today`` (UTC) when absent."""
    if value is None or value == "":
        return today
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise QueryProblem("day", f"day must be an ISO date (YYYY-MM-DD), got {value!r}") from None


def audit_prefix(event_type: str) -> str | None:
    """The event-name prefix ``event_type`` selects (``None``: every event)."""
    if event_type not in AUDIT_EVENT_TYPES:
        expected = ", ".join(AUDIT_EVENT_TYPES)
        raise QueryProblem("event_type", f"event_type must be one of {expected}; got {event_type!r}")
    return AUDIT_EVENT_TYPES[event_type]


def audit_entries(records: Sequence[AuditRecord], event_type: str, day: date) -> list[t.AuditLogEntry]:
    """The records of ``day`` (midnight to midnight UTC) whose event fits ``event_type``, oldest first."""
    prefix = audit_prefix(event_type)
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    end = start + timedelta(days=1)
    chosen = [
        r for r in records if start <= r.time < end and (prefix is None or r.event.startswith(prefix))
    ]
    chosen.sort(key=lambda r: r.time)
    return [
        t.AuditLogEntry(
            timestamp=r.time,
            event=r.event,
            event_details=dict(r.details),
            model_id=r.model_id,
            tinker_path=r.tinker_path,
        )
        for r in chosen
    ]


# --- billing usage -----------------------------------------------------------------------------------------
def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _query_datetime(name: str, value: str | None) -> datetime:
    if value is None or value == "":
        raise QueryProblem(name, f"{name} is required (an RFC 3339 datetime on a UTC hour boundary)")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise QueryProblem(name, f"{name} must be an RFC 3339 datetime, got {value!r}") from None
    # A datetime without an offset is read as UTC (the official SDK sends naive datetimes as given).
    parsed = parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    if parsed != hour_floor(parsed):
        raise QueryProblem(name, f"{name} must be aligned to a UTC hour boundary, got {value!r}")
    return parsed


def billing_window(starting_on: str | None, ending_before: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The validated ``[starting_on, ending_before)`` window: hour-aligned, not starting in the future, non-empty
    and at most :data:`MAX_BILLING_WINDOW` long."""
    start = _query_datetime("starting_on", starting_on)
    end = _query_datetime("ending_before", ending_before)
    if start > now:
        raise QueryProblem("starting_on", f"starting_on must not be in the future, got {starting_on!r}")
    if end <= start:
        raise QueryProblem("ending_before", f"ending_before must be after starting_on, got {ending_before!r}")
    if end - start > MAX_BILLING_WINDOW:
        raise QueryProblem(
            "ending_before",
            f"ending_before must be at most {MAX_BILLING_WINDOW.days} days after starting_on, "
            f"got a window of {end - start}",
        )
    return start, end


def _event_info(kind: str, amount: int) -> t.BillingEventInfo:
    if kind == "training":
        return t.TrainingBillingEvent(token_count=amount)
    if kind == "sampling_prefill":
        # The local server keeps no prefill cache: every prompt token is billed uncached.
        return t.SamplingPrefillBillingEvent(cached=False, token_count=amount)
    if kind == "sampling_sample":
        return t.SamplingSampleBillingEvent(token_count=amount)
    return t.CheckpointBillingEvent(count=amount)


def billing_events(records: Sequence[UsageRecord], start: datetime, end: datetime) -> list[t.BillingUsageEvent]:
    """The usage in ``[start, end)`` summed per UTC hour, kind, base model, user, session and project.

    The local server has no prices: costs and rates are null, as the hosted service reports unpriced rows.
    """
    totals: dict[tuple[datetime, str, str | None, str | None, str | None, str | None], int] = defaultdict(int)
    for r in records:
        if start <= r.time < end:
            totals[(hour_floor(r.time), r.kind, r.base_model, r.user_id, r.session_id, r.project_id)] += r.amount
    keys = sorted(totals, key=lambda k: (k[0], _KIND_ORDER[k[1]], k[2] or "", k[4] or "", k[3] or "", k[5] or ""))
    return [
        t.BillingUsageEvent(
            bucket_start=bucket,
            bucket_end=bucket + timedelta(hours=1),
            base_model=base_model,
            user_id=user_id,
            session_id=session_id,
            project_id=project_id,
            event_info=_event_info(kind, totals[(bucket, kind, base_model, user_id, session_id, project_id)]),
        )
        for bucket, kind, base_model, user_id, session_id, project_id in keys
    ]


# --- checkpoint storage ------------------------------------------------------------------------------------
def storage_items(
    checkpoints: Sequence[StoredCheckpoint], project_id: str | None
) -> list[t.CurrentCheckpointStorageUsageItem]:
    """Live checkpoints counted and sized per project and owner; only ``project_id``'s when given."""
    counts: dict[tuple[str | None, str | None], list[int]] = defaultdict(lambda: [0, 0])
    for c in checkpoints:
        if project_id is not None and c.project_id != project_id:
            continue
        group = counts[(c.project_id, c.owner)]
        group[0] += 1
        group[1] += c.size_bytes
    return [
        t.CurrentCheckpointStorageUsageItem(
            project_id=project,
            org_user_urn=owner,
            checkpoint_count=count,
            size_bytes=size,
            size_gigabytes=size / _GIGABYTE,
        )
        for (project, owner), (count, size) in sorted(counts.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or ""))
    ]
