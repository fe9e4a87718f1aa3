"""A ``SamplingClient`` handed to 8 worker processes at once (``multiprocessing`` fork and spawn,
``ProcessPoolExecutor``): every worker joins the parent's session (no new one), every sample runs exactly once on the
server, the answers come back to the parent, and the parent closing its client mid-way breaks nothing.

The local server runs in a thread of this process; the workers are real processes, clients of it over TCP. Every
wait is bounded: a worker that hangs fails the test and is killed, it never holds the suite.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from fanout_workers import (
    MODEL,
    SAMPLES_PER_WORKER,
    WORKER_DEADLINE_S,
    Rollout,
    prompt_text,
    rollout,
    rollout_into_queue,
    sample_after,
    sampling_params,
)

import tinkex
from tinkex import types
from tinkex.sampling_client import SamplingClient
from tinkex.testing import LocalServer

WORKERS = 8
SAMPLE_LATENCY_S = 0.15
"""Each sample's future resolves this late, so the parent's close lands while workers are mid-sample."""
ALL_DONE_S = 120.0
"""The whole fan-out's deadline (8 spawned interpreters importing tinkex on a loaded 2-core machine included)."""

START_METHODS = [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(base_models=(MODEL,), latency_by_endpoint={"asample": SAMPLE_LATENCY_S}) as running:
        yield running


@pytest.fixture
def parent(server: LocalServer) -> Iterator[tuple[tinkex.Client, SamplingClient]]:
    client = tinkex.Client(api_key="tml-fanout", base_url=server.base_url, telemetry=False)
    try:
        sampler = client.create_sampling_client(base_model=MODEL)
        sampler.sample(types.ModelInput.from_ints([1, 2]), 1, types.SamplingParams(max_tokens=2)).result(timeout=30)
        yield client, sampler
    finally:
        client.close()


def _wait_for_samples(server: LocalServer, count: int, deadline_s: float) -> None:
    """Until the server has received ``count`` samples (the workers are under way)."""
    deadline = time.monotonic() + deadline_s
    while len(server.ledger.received("asample")) < count:
        assert time.monotonic() < deadline, f"the workers sent {len(server.ledger.received('asample'))} samples"
        time.sleep(0.02)


def _run_processes(method: str, sampler: SamplingClient, on_started: Callable[[], None]) -> list[Rollout]:
    """8 ``multiprocessing.Process`` workers (fork: the client is inherited; spawn: pickled); their rollouts."""
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    processes = [
        context.Process(target=rollout_into_queue, args=(queue, sampler, worker, SAMPLES_PER_WORKER), daemon=True)
        for worker in range(WORKERS)
    ]
    deadline = time.monotonic() + ALL_DONE_S
    try:
        for process in processes:
            process.start()
        on_started()
        reports = [queue.get(timeout=max(0.1, deadline - time.monotonic())) for _ in processes]
        for process in processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
        assert [process.exitcode for process in processes] == [0] * WORKERS
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
    failures = [report for report in reports if not isinstance(report, Rollout)]
    assert not failures, failures
    return reports


@contextmanager
def _bounded_pool(method: str) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """A ``ProcessPoolExecutor`` whose exit never waits for a hung worker: it is killed."""
    pool = concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context(method))
    try:
        yield pool
    finally:
        processes = list((pool._processes or {}).values())  # noqa: SLF001 - to kill what shutdown would wait for
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


def _run_pool(method: str, sampler: SamplingClient, on_started: Callable[[], None]) -> list[Rollout]:
    """8 tasks on a ``ProcessPoolExecutor`` of 8 processes (the client pickled into each task)."""
    with _bounded_pool(method) as pool:
        futures = [pool.submit(rollout, sampler, worker) for worker in range(WORKERS)]
        on_started()
        deadline = time.monotonic() + ALL_DONE_S
        return [future.result(timeout=max(0.1, deadline - time.monotonic())) for future in futures]


