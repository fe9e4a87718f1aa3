"""The account reports of the local server as pure functions, by tables: the billing window checks, the audit
log's day and event-type selection, hourly bucketing of usage, and checkpoint storage grouping."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from tinkex import types as t
from tinkex.testing.account_reports import (
    AuditRecord,
    QueryProblem,
    StoredCheckpoint,
    UsageRecord,
    audit_day,
    audit_entries,
    billing_events,
    billing_window,
    storage_items,
)

NOW = datetime(2026, 7, 14, 10, 25, tzinfo=timezone.utc)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("starting_on", "ending_before", "window"),
    [
        ("2026-07-13T00:00:00Z", "2026-07-14T00:00:00Z", ("2026-07-13T00:00:00", "2026-07-14T00:00:00")),
        ("2026-07-14T10:00:00Z", "2026-07-14T11:00:00Z", ("2026-07-14T10:00:00", "2026-07-14T11:00:00")),
        ("2026-06-30T10:00:00Z", "2026-07-14T10:00:00Z", ("2026-06-30T10:00:00", "2026-07-14T10:00:00")),  # 14 days
        ("2026-07-13T02:00:00+02:00", "2026-07-13T01:00:00Z", ("2026-07-13T00:00:00", "2026-07-13T01:00:00")),
        ("2026-07-13T00:00:00", "2026-07-13T03:00:00", ("2026-07-13T00:00:00", "2026-07-13T03:00:00")),  # naive: UTC
        ("2026-07-13T00:30:00+00:30", "2026-07-14T00:00:00Z", ("2026-07-13T00:00:00", "2026-07-14T00:00:00")),
    ],
)
def test_good_billing_windows(starting_on: str, ending_before: str, window: tuple[str, str]) -> None:
    assert billing_window(starting_on, ending_before, NOW) == (_at(window[0]), _at(window[1]))


@pytest.mark.parametrize(
    ("starting_on", "ending_before", "field", "words"),
    [
        (None, "2026-07-14T00:00:00Z", "starting_on", "required"),
        ("2026-07-13T00:00:00Z", "", "ending_before", "required"),
        ("yesterday", "2026-07-14T00:00:00Z", "starting_on", "RFC 3339"),
        ("2026-07-13T00:00:01Z", "2026-07-14T00:00:00Z", "starting_on", "hour boundary"),
        ("2026-07-13T00:00:00Z", "2026-07-13T23:59:00Z", "ending_before", "hour boundary"),
        ("2026-07-13T00:00:00+00:30", "2026-07-14T00:00:00Z", "starting_on", "hour boundary"),  # 23:30 UTC
        ("2026-07-14T11:00:00Z", "2026-07-14T12:00:00Z", "starting_on", "future"),
        ("2026-07-13T00:00:00Z", "2026-07-13T00:00:00Z", "ending_before", "after starting_on"),
        ("2026-06-30T09:00:00Z", "2026-07-14T10:00:00Z", "ending_before", "14 days"),
    ],
)
def test_bad_billing_windows_name_the_parameter(
    starting_on: str | None, ending_before: str | None, field: str, words: str
) -> None:
    with pytest.raises(QueryProblem) as problem:
        billing_window(starting_on, ending_before, NOW)
    assert problem.value.field == field and words in str(problem.value) and field in str(problem.value)


@pytest.mark.parametrize(
    ("value", "day"), [(None, date(2026, 7, 14)), ("", date(2026, 7, 14)), ("2025-01-15", date(2025, 1, 15))]
)
def test_audit_day(value: str | None, day: date) -> None:
    assert audit_day(value, date(2026, 7, 14)) == day


def test_a_bad_audit_day_names_it() -> None:
    with pytest.raises(QueryProblem, match="day must be an ISO date") as problem:
        audit_day("15/01/2025", date(2026, 7, 14))
    assert problem.value.field == "day"


RECORDS = [
    AuditRecord(_at("2026-07-14T09:00:00"), "project_session_assign", {"project_id": "p"}),
    AuditRecord(_at("2026-07-14T08:00:00"), "checkpoint_save", {}, "run-1", "tinker://run-1/weights/a"),
    AuditRecord(_at("2026-07-13T23:59:59"), "checkpoint_delete", {}, "run-1", "tinker://run-1/weights/b"),
    AuditRecord(_at("2026-07-15T00:00:00"), "checkpoint_publish", {}, "run-1", "tinker://run-1/weights/a"),
    AuditRecord(_at("2026-07-14T12:00:00"), "organization_member_add", {}),
]


@pytest.mark.parametrize(
    ("event_type", "day", "events"),
    [
        ("all", date(2026, 7, 14), ["checkpoint_save", "project_session_assign", "organization_member_add"]),
        ("checkpoints", date(2026, 7, 14), ["checkpoint_save"]),
        ("projects", date(2026, 7, 14), ["project_session_assign"]),
        ("organizations", date(2026, 7, 14), ["organization_member_add"]),
        ("teams", date(2026, 7, 14), []),
        ("all", date(2026, 7, 13), ["checkpoint_delete"]),
        ("checkpoints", date(2026, 7, 15), ["checkpoint_publish"]),
    ],
)
def test_audit_entries_of_a_utc_day_and_event_type_oldest_first(event_type: str, day: date, events: list[str]) -> None:
    entries = audit_entries(RECORDS, event_type, day)
    assert [e.event for e in entries] == events
    assert all(isinstance(e, t.AuditLogEntry) for e in entries)


def test_an_unknown_event_type_names_the_parameter_and_the_choices() -> None:
    with pytest.raises(QueryProblem, match="all, checkpoints, projects, teams, organizations") as problem:
        audit_entries(RECORDS, "users", date(2026, 7, 14))
    assert problem.value.field == "event_type"


def _use(time: str, kind: str, amount: int, session: str = "s1") -> UsageRecord:
    return UsageRecord(_at(time), kind, amount, "base", "user", session, "proj")  # type: ignore[arg-type]


def test_usage_is_summed_per_hour_kind_and_session_within_the_window() -> None:
    records = [
        _use("2026-07-14T08:10:00", "training", 5),
        _use("2026-07-14T08:50:00", "training", 7),
        _use("2026-07-14T08:55:00", "sampling_sample", 4),
        _use("2026-07-14T08:56:00", "sampling_prefill", 3),
        _use("2026-07-14T08:59:00", "training", 1, session="s2"),
        _use("2026-07-14T09:00:00", "training", 2),
        _use("2026-07-14T09:30:00", "checkpoint", 1),
        _use("2026-07-14T07:59:59", "training", 100),  # before the window
        _use("2026-07-14T10:00:00", "training", 100),  # at ending_before: excluded
    ]
    events = billing_events(records, _at("2026-07-14T08:00:00"), _at("2026-07-14T10:00:00"))
    summary = [
        (e.bucket_start.hour, e.bucket_end.hour, e.event_info.type, e.session_id, _amount(e.event_info)) for e in events
    ]
    assert summary == [
        (8, 9, "training", "s1", 12),
        (8, 9, "training", "s2", 1),
        (8, 9, "sampling_prefill", "s1", 3),
        (8, 9, "sampling_sample", "s1", 4),
        (9, 10, "training", "s1", 2),
        (9, 10, "checkpoint", "s1", 1),
    ]
    assert all(e.estimated_cost_usd is None and e.project_id == "proj" for e in events)


def _amount(info: t.BillingEventInfo) -> int:
    return info.count if isinstance(info, t.CheckpointBillingEvent) else info.token_count  # type: ignore


@pytest.mark.parametrize(
    ("project_id", "groups"),
    [
        (None, [("a", "u1", 2, 300), ("a", "u2", 1, 50), ("b", "u1", 1, 7)]),
        ("a", [("a", "u1", 2, 300), ("a", "u2", 1, 50)]),
        ("missing", []),
    ],
)
def test_storage_is_grouped_per_project_and_owner(
    project_id: str | None, groups: list[tuple[str, str, int, int]]
) -> None:
    stored = [
        StoredCheckpoint("b", "u1", 7),
        StoredCheckpoint("a", "u1", 100),
        StoredCheckpoint("a", "u2", 50),
        StoredCheckpoint("a", "u1", 200),
    ]
    items = storage_items(stored, project_id)
    assert [(i.project_id, i.org_user_urn, i.checkpoint_count, i.size_bytes) for i in items] == groups
    assert all(i.size_gigabytes == i.size_bytes / 1e9 for i in items)
