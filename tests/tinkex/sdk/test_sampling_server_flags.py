"""The server's sampling flags (``client/config``), each on and off, end to end against a real loopback LocalServer:
``sample_use_retrieve_futures`` (one batched poller per sampling session), ``sample_no_retries`` (an expired sample is
not sent again), ``sample_join_sampling_session`` (a copy asks the server for its clone number) and
``sample_enable_stuck_detection`` (the sampling policy's progress timeout); plus the pure decisions behind them."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import time
from typing import Any

import httpx
import msgspec
import pytest
from sdk_helpers import API_KEY, BASE_MODEL, server_client, wait_until

import tinkex
from pristine_transport.deadlines import DeadlineExceededError
from pristine_transport.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    FutureExpiredError,
)
from pristine_transport.manifest import ResubmitSpec
from pristine_transport.policy import Deadlines
from tinkex import types
from tinkex.config import load_tinker_manifest, resolve_config
from tinkex.holder import Holder
from tinkex.sampling_client import SEQ_ID_BLOCK, RetryConfig, create_sampling_client
from tinkex.session_poller import PollFailure, SessionPollError, poll_failure_verdict
from tinkex.testing import FaultRule, LocalServer
from tinkex.types import ClientConfigResponse as Flags
from tinkex.wire.sampling_flags import SampleRules, manifest_with_stuck_detection, sample_rules, stuck_detection

PROMPT = types.ModelInput.from_ints([1, 2, 3])
PARAMS = types.SamplingParams(max_tokens=3)
BATCHED = Flags(sample_use_retrieve_futures=True)
RESUBMIT = ResubmitSpec(max_resubmits=5, initial_delay_s=0.5)


def _sample_many(sampler: tinkex.SamplingClient, count: int) -> list[types.SampleResponse]:
    pending = [sampler.sample(PROMPT, 1, types.SamplingParams(max_tokens=3, seed=i)) for i in range(count)]
    return [future.result(30) for future in pending]


def _acknowledged(server: LocalServer) -> set[str]:
    """The request ids clients reported fetched through retrieve_futures (the server's record of them)."""
    return set(server.call(lambda api: api.batched_futures.retrieved))


# --- pure decisions ------------------------------------------------------------------------------------------------

RULES_TABLE = [
    # flags, always_retried (compute_logprobs), RetryConfig (max_resubmits, delay) -> rules
    (None, False, (None, None), SampleRules(max_resubmits=5, resubmit_delay_s=0.5, concurrency_cap=None)),
    (Flags(), False, (None, None), SampleRules(max_resubmits=5, resubmit_delay_s=0.5, concurrency_cap=2000)),
    (Flags(), False, (2, 0.01), SampleRules(max_resubmits=2, resubmit_delay_s=0.01, concurrency_cap=2000)),
    (Flags(sample_no_retries=True), False, (None, None), SampleRules(max_resubmits=0, concurrency_cap=None)),
    (Flags(sample_no_retries=True), False, (3, None), SampleRules(max_resubmits=0, concurrency_cap=None)),
    (Flags(sample_no_retries=True), True, (None, None), SampleRules(max_resubmits=5, concurrency_cap=2000)),
    (BATCHED, False, (None, None), SampleRules(batched_polling=True, max_resubmits=5, concurrency_cap=None)),
    (Flags(sample_join_sampling_session=True), False, (None, None),
     SampleRules(join_session=True, max_resubmits=5, concurrency_cap=2000)),
]


@pytest.mark.parametrize(("flags", "always_retried", "configured", "expected"), RULES_TABLE)
def test_sample_rules_follow_the_flags_the_manifest_and_the_retry_config(
    flags: Flags | None, always_retried: bool, configured: tuple[int | None, float | None], expected: SampleRules
) -> None:
    max_resubmits, delay = configured
    rules = sample_rules(
        flags, RESUBMIT, max_resubmits=max_resubmits, resubmit_delay_s=delay, always_retried=always_retried
    )
    assert rules == expected


def test_without_a_resubmit_rule_in_the_manifest_an_expiry_is_final() -> None:
    assert sample_rules(Flags(), None).max_resubmits == 0


@pytest.mark.parametrize(
    ("flags", "on"),
    [
        (None, True),
        (Flags(), True),
        (Flags(sample_enable_stuck_detection=False), False),
        (Flags(sample_no_retries=True), False),
    ],
)
def test_stuck_detection_lifts_the_sampling_progress_timeout_only_when_off(flags: Flags | None, on: bool) -> None:
    manifest = load_tinker_manifest()
    assert stuck_detection(flags) is on
    derived = manifest_with_stuck_detection(flags, manifest)
    timeout = derived.retry_policy_for("asample").progress_timeout_s  # type: ignore[union-attr]
    if on:
        assert derived is manifest and timeout == 7200.0
    else:
        assert timeout == math.inf
        assert derived.retry_policy_for("asample").max_in_flight == 1000  # type: ignore[union-attr]  # admission stays
        assert manifest.retry_policy_for("asample").progress_timeout_s == 7200.0  # type: ignore[union-attr]


def _status_error(status: int) -> APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/api/v1/retrieve_futures")
    return APIStatusError(f"HTTP {status}", response=httpx.Response(status, request=request), body=None)


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1/")), PollFailure.RETRY),
        (APITimeoutError(httpx.Request("POST", "http://127.0.0.1/")), PollFailure.RETRY),
        (_status_error(408), PollFailure.RETRY),
        (_status_error(409), PollFailure.RETRY),
        (_status_error(429), PollFailure.RETRY),
        (_status_error(503), PollFailure.RETRY),
        (_status_error(400), PollFailure.BAD_REQUEST),
        (_status_error(402), PollFailure.FATAL),
        (_status_error(401), PollFailure.FATAL),
        (_status_error(404), PollFailure.FATAL),
        (msgspec.ValidationError("bad answer"), PollFailure.FATAL),
    ],
)
def test_a_failed_poll_is_retried_or_final_as_officially(error: BaseException, verdict: PollFailure) -> None:
    assert poll_failure_verdict(error) is verdict


