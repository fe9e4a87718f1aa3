"""The 402 billing pause a 0.38 server allows (``billing_exception_max_pause_duration_sec``): a request answered 402
waits and is sent again while the pause lasts, warned about at most once a minute; past the duration, or without
server flags (a 0.16 server or forced 0.16), the 402 raises ``BillingError``. The pause is the manifest's
``billing_pause`` retry rule, decided by ``pristine_transport.policy.decide_rule`` and applied by the retry layer."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import tinkex
from pristine_transport.policy import RuleEpisode, decide_rule
from tinkex import types as t
from tinkex.config import load_tinker_manifest
from tinkex.testing import FaultRule, LocalServer
from tinkex.wire.server_limits import billing_rule, manifest_with_billing_pause, pauses_on_billing

MODEL = "Qwen/Qwen3-8B"
DATUM = t.Datum(model_input=t.ModelInput.from_ints([1, 2, 3, 4]), loss_fn_inputs={"target_tokens": [2, 3, 4, 5]})
Flags = t.ClientConfigResponse
LOGGER = "pristine_transport.retry"
MANIFEST = load_tinker_manifest()
RULE = billing_rule(MANIFEST)
assert RULE is not None and RULE.log is not None
PAUSE_WARNING: str = RULE.log
BILLING_PAUSE_INTERVAL_S = RULE.wait_s or 0.0
POLICY = MANIFEST.retry_policy_for("forward_backward")
State = RuleEpisode


def billing_pause_decision(state: State, now: float, max_pause: float | None) -> tuple[bool, bool, State]:
    """The billing rule's verdict on a request's first 402 (pause?, warn?, the episode after), as the server's
    ``max_pause`` sets it (None: no flags, no rule)."""
    flags = Flags(billing_exception_max_pause_duration_sec=int(max_pause)) if max_pause is not None else None
    policy = manifest_with_billing_pause(flags, MANIFEST).retry_policy_for("forward_backward")
    assert policy is not None
    rule = policy.rules.get("billing_pause")
    if rule is None:
        return False, False, state
    verdict = decide_rule(rule, policy, state, now=now, matches=1)
    return verdict.wait_s is not None, verdict.warn, verdict.episode


@pytest.mark.parametrize(
    ("state", "now", "max_pause", "pause", "log", "after"),
    [
        (State(), 100.0, None, False, False, State()),  # no flags: never pause
        (State(), 100.0, 3600.0, True, True, State(100.0, 100.0)),  # the first 402 pauses and warns
        (State(100.0, 100.0), 130.0, 3600.0, True, False, State(100.0, 100.0)),  # warned 30 s ago: quiet
        (State(100.0, 100.0), 161.0, 3600.0, True, True, State(100.0, 161.0)),  # a minute later: warns again
        (State(100.0, 3650.0), 3701.0, 3600.0, False, False, State(100.0, 3650.0)),  # past the pause: raise
        (State(100.0, 3650.0), 3951.0, 3600.0, True, True, State(3951.0, 3951.0)),  # 5 min quiet: a new incident
        (State(100.0, 100.0), 100.5, 0.0, False, False, State(100.0, 100.0)),  # a zero pause: only the first waits
    ],
)
def test_billing_pause_decision_table(
    state: State, now: float, max_pause: float | None, pause: bool, log: bool, after: State
) -> None:
    assert billing_pause_decision(state, now, max_pause) == (pause, log, after)


@pytest.mark.parametrize(
    ("endpoint", "pauses"),
    [
        ("forward_backward", True),
        ("asample", True),  # officially samples pause too
        ("create_model", True),
        ("get_server_capabilities", True),
        ("check_accessible", False),  # the access check raises at once, as officially
        ("session_heartbeat", False),
        ("telemetry", False),
        ("retrieve_future", True),  # officially a future's polls pause as well
        ("auth_token", False),  # the JWT exchange is not sent through the official execute_with_retries
        ("retrieve_futures", True),  # the official batched poller waits out a 402
    ],
)
def test_which_requests_pause_on_billing(endpoint: str, pauses: bool) -> None:
    assert pauses_on_billing(MANIFEST, endpoint) is pauses


def test_paused_requests_warn_at_most_once_a_minute() -> None:
    episode, warned_at = State(), []
    for second in range(0, 185, 5):  # a 402 every 5 s for three minutes
        pause, warn, episode = billing_pause_decision(episode, float(second), 600.0)
        assert pause
        warned_at += [second] * warn
    assert warned_at == [0, 65, 130]  # more than 60 s apart each; the next would be at 195 s
    assert "402" in PAUSE_WARNING


@contextmanager
def _client(server: LocalServer, env: dict[str, str] | None = None) -> Iterator[tinkex.Client]:
    client = tinkex.Client(api_key="tml-billing", base_url=server.base_url, env=env or {}, telemetry=False)
    try:
        yield client
    finally:
        client.close()


def _billing_faults(count: int) -> list[FaultRule]:
    return [FaultRule(endpoint="forward_backward", status=402, body={"detail": "billing is not set up"}, count=count)]


def test_a_402_pauses_and_the_request_goes_through_when_billing_recovers(caplog: pytest.LogCaptureFixture) -> None:
    with LocalServer(client_config=Flags(), faults=_billing_faults(1)) as server, _client(server) as client:
        training = client.create_lora_training_client(MODEL, rank=4)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            output = training.forward_backward([DATUM], "cross_entropy").result(60)
        assert len(output.loss_fn_outputs) == 1
        assert time.monotonic() - started >= BILLING_PAUSE_INTERVAL_S * 0.9
        assert [r.status for r in server.ledger.received("forward_backward")] == [402, 200]
        assert len(server.ledger.executions("forward_backward")) == 1
    # The retry layer's logger is shared: another test's client may still log its own retries there.
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and PAUSE_WARNING in r.getMessage()]
    assert len(warnings) == 1 and "billing is not set up" in warnings[0]
    assert "tml-billing" not in caplog.text


def test_a_402_on_a_poll_pauses_and_the_result_arrives_once() -> None:
    paused_poll = FaultRule(endpoint="retrieve_future", status=402, body={"detail": "billing is not set up"}, count=1)
    with LocalServer(client_config=Flags(), faults=[paused_poll]) as server, _client(server) as client:
        training = client.create_lora_training_client(MODEL, rank=4)
        started = time.monotonic()
        output = training.forward_backward([DATUM], "cross_entropy").result(60)
        assert len(output.loss_fn_outputs) == 1
        assert time.monotonic() - started >= BILLING_PAUSE_INTERVAL_S * 0.9
        assert [r.status for r in server.ledger.received("retrieve_future")][:2] == [402, 200]
        assert len(server.ledger.executions("forward_backward")) == 1


def test_without_server_flags_a_402_on_a_poll_raises_at_once() -> None:
    paused_poll = FaultRule(endpoint="retrieve_future", status=402, body={"detail": "billing is not set up"}, count=5)
    with LocalServer(client_config=Flags(), faults=[paused_poll]) as server:
        with _client(server, {"TINKEX_WIRE_DIALECT": "0.16"}) as client:
            training = client.create_lora_training_client(MODEL, rank=4)
            with pytest.raises(tinkex.FutureRetrieveError) as raised:
                training.forward_backward([DATUM], "cross_entropy").result(60)
    assert raised.value.status_code == 402 and raised.value.outcome == "ran"  # the step ran: not to be sent again
    assert [r.status for r in server.ledger.received("retrieve_future")] == [402]


def test_past_the_servers_pause_the_402_raises() -> None:
    flags = Flags(billing_exception_max_pause_duration_sec=0)
    with LocalServer(client_config=flags, faults=_billing_faults(5)) as server, _client(server) as client:
        training = client.create_lora_training_client(MODEL, rank=4)
        with pytest.raises(tinkex.BillingError):
            training.forward_backward([DATUM], "cross_entropy").result(60)
        assert [r.status for r in server.ledger.received("forward_backward")] == [402, 402]  # one pause, then raise


def test_without_server_flags_a_402_raises_at_once() -> None:
    with LocalServer(client_config=Flags(), faults=_billing_faults(5)) as server:
        with _client(server, {"TINKEX_WIRE_DIALECT": "0.16"}) as client:
            training = client.create_lora_training_client(MODEL, rank=4)
            started = time.monotonic()
            with pytest.raises(tinkex.BillingError):
                training.forward_backward([DATUM], "cross_entropy").result(60)
            assert time.monotonic() - started < BILLING_PAUSE_INTERVAL_S
            assert [r.status for r in server.ledger.received("forward_backward")] == [402]
