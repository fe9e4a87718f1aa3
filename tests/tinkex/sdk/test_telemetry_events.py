"""Backend telemetry (docs/wire.md §7): a failure that reaches the user is reported once, classified as the
official SDK does (user error vs unhandled exception), and ``TINKER_TELEMETRY=0`` sends nothing at all."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from sdk_helpers import API_KEY, BASE_MODEL, datum, server_client

import tinkex
from tinkex import RequestFailedError, types
from tinkex.testing import FaultRule, LocalServer


def events(server: LocalServer) -> list[Any]:
    return [event for batch in server.telemetry_batches() for event in batch.events]


def fail_forward_backward(category: Literal["user", "server"]) -> tuple[list[Any], RequestFailedError]:
    """Run a forward_backward whose future fails with ``category``; return the events sent and the error."""
    rule = FaultRule.request_failed("forward_backward", category=category, message=f"{category} broke it")
    with LocalServer(long_poll_timeout=0.2, faults=[rule]) as server:
        client = server_client(server, telemetry=True)
        try:
            training = client.create_lora_training_client(BASE_MODEL)
            with pytest.raises(RequestFailedError) as caught:
                training.forward_backward([datum([1, 2])], "cross_entropy").result(5)
        finally:
            client.close()
        return events(server), caught.value


def test_a_user_category_failure_is_reported_as_a_user_error() -> None:
    sent, error = fail_forward_backward("user")
    assert error.category == "user"
    assert "user broke it" in str(error)
    assert sent[0].event == "SESSION_START"
    reported = [e for e in sent if e.event != "SESSION_START"]
    assert [(e.event, getattr(e, "event_name", None)) for e in reported] == [("GENERIC_EVENT", "user_error")]
    assert reported[0].severity == "WARNING"
    assert reported[0].event_data["error_type"] == "RequestFailedError"
    assert "user broke it" in reported[0].event_data["message"]
    assert [e.event_session_index for e in sent] == list(range(len(sent)))


def test_a_server_category_failure_is_reported_as_an_unhandled_exception() -> None:
    sent, error = fail_forward_backward("server")
    assert error.category == "server"
    reported = [e for e in sent if e.event != "SESSION_START"]
    assert [e.event for e in reported] == ["UNHANDLED_EXCEPTION"]
    assert reported[0].error_type == "RequestFailedError"
    assert "server broke it" in reported[0].error_message
    assert reported[0].severity == "ERROR"


def _skip_client_side_loss_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client refuses unknown loss names at the call; these tests need the server's 422 for one.
    monkeypatch.setattr("tinkex.training_client.check_loss_fn", lambda loss_fn: loss_fn)


def test_a_rejected_request_is_a_user_error_and_no_secret_leaks(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _skip_client_side_loss_check(monkeypatch)
    client = server_client(server, telemetry=True)
    try:
        training = client.create_lora_training_client(BASE_MODEL)
        with pytest.raises(tinkex.UnprocessableEntityError):
            # A loss the server does not know: 422 at submission.
            training.forward_backward([datum([1])], "no_such_loss").result(5)  # type: ignore[arg-type]
    finally:
        client.close()
    reported = [e for e in events(server) if e.event != "SESSION_START"]
    assert [getattr(e, "event_name", e.event) for e in reported] == ["user_error"]
    assert reported[0].event_data["status_code"] == 422
    assert API_KEY not in repr(server.telemetry_batches())


def test_the_context_manager_reports_a_fatal_exception_and_ends_the_session(server: LocalServer) -> None:
    with pytest.raises(ZeroDivisionError):
        with server_client(server, telemetry=True) as client:
            client.create_sampling_client(base_model=BASE_MODEL).result()
            1 / 0  # noqa: B018
    kinds = [e.event for e in events(server)]
    assert kinds == ["SESSION_START", "UNHANDLED_EXCEPTION", "SESSION_END"]


def test_tinker_telemetry_0_sends_nothing(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _skip_client_side_loss_check(monkeypatch)
    client = tinkex.Client(api_key=API_KEY, base_url=server.base_url, env={"TINKER_TELEMETRY": "0"})
    try:
        training = client.create_lora_training_client(BASE_MODEL)
        training.optim_step(types.AdamParams()).result(5)
        with pytest.raises(tinkex.UnprocessableEntityError):
            training.forward_backward([datum([1])], "no_such_loss").result(5)  # type: ignore[arg-type]
    finally:
        client.close()
    assert server.ledger.received("telemetry") == []


def test_a_failure_escaping_the_context_manager_is_reported_once() -> None:
    rule = FaultRule.request_failed("optim_step", category="user", message="bad step")
    with LocalServer(long_poll_timeout=0.2, faults=[rule]) as server:
        with pytest.raises(RequestFailedError):
            with server_client(server, telemetry=True) as client:
                training = client.create_lora_training_client(BASE_MODEL)
                training.optim_step(types.AdamParams()).result(5)
        kinds = [getattr(e, "event_name", e.event) for e in events(server)]
    assert kinds == ["SESSION_START", "user_error", "SESSION_END"]


def test_every_transport_retry_is_reported_as_a_generic_event() -> None:
    rule = FaultRule(endpoint="optim_step", status=503, count=2, headers={"retry-after-ms": "10"})
    with LocalServer(long_poll_timeout=0.2, faults=[rule]) as server:
        client = server_client(server, telemetry=True)
        try:
            training = client.create_lora_training_client(BASE_MODEL)
            training.optim_step(types.AdamParams()).result(10)
        finally:
            client.close()
        retries = [e for e in events(server) if getattr(e, "event_name", None) == "transport.retry"]
    assert [e.event_data["attempt"] for e in retries] == [1, 2]
    assert retries[0].event_data["path"] == "/api/v1/optim_step"
    assert retries[0].event_data["reason"] == "status 503"
    assert retries[0].event_data["delay_s"] == pytest.approx(0.01)
    assert retries[0].severity == "WARNING"
