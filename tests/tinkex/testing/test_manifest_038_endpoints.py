"""The endpoints that official 0.38 added are in tinkex's manifest with the pool, timeout, retry policy,
idempotency and future shape of docs/wire.md §1.7; the headers say "tinkex, serving the 0.38.0 API"."""

from __future__ import annotations

import pytest

from pristine_transport.layers.headers import resolve_headers
from pristine_transport.redaction import Redactor
from tinkex.config import load_tinker_manifest

MANIFEST = load_tinker_manifest()

# name: (method, path, pool, timeout_s, future request type or None)
ENDPOINTS_0_38 = {
    "finish_session": ("POST", "/api/v1/sessions/{session_id}/finish", "train", 60.0, None),
    "join_sampling_session": ("POST", "/api/v1/join_sampling_session", "session", 60.0, None),
    "cancel_future": ("POST", "/api/v1/cancel_future", "retrieve_promise", 30.0, None),
    "copy_weights": ("POST", "/api/v1/copy_weights", "train", 60.0, None),
    "save_weights_external": ("POST", "/api/v1/save_weights_external", "train", 60.0, "SaveWeightsExternal"),
    "external_weights_urls": (
        "GET",
        "/api/v1/training_runs/{training_run_id}/checkpoints/{checkpoint_id}/external_weights_urls",
        "train",
        60.0,
        None,
    ),
    "search_sessions": ("POST", "/api/v1/sessions/search", "train", 60.0, None),
    "assign_session_project": ("PUT", "/api/v1/sessions/{session_id}/project", "train", 60.0, None),
    "export_session_trace": ("GET", "/api/v1/sessions/{session_id}/trace_export", "train", 60.0, None),
    "whoami": ("GET", "/api/v1/auth/apikey/me", "train", 60.0, None),
    "create_custom_loss": ("POST", "/api/v1/create_custom_loss", "train", 60.0, "CreateCustomLoss"),
}


@pytest.mark.parametrize("name", sorted(ENDPOINTS_0_38))
def test_endpoint_is_described_as_the_wire_spec_says(name: str) -> None:
    method, path, pool, timeout, request_type = ENDPOINTS_0_38[name]
    spec = MANIFEST.endpoint(name)
    assert (spec.method, spec.path, spec.pool, spec.timeout_s) == (method, path, pool, timeout)
    if request_type is None:
        assert spec.future is None
    else:
        assert spec.future is not None and spec.future.request_type == request_type


@pytest.mark.parametrize("name", sorted(ENDPOINTS_0_38))
def test_endpoint_retries_as_execute_with_retries_does(name: str) -> None:
    """Every 0.38 endpoint runs inside ``execute_with_retries`` (§1.7), which tinkex's standard policy stands for:
    408/409/429/5xx and connection errors are re-sent, 400-class errors are not."""
    policy = MANIFEST.retry_policy_for(name)
    assert policy is not None and policy.kind == "standard"
    assert policy.max_retries == 10 and policy.retry_statuses == [408, 409, 429]
    assert policy.retry_server_errors and policy.retry_connection_errors


@pytest.mark.parametrize("name", sorted(ENDPOINTS_0_38))
def test_every_write_carries_an_idempotency_key(name: str) -> None:
    """A non-GET request carries one key per logical write, reused on every re-send (``copy_weights`` relies on it:
    the official SDK pins one key across all its retries so that a copy is never made twice)."""
    spec = MANIFEST.endpoint(name)
    expected = spec.method != "GET"
    assert (spec.idempotency if spec.idempotency is not None else spec.method not in ("GET", "HEAD")) is expected


def test_finish_is_the_session_end_endpoint() -> None:
    assert MANIFEST.session is not None
    assert MANIFEST.session.end_endpoint == "finish_session"
    assert MANIFEST.session.stop_on_status == 410


def test_dialect_issue_endpoints_are_not_claimed_here() -> None:
    """The batched poller and dynamic config belong to the wire-dialect work, not to this endpoint set."""
    assert not {"retrieve_futures"} & set(ENDPOINTS_0_38)


def _headers(config: dict[str, str]) -> dict[str, str]:
    return resolve_headers(MANIFEST.headers, config=config, env={}, redactor=Redactor())


def test_headers_identify_tinkex_serving_the_0_38_api() -> None:
    headers = _headers({"api_key": "tml-abcdefgh12345678", "sdk_version": "0.16.1", "tinkex_version": "1.2.3"})
    assert headers["User-Agent"] == "AsyncTinker/Python 0.38.0 (tinkex)"
    assert headers["X-Stainless-Package-Version"] == "0.38.0"
    assert headers["X-Tinkex-Version"] == "1.2.3"
    # Servers that read the Stainless runtime headers still find every one of them.
    for name in ("X-Stainless-OS", "X-Stainless-Arch", "X-Stainless-Runtime", "X-Stainless-Runtime-Version",
                 "X-Stainless-Async"):
        assert headers[name], name


def test_headers_never_claim_to_be_the_official_0_16_sdk() -> None:
    headers = _headers({"api_key": "tml-abcdefgh12345678", "sdk_version": "0.16.1", "tinkex_version": "1.2.3"})
    assert "0.16.1" not in headers.values()
    assert all("AsyncTinker/Python 0.16" not in value for value in headers.values())


def test_a_cancelled_future_is_recognisable_from_the_manifest() -> None:
    """LocalServer resolves a cancelled future to a failure whose message the manifest lists as a cancellation,
    so the future resolver can raise a typed cancellation instead of a generic failure."""
    from tinkex.testing.handlers import CANCELLED_MESSAGE

    assert MANIFEST.futures is not None
    message = CANCELLED_MESSAGE.format(request_id="req-1").lower()
    failure = MANIFEST.futures.failure
    assert any(pattern.lower() in message for pattern in failure.cancelled_patterns)
    assert not any(p.lower() in message for p in failure.rate_limit_patterns + failure.capacity_patterns)