def test_the_manifest_says_an_expired_sample_is_submitted_again() -> None:
    future = load_tinker_manifest().endpoint("asample").future
    assert future is not None and future.resubmit_on_expiry == RESUBMIT
    assert load_tinker_manifest().futures.expiry_status == 410  # type: ignore[union-attr]
    assert RetryConfig().max_resubmits is None and RetryConfig().resubmit_delay_s is None  # the manifest's


# --- sample_use_retrieve_futures ---------------------------------------------------------------------------------


def test_batched_polling_on_one_poller_serves_every_sample_once() -> None:
    with LocalServer(client_config=BATCHED, long_poll_timeout=0.5, latency_by_endpoint={"asample": 0.3}) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
            results = _sample_many(sampler, 40)
            wait_until(lambda: len(_acknowledged(server)) == 40, what="every fetched result acknowledged")
        finally:
            client.close()
        executed = server.ledger.executions("asample")
        polls = server.ledger.received("retrieve_futures")
        fetches = server.ledger.received("retrieve_future")
        acknowledged = _acknowledged(server)
    sequence_ids = [r.sequences[0].sequence_id for r in results]
    assert len(set(sequence_ids)) == 40 and None not in sequence_ids  # each sample got its own answer
    assert len(executed) == 40 and len(fetches) == 40  # one fetch per sample: no per-sample long polls
    assert all(f.status == 200 for f in fetches)
    assert polls and all(p.status == 200 for p in polls)  # how many depends on how the completions bunch up
    assert all(p.headers.get("x-sdk-method") is None for p in polls)  # the poller serves no one call, as officially
    assert acknowledged == {e.request_id for e in executed}


def test_a_completion_reported_again_is_delivered_once() -> None:
    """The server reports the first sample done three times over: the sample takes it once, nothing is kept for a
    sample that will never ask, and the next sample is served as usual."""
    early = {"completions": [{"state": "finished", "request_id": "req-1"}], "cursor": 1}
    repeated = FaultRule(endpoint="retrieve_futures", status=200, body=early, count=3)
    with LocalServer(client_config=BATCHED, long_poll_timeout=0.3, faults=[repeated]) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
            first = sampler.sample(PROMPT, 1, PARAMS).result(20)
            wait_until(lambda: server.faults.fired(repeated) == 3, what="the repeated answers")
            second = sampler.sample(PROMPT, 1, PARAMS).result(20)
            pollers = list(sampler._pollers.values())
        finally:
            client.close()
        assert [e.request_id for e in server.ledger.executions("asample")] == ["req-1", "req-2"]
        assert len(server.ledger.received("retrieve_future")) == 2
    assert first.sequences and second.sequences
    assert len(pollers) == 1 and not pollers[0]._unclaimed and not pollers[0]._waiters


