"""The admin report endpoints at the HTTP level: described in tinkex's manifest like the other REST reads, routed by
the LocalServer, and reporting only work that really executed (a replayed re-send is not counted twice)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tinkex.config import load_tinker_manifest

from .conftest import Wire

MANIFEST = load_tinker_manifest()

ADMIN_ENDPOINTS = {
    "get_audit_log": "/api/v1/audit",
    "get_billing_usage": "/api/v1/billing/usage/events",
    "get_current_checkpoint_storage_usage": "/api/v1/billing/usage/checkpoints/current",
}


@pytest.mark.parametrize("name", sorted(ADMIN_ENDPOINTS))
def test_admin_endpoints_are_rest_reads_with_the_standard_retry_policy(name: str) -> None:
    spec = MANIFEST.endpoint(name)
    assert (spec.method, spec.path, spec.pool, spec.timeout_s) == ("GET", ADMIN_ENDPOINTS[name], "train", 60.0)
    assert spec.future is None and not spec.idempotency
    policy = MANIFEST.retry_policy_for(name)
    assert policy is not None and policy.kind == "standard" and policy.max_retries == 10


def test_the_access_check_is_get_server_capabilities_sent_once() -> None:
    spec = MANIFEST.endpoint("check_accessible")
    assert (spec.method, spec.path) == ("GET", MANIFEST.endpoint("get_server_capabilities").path)
    policy = MANIFEST.retry_policy_for("check_accessible")
    assert policy is not None and policy.max_retries == 0


@pytest.mark.anyio
async def test_a_replayed_training_step_is_billed_once(wire: Wire, client: httpx.AsyncClient) -> None:
    model_id = await wire.model()
    body = wire.forward_backward_body(model_id, 1)
    headers = {"X-Idempotency-Key": "fb-once"}
    first = await wire.result(await wire.post("forward_backward", body, headers=headers))
    again = await wire.result(await wire.post("forward_backward", body, headers=headers))
    assert first == again
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    params = {
        "starting_on": (hour - timedelta(hours=1)).isoformat(),
        "ending_before": (hour + timedelta(hours=2)).isoformat(),
    }
    reply = await client.get("/api/v1/billing/usage/events", params=params)
    assert reply.status_code == 200, reply.text
    training = [e for e in reply.json()["data"] if e["event_info"]["type"] == "training"]
    data = body["forward_backward_input"]["data"]
    tokens = sum(len(chunk["tokens"]) for datum in data for chunk in datum["model_input"]["chunks"])
    assert [e["event_info"]["token_count"] for e in training] == [tokens]


@pytest.mark.anyio
async def test_report_endpoints_need_the_api_key(client: httpx.AsyncClient) -> None:
    for path in ADMIN_ENDPOINTS.values():
        reply = await client.get(path, headers={"X-API-Key": ""})
        assert reply.status_code == 401, path
