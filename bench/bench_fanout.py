"""Samples per second with 1, 2, 4 and 8 worker processes sampling against one LocalServer (docs/fanout.md).

The parent starts a ``tinkex.testing.LocalServer`` (in a thread of its own; the parent is idle while the workers
run), makes one ``SamplingClient`` and hands it to N worker processes (fork: inherited; spawn: pickled). Each worker
warms up with one sample, waits at a barrier, then sends its share of samples with ``--in-flight`` of them
outstanding at a time, as a rollout worker does with a group of prompts. The figure is all workers' samples over the
wall time from the barrier to the last answer; the server's ledger then confirms each sample ran exactly once.

    .venv/bin/python bench/bench_fanout.py                       # 1 2 4 8 workers, fork
    .venv/bin/python bench/bench_fanout.py --workers 8 --start-method spawn --json

Everything (server, parent, workers) shares this machine's cores, so the figure is the local stack's throughput,
bounded by the server's single event loop and the CPU it gets; it is not the Tinker service's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

MODEL = "tinkex/fake-tiny"
_DEADLINE_S = 600.0


@dataclass(frozen=True)
class Run:
    workers: int
    samples: int
    wall_s: float
    samples_per_s: float
    executed_once: bool
    server_cpu_ms_per_sample: float
    """CPU of the parent process (the server's thread; the parent itself only waits) per sample."""
    client_cpu_ms_per_sample: float
    """CPU of the worker processes per sample."""


def _worker(sampler: Any, barrier: Any, results: Any, samples: int, in_flight: int, max_tokens: int) -> None:
    from tinkex import types

    try:
        prompt = types.ModelInput.from_ints(list(range(1, 17)))
        params = types.SamplingParams(max_tokens=max_tokens, temperature=1.0)
        sampler.sample(prompt, 1, params).result(timeout=60)  # warm: connection, shadow holder, imports
        barrier.wait(timeout=_DEADLINE_S)
        cpu = time.process_time()
        pending: list[Any] = []
        for _ in range(samples):
            if len(pending) >= in_flight:
                pending.pop(0).result(timeout=_DEADLINE_S)
            pending.append(sampler.sample(prompt, 1, params))
        for future in pending:
            future.result(timeout=_DEADLINE_S)
        # CLOCK_MONOTONIC: one clock for every process of the machine
        results.put(("done", (time.monotonic(), time.process_time() - cpu)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def measure(workers: int, samples_per_worker: int, in_flight: int, max_tokens: int, start_method: str) -> Run:
    import tinkex
    from tinkex import types
    from tinkex.testing import LocalServer

    context = multiprocessing.get_context(start_method)
    with LocalServer(base_models=(MODEL,)) as server:
        client = tinkex.Client(api_key="tml-bench", base_url=server.base_url, telemetry=False)
        try:
            sampler = client.create_sampling_client(base_model=MODEL)
            sampler.sample(types.ModelInput.from_ints([1]), 1, types.SamplingParams(max_tokens=1)).result(timeout=60)
            before = len(server.ledger.executions("asample"))
            barrier, results = context.Barrier(workers + 1), context.Queue()
            processes = [
                context.Process(
                    target=_worker,
                    args=(sampler, barrier, results, samples_per_worker, in_flight, max_tokens),
                    daemon=True,
                )
                for _ in range(workers)
            ]
            try:
                for process in processes:
                    process.start()
                barrier.wait(timeout=_DEADLINE_S)
                started, server_cpu = time.monotonic(), time.process_time()
                reports = [results.get(timeout=_DEADLINE_S) for _ in processes]
                server_cpu = time.process_time() - server_cpu
            finally:
                for process in processes:
                    process.join(timeout=30)
                    if process.is_alive():
                        process.kill()
            errors = [detail for kind, detail in reports if kind == "error"]
            if errors:
                raise RuntimeError(f"workers failed: {errors}")
            wall = max(end for _, (end, _cpu) in reports) - started
            client_cpu = sum(cpu for _, (_end, cpu) in reports)
            total = workers * samples_per_worker
            ledger = server.ledger
            executed_once = (
                len(ledger.executions("asample")) - before == total + workers  # + each worker's warm-up
                and ledger.duplicates_executed() == []
            )
            return Run(
                workers,
                total,
                round(wall, 3),
                round(total / wall, 1),
                executed_once,
                round(1000 * server_cpu / total, 2),
                round(1000 * client_cpu / total, 2),
            )
        finally:
            client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8], help="(default: %(default)s)")
    parser.add_argument("--samples", type=int, default=256, help="samples in all, split among the workers")
    parser.add_argument("--in-flight", type=int, default=4, help="outstanding samples per worker (default: 4)")
    parser.add_argument("--max-tokens", type=int, default=8, help="(default: %(default)s)")
    parser.add_argument("--start-method", default="fork", choices=multiprocessing.get_all_start_methods())
    parser.add_argument("--repeat", type=int, default=1, help="runs per worker count; the median is kept (default: 1)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    runs = []
    for workers in args.workers:
        tries = [
            measure(workers, max(1, args.samples // workers), args.in_flight, args.max_tokens, args.start_method)
            for _ in range(args.repeat)
        ]
        run = sorted(tries, key=lambda found: found.samples_per_s)[len(tries) // 2]
        run = replace(run, executed_once=all(found.executed_once for found in tries))
        runs.append(run)
        if not args.json:
            print(
                f"{run.workers} worker(s): {run.samples} samples in {run.wall_s:.2f} s = {run.samples_per_s:.1f} "
                f"samples/s; CPU per sample: server {run.server_cpu_ms_per_sample:.1f} ms, workers "
                f"{run.client_cpu_ms_per_sample:.1f} ms (each ran once: {run.executed_once})",
                flush=True,
            )
    if args.json:
        print(json.dumps({"start_method": args.start_method, "repeat": args.repeat, "cpus": os.cpu_count(),
                          "load": os.getloadavg(), "runs": [asdict(run) for run in runs]}))
    return 0 if all(run.executed_once for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