def test_a_large_result_announced_by_its_size_is_fetched_after_the_batch_says_done() -> None:
    with LocalServer(client_config=BATCHED, long_poll_timeout=0.3, metadata_only_threshold=16) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
            results = _sample_many(sampler, 3)
        finally:
            client.close()
        fetches = server.ledger.received("retrieve_future")
    assert all(r.sequences for r in results)
    # A metadata-only answer first, then the result. The completion carries the size already; fetching without the
    # metadata-only offer would spare a round trip, which the future resolver has no way to be told yet.
    assert 3 <= len(fetches) <= 6


def test_batched_polling_off_polls_each_sample_and_never_the_batch() -> None:
    with LocalServer(client_config=Flags(), long_poll_timeout=0.5, latency_by_endpoint={"asample": 0.3}) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
            assert len(_sample_many(sampler, 10)) == 10
        finally:
            client.close()
        assert server.ledger.received("retrieve_futures") == []
        assert len(server.ledger.received("retrieve_future")) >= 10


def test_batched_polling_rides_out_a_transient_failure() -> None:
    flaky = FaultRule(endpoint="retrieve_futures", status=503, count=2)
    with LocalServer(client_config=BATCHED, long_poll_timeout=0.3, faults=[flaky]) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
            assert len(_sample_many(sampler, 5)) == 5
        finally:
            client.close()
        statuses = [r.status for r in server.ledger.received("retrieve_futures")]
    assert statuses[:2] == [503, 503] and 200 in statuses


def test_a_poller_that_fails_for_good_fails_every_waiting_sample_and_a_new_one_serves_later_samples() -> None:
    missing = FaultRule(endpoint="retrieve_futures", status=404, rate=1.0)
    with LocalServer(
        client_config=BATCHED, long_poll_timeout=0.3, latency_by_endpoint={"asample": 0.3}, faults=[missing]
    ) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
            pending = [sampler.sample(PROMPT, 1, PARAMS) for _ in range(4)]
            failures = []
            for future in pending:
                with pytest.raises(SessionPollError) as failed:
                    future.result(20)
                failures.append(failed.value)
            executed = {e.request_id for e in server.ledger.executions("asample")}
            assert {f.request_id for f in failures} == executed  # each sample its own error, naming its request
            assert all(f.status_code == 404 and f.outcome == "ran" for f in failures)
            assert all(isinstance(f.__cause__, APIStatusError) for f in failures)
            server.faults.clear()
            assert sampler.sample(PROMPT, 1, PARAMS).result(20).sequences  # a new poller
        finally:
            client.close()


def test_a_poller_without_answers_for_the_no_progress_deadline_fails_its_samples() -> None:
    unreachable = FaultRule(endpoint="retrieve_futures", drop_connection=True, rate=1.0)
    with LocalServer(client_config=BATCHED, faults=[unreachable]) as server:
        client = server_client(server, deadlines=Deadlines(no_progress_s=2.5))
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError) as failed:
                sampler.sample(PROMPT, 1, PARAMS).result(30)
            assert 2.5 <= time.monotonic() - started < 10
        finally:
            client.close()
        (executed,) = server.ledger.executions("asample")
    assert failed.value.request_id == executed.request_id and failed.value.outcome == "ran"
    assert "made no progress" in str(failed.value)


def test_an_expired_sample_is_submitted_again_under_batched_polling() -> None:
    expire = FaultRule.expired(future_endpoint="asample")
    with LocalServer(client_config=BATCHED, long_poll_timeout=0.3, faults=[expire]) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(
                base_model=BASE_MODEL, retry_config=RetryConfig(resubmit_delay_s=0.01)
            ).result()
            assert sampler.sample(PROMPT, 1, PARAMS).result(20).sequences
        finally:
            client.close()
        assert [e.expired for e in server.ledger.executions("asample")] == [True, False]
        assert server.ledger.duplicates_executed() == []


