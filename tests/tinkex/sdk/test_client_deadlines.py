"""``tinkex.Client(deadlines=...)`` over a real loopback LocalServer: the client's default reaches plain calls
(sampler creation, REST) as well as futures, the official budget (rounds after the policy's re-sends) applies to
plain writes by default, and a ``with deadlines(...)`` scope still wins over the client's default."""

from __future__ import annotations

import pickle
import time
from typing import Any

import pytest

import tinkex
from pristine_transport.deadlines import deadlines
from pristine_transport.policy import Deadlines, RetryBudget
from tinkex import types
from tinkex.testing import FaultRule, LocalServer

MODEL = "tinkex/fake-tiny"
PROMPT = types.ModelInput.from_ints([5, 6, 7])
PARAMS = types.SamplingParams(max_tokens=2, seed=1)
MAX_RETRIES = 10
"""The manifest's ``standard`` policy: one send and ten re-sends, then the budget's rounds (if any)."""


def _client(server: LocalServer, **kwargs: Any) -> tinkex.Client:
    return tinkex.Client(api_key="tml-deadlines", base_url=server.base_url, telemetry=False, **kwargs)


def _throttled(endpoint: str) -> FaultRule:
    """429 with a 10 ms retry-after, one more time than the policy re-sends: only a budget round gets through."""
    return FaultRule.retry_after(endpoint, retry_after_ms=10, count=MAX_RETRIES + 2)


def test_a_plain_write_gets_the_official_budget_by_default() -> None:
    faults = [_throttled("create_sampling_session")]
    with LocalServer(base_models=(MODEL,), long_poll_timeout=0.2, faults=faults) as server:
        client = _client(server)
        try:
            started = time.monotonic()
            sampler = client.create_sampling_client(base_model=MODEL).result(timeout=30)
            assert time.monotonic() - started < 10
            assert len(server.ledger.received("create_sampling_session")) == MAX_RETRIES + 3
            assert sampler.sample(PROMPT, 1, PARAMS).result(timeout=20).sequences
        finally:
            client.close()


def test_the_clients_deadlines_reach_plain_calls_and_a_scope_wins_over_them() -> None:
    faults = [_throttled("create_sampling_session"), _throttled("get_server_capabilities")]
    with LocalServer(base_models=(MODEL,), long_poll_timeout=0.2, faults=faults) as server:
        client = _client(server, deadlines=Deadlines(budget=RetryBudget(rounds=False)))
        try:
            with pytest.raises(tinkex.RateLimitError):
                client.create_sampling_client(base_model=MODEL).result(timeout=30)
            assert len(server.ledger.received("create_sampling_session")) == MAX_RETRIES + 1
            with deadlines(budget=RetryBudget()):  # the scope's budget (rounds) wins over the client's
                capabilities = client.create_rest_client().get_server_capabilities().result(timeout=30)
            assert capabilities.supported_models
            assert len(server.ledger.received("get_server_capabilities")) == MAX_RETRIES + 3
        finally:
            client.close()


def test_the_clients_no_progress_deadline_bounds_a_future() -> None:
    polls_fail = FaultRule(endpoint="retrieve_future", status=500, rate=1.0, future_endpoint="asample")
    with LocalServer(base_models=(MODEL,), long_poll_timeout=0.2, faults=[polls_fail]) as server:
        client = _client(server, deadlines=Deadlines(no_progress_s=1.5))
        try:
            sampler = client.create_sampling_client(base_model=MODEL).result(timeout=20)
            started = time.monotonic()
            with pytest.raises(tinkex.DeadlineExceededError) as caught:
                sampler.sample(PROMPT, 1, PARAMS).result(timeout=30)
            assert time.monotonic() - started < 10
            assert isinstance(caught.value, tinkex.TinkerError)
            assert caught.value.deadline == "no_progress" and caught.value.may_have_run
            assert caught.value.request_id == server.ledger.executions("asample")[0].request_id
            # A pickled sampler (another process's copy) keeps its client's deadlines.
            assert pickle.loads(pickle.dumps(sampler)).holder.config.deadlines == Deadlines(no_progress_s=1.5)
        finally:
            client.close()


def test_deadlines_must_be_a_deadlines() -> None:
    with pytest.raises(tinkex.ConfigurationError, match="Deadlines"):
        tinkex.Client(api_key="tml-deadlines", base_url="http://127.0.0.1:9", deadlines=300)  # type: ignore[arg-type]
