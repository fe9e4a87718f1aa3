"""``AdminClient`` (and ``RestClient``'s admin delegates) end to end against a real loopback LocalServer: each report
is checked against what the test did on the server, and each request against what went on the wire."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs

import pytest
from sdk_helpers import API_KEY, BASE_MODEL, datum, server_client

import tinkex
from tinkex import types
from tinkex.testing import FaultRule, LocalServer

HOUR = timedelta(hours=1)


def _this_hour() -> datetime:
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _queries(server: LocalServer, endpoint: str) -> list[dict[str, list[str]]]:
    return [parse_qs(r.query, keep_blank_values=True) for r in server.ledger.received(endpoint)]


@pytest.fixture
def admin(server: LocalServer) -> tinkex.AdminClient:
    return tinkex.AdminClient(base_url=server.base_url, api_key=API_KEY)


@pytest.fixture
def client(server: LocalServer) -> Iterator[tinkex.Client]:
    client = server_client(server, project_id="proj-a", user_metadata={"team": "search"})
    try:
        yield client
    finally:
        client.close()


def test_the_audit_log_lists_the_checkpoint_and_project_events_the_server_executed(
    server: LocalServer, client: tinkex.Client, admin: tinkex.AdminClient
) -> None:
    training = client.create_lora_training_client(BASE_MODEL, rank=4).result()
    state = training.save_state("s1").result(10).path
    sampler_weights = training.save_weights_for_sampler("s2").result(10).path
    rest = client.create_rest_client()
    # The publish runs once although its answer is lost once: the re-send is answered from the replay cache.
    server.faults.add(FaultRule(endpoint="publish_checkpoint", status=503, after_execute=True, count=1))
    rest.publish_checkpoint_from_tinker_path(state).result(10)
    rest.set_checkpoint_ttl_from_tinker_path(state, 7200).result(5)
    rest.unpublish_checkpoint_from_tinker_path(state).result(5)
    copy = rest.copy_weights(state, "proj-b").result(5)
    rest.delete_checkpoint_from_tinker_path(sampler_weights).result(5)
    session_id = client.holder.known_session_id()
    rest.assign_session_project(session_id, "proj-c").result(5)
    me = rest.whoami().result(5)

    log = admin.get_audit_log().result(5)

    assert [(e.event, e.tinker_path) for e in log.entries] == [
        ("checkpoint_save", state),
        ("checkpoint_save", sampler_weights),
        ("checkpoint_publish", state),
        ("checkpoint_ttl_set", state),
        ("checkpoint_unpublish", state),
        ("checkpoint_copy", copy),
        ("checkpoint_delete", sampler_weights),
        ("project_session_assign", None),
    ]
    assert [e.timestamp for e in log.entries] == sorted(e.timestamp for e in log.entries)
    assert all(e.event_details["actor"] == me.user_urn for e in log.entries)
    assert log.entries[0].model_id == training.model_id and log.entries[0].event_details["project_id"] == "proj-a"
    assert log.entries[3].event_details["ttl_seconds"] == 7200
    assert log.entries[5].event_details["source_path"] == state
    assert log.entries[-1].event_details == {"actor": me.user_urn, "session_id": session_id, "project_id": "proj-c"}

    projects = admin.get_audit_log("projects").result(5)
    assert [e.event for e in projects.entries] == ["project_session_assign"]
    assert admin.get_audit_log(event_type="teams").result(5).entries == []
    today = datetime.now(timezone.utc).date()
    assert len(admin.get_audit_log("checkpoints", today).result(5).entries) == 7
    assert admin.get_audit_log("all", today - timedelta(days=1)).result(5).entries == []

    assert _queries(server, "get_audit_log") == [
        {"event_type": ["all"]},
        {"event_type": ["projects"]},
        {"event_type": ["teams"]},
        {"event_type": ["checkpoints"], "day": [today.isoformat()]},
        {"event_type": ["all"], "day": [(today - timedelta(days=1)).isoformat()]},
    ]
    assert all(r.method == "GET" and r.path == "/api/v1/audit" for r in server.ledger.received("get_audit_log"))


def test_a_failed_operation_is_neither_audited_nor_billed(
    server: LocalServer, client: tinkex.Client, admin: tinkex.AdminClient
) -> None:
    training = client.create_lora_training_client(BASE_MODEL, rank=4).result()
    server.faults.add(FaultRule(endpoint="save_weights", kind="request_failed", category="user", count=1))
    with pytest.raises(tinkex.RequestFailedError):
        training.save_state("never").result(10)
    assert admin.get_audit_log().result(5).entries == []
    start = _this_hour() - HOUR
    assert admin.get_billing_usage(start, start + 3 * HOUR).result(5).data == []


def test_an_unknown_event_type_is_a_bad_request_naming_it(admin: tinkex.AdminClient) -> None:
    with pytest.raises(tinkex.BadRequestError) as refused:
        admin.get_audit_log("users").result(5)  # type: ignore[arg-type]
    assert refused.value.status_code == 400 and "event_type" in str(refused.value)


def test_billing_usage_is_the_training_sampling_and_checkpoint_work_of_the_window_by_hour(
    server: LocalServer, client: tinkex.Client, admin: tinkex.AdminClient
) -> None:
    start = _this_hour() - HOUR  # the window spans the hour before and after, so an hour turning mid-test is fine
    training = client.create_lora_training_client(BASE_MODEL, rank=4).result()
    training.forward_backward([datum([1, 2, 3]), datum([4, 5])], "cross_entropy").result(10)
    training.forward([datum([6, 7, 8, 9])], "cross_entropy").result(10)
    sampler = training.save_weights_and_get_sampling_client("for-sampling").result(10)
    prompt = types.ModelInput.from_ints([1, 2, 3])
    sampled = sampler.sample(prompt, 2, types.SamplingParams(max_tokens=4, seed=1)).result(10)
    me = client.create_rest_client().whoami().result(5)

    usage = admin.get_billing_usage(start, start + 3 * HOUR).result(5)

    totals: dict[str, int] = {}
    for event in usage.data:
        info = event.event_info
        amount = info.count if isinstance(info, types.CheckpointBillingEvent) else info.token_count  # type: ignore
        totals[info.type] = totals.get(info.type, 0) + amount
        assert event.bucket_end - event.bucket_start == HOUR
        assert event.bucket_start == event.bucket_start.replace(minute=0, second=0, microsecond=0)
        assert start <= event.bucket_start < start + 3 * HOUR
        assert (event.base_model, event.user_id, event.project_id) == (BASE_MODEL, me.user_urn, "proj-a")
        assert event.session_id == client.holder.known_session_id()
        assert event.estimated_cost_usd is None  # the local server has no prices
    assert totals == {
        "training": 3 + 2 + 4,
        "checkpoint": 1,
        "sampling_prefill": 3,
        "sampling_sample": sum(len(s.tokens) for s in sampled.sequences),
    }
    assert all(
        not e.event_info.cached for e in usage.data if isinstance(e.event_info, types.SamplingPrefillBillingEvent)
    )
    session_id = client.holder.known_session_id()
    assert usage.sessions == {session_id: types.BillingUsageSession(user_metadata={"team": "search"})}

    # An earlier window holds none of it; RFC 3339 strings work as datetimes do.
    earlier = (start - 2 * HOUR).isoformat().replace("+00:00", "Z")
    assert admin.get_billing_usage(earlier, (start - HOUR).isoformat()).result(5).data == []

    assert _queries(server, "get_billing_usage") == [
        {"starting_on": [_rfc3339(start)], "ending_before": [_rfc3339(start + 3 * HOUR)]},
        {"starting_on": [_rfc3339(start - 2 * HOUR)], "ending_before": [_rfc3339(start - HOUR)]},
    ]


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("starting_on", "ending_before", "field", "reason"),
    [
        ("2026-01-01T00:30:00Z", "2026-01-02T00:00:00Z", "starting_on", "hour boundary"),
        ("2026-01-01T00:00:00Z", "2026-01-01T05:00:01Z", "ending_before", "hour boundary"),
        ("2026-01-01T00:00:00Z", "2026-01-15T01:00:00Z", "ending_before", "14 days"),
        ("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", "ending_before", "after starting_on"),
        ("2999-01-01T00:00:00Z", "2999-01-02T00:00:00Z", "starting_on", "future"),
    ],
)
def test_a_bad_billing_window_is_a_bad_request_naming_the_parameter(
    server: LocalServer, admin: tinkex.AdminClient, starting_on: str, ending_before: str, field: str, reason: str
) -> None:
    with pytest.raises(tinkex.BadRequestError) as refused:
        admin.get_billing_usage(starting_on, ending_before).result(5)
    assert refused.value.status_code == 400
    detail = refused.value.body["detail"][0]  # type: ignore[index]
    assert detail["loc"] == ["query", field] and reason in detail["msg"]
    assert len(server.ledger.received("get_billing_usage")) == 1  # a 400 is not retried


def test_a_billing_bound_that_is_not_a_datetime_fails_in_the_caller_before_any_request(
    server: LocalServer, admin: tinkex.AdminClient
) -> None:
    with pytest.raises(ValueError, match="starting_on"):
        admin.get_billing_usage("yesterday", "2026-01-01T00:00:00Z")
    assert server.ledger.received("get_billing_usage") == []


def test_checkpoint_storage_counts_and_sizes_the_live_checkpoints_per_project(
    server: LocalServer, client: tinkex.Client, admin: tinkex.AdminClient
) -> None:
    training = client.create_lora_training_client(BASE_MODEL, rank=4).result()
    first = training.save_state("a").result(10).path
    training.save_weights_for_sampler("b").result(10)
    other = server_client(server, project_id="proj-b")
    try:
        other.create_lora_training_client(BASE_MODEL, rank=4).result().save_state("c").result(10)
    finally:
        other.close()
    rest = client.create_rest_client()
    listed = {c.tinker_path: c.size_bytes for c in rest.list_user_checkpoints().result(5).checkpoints}
    me = rest.whoami().result(5)

    usage = admin.get_current_checkpoint_storage_usage().result(5)
    by_project = {item.project_id: item for item in usage.data}
    assert sorted(by_project) == ["proj-a", "proj-b"]
    mine = by_project["proj-a"]
    assert (mine.checkpoint_count, mine.org_user_urn) == (2, me.user_urn)
    assert mine.size_bytes == sum(size for path, size in listed.items() if training.model_id in path)
    assert mine.size_gigabytes == pytest.approx(mine.size_bytes / 1e9)
    assert sum(item.size_bytes for item in usage.data) == sum(listed.values())

    only_b = admin.get_current_checkpoint_storage_usage("proj-b").result(5)
    assert [(i.project_id, i.checkpoint_count) for i in only_b.data] == [("proj-b", 1)]
    rest.delete_checkpoint_from_tinker_path(first).result(5)
    after = admin.get_current_checkpoint_storage_usage(project_id="proj-a").result(5)
    assert [i.checkpoint_count for i in after.data] == [1]

    assert _queries(server, "get_current_checkpoint_storage_usage") == [
        {},
        {"project_id": ["proj-b"]},
        {"project_id": ["proj-a"]},
    ]


def test_rest_client_admin_methods_delegate_to_an_admin_client_on_its_holder(
    server: LocalServer, client: tinkex.Client
) -> None:
    training = client.create_lora_training_client(BASE_MODEL, rank=4).result()
    path = training.save_state("x").result(10).path
    rest = client.create_rest_client()
    assert rest._admin_client().holder is rest.holder
    assert [e.tinker_path for e in rest.get_audit_log("checkpoints").result(5).entries] == [path]
    start = _this_hour() - HOUR
    kinds = {e.event_info.type for e in rest.get_billing_usage(start, start + 3 * HOUR).result(5).data}
    assert kinds == {"checkpoint"}
    assert [i.checkpoint_count for i in rest.get_current_checkpoint_storage_usage("proj-a").result(5).data] == [1]
    with pytest.raises(ValueError, match="AdminClient takes a holder or base_url/api_key"):
        tinkex.AdminClient(rest.holder, base_url=server.base_url)


@pytest.mark.anyio
async def test_the_async_twins_and_awaited_futures_give_the_same_reports(server: LocalServer) -> None:
    admin = tinkex.AdminClient(base_url=server.base_url, api_key=API_KEY)
    rest = tinkex.RestClient(base_url=server.base_url, api_key=API_KEY)
    assert admin.holder is rest.holder  # one session-less holder per base URL and key
    start = _this_hour() - HOUR
    today = datetime.now(timezone.utc).date()
    assert await admin.get_audit_log_async("all", today) == await admin.get_audit_log("all", today)
    assert await rest.get_audit_log_async() == types.AuditLogResponse(entries=[])
    assert (await admin.get_billing_usage_async(start, start + HOUR)).data == []
    assert (await rest.get_billing_usage_async(start, start + HOUR)).data == []
    assert (await admin.get_current_checkpoint_storage_usage_async()).data == []
    assert (await rest.get_current_checkpoint_storage_usage_async("p")).data == []
