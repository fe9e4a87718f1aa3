"""A ``SamplingClient`` handed to 8 worker processes at once (``multiprocessing`` fork and spawn,
``ProcessPoolExecutor``): every worker joins the parent's session (no new one), every sample runs exactly once on the
server, the answers come back to the parent, and the parent closing its client mid-way breaks nothing.

The local server runs in a thread of this process; the workers are real processes, clients of it over TCP. Every
wait is bounded: a worker that hangs fails the test and is killed, it never holds the suite.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from fanout_checks import ALL_DONE_S, WORKERS, check_every_sample_ran_once, copy_of, wait_for_samples
from fanout_workers import (
    SAMPLES_PER_WORKER,
    Rollout,
    rollout,
    rollout_into_queue,
    sample_when_told,
)

import tinkex
from tinkex.sampling_client import SamplingClient
from tinkex.testing import LocalServer

START_METHODS = [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]


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
        wait_for_samples(server, sent_before + WORKERS, ALL_DONE_S)
        client.close()

    rollouts = runner(method, sampler, close_parent_mid_sample)
    assert client._holder.closed  # noqa: SLF001 - the parent's client really was closed while they sampled
    with copy_of(sampler) as checker:  # the parent's own client is closed
        check_every_sample_ran_once(server, checker, rollouts, warmups)


@pytest.mark.skipif("fork" not in START_METHODS, reason="needs the fork start method")
def test_finishing_the_session_in_the_parent_ends_the_workers_sampling_with_a_clear_error(
    server: LocalServer, parent: tuple[tinkex.Client, SamplingClient]
) -> None:
    """``close("success")`` (or leaving ``with tinkex.Client()``) finishes the session on the server: from then on
    it takes no new work, the workers' included. What a worker sees is an error naming it, not a hang."""
    client, sampler = parent
    context = multiprocessing.get_context("fork")
    go, queue = context.Event(), context.Queue()
    worker = context.Process(target=sample_when_told, args=(queue, sampler, go), daemon=True)
    worker.start()
    try:
        client.close("success").result(timeout=30)
        go.set()
        outcome = queue.get(timeout=ALL_DONE_S)
    finally:
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
    assert outcome != "ok"
    assert "410" in outcome or "finished" in outcome, outcome