def test_closing_the_client_fails_the_samples_waiting_on_the_poller_and_stops_it() -> None:
    with LocalServer(client_config=BATCHED, long_poll_timeout=0.5, latency_by_endpoint={"asample": 30.0}) as server:
        client = server_client(server)
        sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
        pending = [sampler.sample(PROMPT, 1, PARAMS) for _ in range(3)]
        submitted = lambda: [r.status for r in server.ledger.received("asample")] == [200] * 3  # noqa: E731
        wait_until(submitted, what="the three submits answered")
        wait_until(lambda: len(server.ledger.received("retrieve_futures")) >= 1, what="the poller's first poll")
        client.close()
        for future in pending:
            with pytest.raises(SessionPollError, match="the client was closed while the sample waited"):
                future.result(10)
        polls = len(server.ledger.received("retrieve_futures"))
        time.sleep(1.2)  # longer than two long polls: a poller still running would have polled again
        assert len(server.ledger.received("retrieve_futures")) == polls


def test_closing_the_client_fails_a_sample_whose_submit_is_in_flight_with_a_typed_error() -> None:
    held = FaultRule(endpoint="asample", delay=2.0, count=1)
    with LocalServer(client_config=BATCHED, faults=[held]) as server:
        client = server_client(server)
        sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
        pending = sampler.sample(PROMPT, 1, PARAMS)
        wait_until(lambda: len(server.ledger.received("asample")) == 1, what="the submit reaching the server")
        client.close()
        with pytest.raises(ClientClosedError, match="client was closed before this request got its answer") as closed:
            pending.result(10)
        assert closed.value.outcome == "may_have_run"  # the server had it: it may run


def test_async_samples_on_a_users_loop_use_that_loops_poller() -> None:
    with LocalServer(client_config=BATCHED, long_poll_timeout=0.3, latency_by_endpoint={"asample": 0.2}) as server:

        async def main() -> list[types.SampleResponse]:
            client = server_client(server)
            try:
                sampler = await client.create_sampling_client_async(base_model=BASE_MODEL)
                return await asyncio.gather(*(sampler.sample_async(PROMPT, 1, PARAMS) for _ in range(12)))
            finally:
                await client.aclose()

        results = asyncio.run(main())
        assert len(results) == 12
        assert len(server.ledger.received("retrieve_future")) == 12  # one fetch each, after the batch said done
        assert server.ledger.received("retrieve_futures")


# --- sample_no_retries -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("no_retries", "submits"), [(True, 1), (False, 2)])
def test_no_retries_sends_an_expired_sample_no_second_time(no_retries: bool, submits: int) -> None:
    expire = FaultRule.expired(future_endpoint="asample")
    with LocalServer(client_config=Flags(sample_no_retries=no_retries), long_poll_timeout=0.2, faults=[expire]) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(
                base_model=BASE_MODEL, retry_config=RetryConfig(resubmit_delay_s=0.01)
            ).result()
            if no_retries:
                with pytest.raises(FutureExpiredError):
                    sampler.sample(PROMPT, 1, PARAMS).result(20)
            else:
                assert sampler.sample(PROMPT, 1, PARAMS).result(20).sequences
        finally:
            client.close()
        assert len(server.ledger.executions("asample")) == submits


def test_no_retries_leaves_compute_logprobs_retried_as_officially() -> None:
    expire = FaultRule.expired(future_endpoint="asample")
    flags = Flags(sample_no_retries=True)
    with LocalServer(client_config=flags, long_poll_timeout=0.2, faults=[expire]) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(
                base_model=BASE_MODEL, retry_config=RetryConfig(resubmit_delay_s=0.01)
            ).result()
            assert len(sampler.compute_logprobs(PROMPT).result(20)) == 3
        finally:
            client.close()
        assert len(server.ledger.executions("asample")) == 2


# --- sample_join_sampling_session --------------------------------------------------------------------------------