def _check_every_sample_ran_once(
    server: LocalServer, sampler: SamplingClient, rollouts: list[Rollout], warmups: int
) -> None:
    """The server's ledger: one session, each worker sample executed once (none answered from the replay cache,
    none re-sent), and the answers the parent got are those of the prompts it asked (not another worker's)."""
    ledger = server.ledger
    assert sorted(r.worker for r in rollouts) == list(range(WORKERS))
    assert all(r.pid != os.getpid() for r in rollouts)
    assert all(len(r.responses) == SAMPLES_PER_WORKER for r in rollouts)
    # One session: the parent's, which every worker joined.
    session_id = sampler.holder.known_session_id()
    assert session_id is not None
    assert server.call(lambda api: list(api.registry.sessions)) == [session_id]
    assert len(ledger.received("create_session")) == 1
    assert {r.session_id for r in rollouts} == {session_id}
    assert {r.sampling_session_id for r in rollouts} == {sampler.sampling_session_id}
    # Exactly once: as many executions as samples asked for, each received once, no identity run twice.
    executions = ledger.executions("asample")
    assert len(executions) == warmups + WORKERS * SAMPLES_PER_WORKER
    assert len(ledger.received("asample")) == len(executions)
    assert ledger.duplicates_executed() == []
    assert len({(e.seq_scope, e.seq_id) for e in executions}) == len(executions)
    assert {e.session_id for e in executions} == {session_id}
    # The answers back in the parent are each prompt's own: the same seeded sample made here agrees.
    tokenizer = sampler.get_tokenizer()
    for r in rollouts:
        assert r.prompts == [prompt_text(r.worker, index) for index in range(SAMPLES_PER_WORKER)]
    checked = [(r.worker, index, r.responses[index]) for r in rollouts for index in (0, SAMPLES_PER_WORKER - 1)]
    for worker, index, response in checked:
        prompt = types.ModelInput.from_ints(tokenizer.encode(prompt_text(worker, index)))
        expected = sampler.sample(prompt, 1, sampling_params(worker, index)).result(timeout=WORKER_DEADLINE_S)
        assert response.sequences[0].tokens == expected.sequences[0].tokens, (worker, index)


@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("runner", [_run_processes, _run_pool], ids=["Process", "ProcessPoolExecutor"])
def test_eight_workers_sample_each_prompt_once_while_the_parent_closes_its_client(
    server: LocalServer,
    parent: tuple[tinkex.Client, SamplingClient],
    method: str,
    runner: Callable[[str, SamplingClient, Callable[[], None]], list[Rollout]],
) -> None:
    client, sampler = parent
    warmups = len(server.ledger.executions("asample"))
    sent_before = len(server.ledger.received("asample"))

    def close_parent_mid_sample() -> None:
        # Once the workers have samples under way (none has finished its share: each sample takes 0.15 s), the
        # parent releases its client: its heartbeat, telemetry and connections. The workers go on.
        _wait_for_samples(server, sent_before + WORKERS, ALL_DONE_S)
        client.close()

    rollouts = runner(method, sampler, close_parent_mid_sample)
    assert client._holder.closed  # noqa: SLF001 - the parent's client really was closed while they sampled
    # The parent's closed client cannot check the answers: a copy of the sampler (same session) does.
    checker = SamplingClient.from_sampler_handle(sampler.get_sampler_handle(), api_key="tml-fanout")
    try:
        _check_every_sample_ran_once(server, checker, rollouts, warmups)
    finally:
        checker.holder.close()


@pytest.mark.skipif("fork" not in START_METHODS, reason="needs the fork start method")
def test_finishing_the_session_in_the_parent_ends_the_workers_sampling_with_a_clear_error(
    server: LocalServer, parent: tuple[tinkex.Client, SamplingClient]
) -> None:
    """``close("success")`` (or leaving ``with tinkex.Client()``) finishes the session on the server: from then on
    it takes no new work, the workers' included. What a worker sees is an error naming it, not a hang."""
    client, sampler = parent
    with _bounded_pool("fork") as pool:
        late = pool.submit(sample_after, sampler, 1.0)
        client.close("success").result(timeout=30)
        outcome = late.result(timeout=ALL_DONE_S)
    assert outcome != "ok"
    assert "410" in outcome or "finished" in outcome, outcome