@pytest.mark.parametrize("join", [True, False])
def test_copies_take_their_clone_number_from_the_server_only_when_told(join: bool) -> None:
    flags = Flags(sample_join_sampling_session=join, sample_use_retrieve_futures=join)
    with LocalServer(client_config=flags, long_poll_timeout=0.3) as server:
        client = server_client(server)
        copies: list[tinkex.SamplingClient] = []
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
            assert sampler.sample(PROMPT, 1, PARAMS).result(20).sequences
            handle = sampler.get_sampler_handle()
            copies = [tinkex.SamplingClient.from_sampler_handle(handle, api_key=API_KEY) for _ in range(2)]
            for copy in copies:
                assert len(_sample_many(copy, 3)) == 3
        finally:
            for copy in copies:
                copy.holder.close()
            client.close()
        blocks = sorted({e.seq_id // SEQ_ID_BLOCK for e in server.ledger.executions("asample")})  # type: ignore[operator]
        joins = server.ledger.received("join_sampling_session")
        assert len(server.ledger.executions("asample")) == 7
        assert server.ledger.duplicates_executed() == []
    if join:
        assert blocks == [0, 1, 2] and len(joins) == 2  # the original is 0; each copy asked once
        assert len(server.ledger.received("retrieve_future")) == 7  # each clone polled its own completions
    else:
        assert len(blocks) == 3 and blocks[0] == 0 and joins == []


def _child_samples(queue: Any, sampler: tinkex.SamplingClient) -> None:
    try:
        queue.put([len(sampler.sample(PROMPT, 1, PARAMS).result(30).sequences) for _ in range(2)])
    except BaseException as exc:  # the parent reports what went wrong in the child
        queue.put(repr(exc))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_joins_the_session_and_polls_its_own_clone() -> None:
    flags = Flags(sample_join_sampling_session=True, sample_use_retrieve_futures=True)
    with LocalServer(client_config=flags, long_poll_timeout=0.3) as server:
        client = server_client(server)
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
            assert sampler.sample(PROMPT, 1, PARAMS).result(20).sequences
            context = multiprocessing.get_context("fork")
            queue = context.Queue()
            child = context.Process(target=_child_samples, args=(queue, sampler))
            child.start()
            answer = queue.get(timeout=60)
            child.join(60)
            assert answer == [1, 1], answer
            assert sampler.sample(PROMPT, 1, PARAMS).result(20).sequences  # the parent's poller still serves it
        finally:
            client.close()
        blocks = [e.seq_id // SEQ_ID_BLOCK for e in server.ledger.executions("asample")]  # type: ignore[operator]
        assert sorted(blocks) == [0, 0, 1, 1] and len(server.ledger.received("join_sampling_session")) == 1
        assert server.ledger.duplicates_executed() == []


# --- sample_enable_stuck_detection --------------------------------------------------------------------------------


def _holder_with_progress_timeout(server: LocalServer, progress_timeout_s: float, no_progress_s: float) -> Holder:
    """A client whose sampling policy counts a sample stuck after ``progress_timeout_s`` without progress (the
    manifest says 7200 s), and whose own deadline gives up after ``no_progress_s``."""
    manifest = load_tinker_manifest()
    sampling = msgspec.structs.replace(manifest.retry_policies["sampling"], progress_timeout_s=progress_timeout_s)
    manifest = msgspec.structs.replace(manifest, retry_policies={**manifest.retry_policies, "sampling": sampling})
    config = resolve_config(
        api_key=API_KEY, base_url=server.base_url, deadlines=Deadlines(no_progress_s=no_progress_s, failed_attempts=None)
    )
    return Holder(config, manifest, env={})


@pytest.mark.parametrize("detection", [True, False])
def test_stuck_detection_fails_a_stalled_sample_only_when_on(detection: bool) -> None:
    stalled = FaultRule(endpoint="asample", status=503, rate=1.0)
    flags = Flags(sample_enable_stuck_detection=detection)
    with LocalServer(client_config=flags, faults=[stalled]) as server:
        holder = _holder_with_progress_timeout(server, progress_timeout_s=1.0, no_progress_s=4.0)
        try:
            sampler = holder.runtime.run(create_sampling_client(holder, base_model=BASE_MODEL))
            started = time.monotonic()
            with pytest.raises(APITimeoutError) as failed:
                sampler.sample(PROMPT, 1, PARAMS).result(30)
            waited = time.monotonic() - started
        finally:
            holder.close()
    if detection:
        assert "Requests appear to be stuck" in str(failed.value) and waited < 2.5
    else:  # nothing counted it stuck after 1 s: it went on until the client's own no-progress deadline
        assert isinstance(failed.value, DeadlineExceededError) and failed.value.deadline == "no_progress"
        assert "stuck" not in str(failed.value) and waited > 1.2  # past the progress timeout, which did not fire
