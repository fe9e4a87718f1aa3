"""What both client-cost benchmark scripts share, standard library only: the server subprocess, the workload
sizes, the CPU and memory probes, and the worker command line (the workloads themselves are in ``_workloads.py``).

``bench_client_cpu.py`` (tinkex, the repo's venv) and ``official_sdk_cpu.py`` (the official ``tinker`` SDK, its own
venv) both import this module, so both SDKs run the same workload sizes and are measured the same way. The server
always runs in a separate process with the repo's venv python (``REPO_PYTHON``): only client CPU is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "API_KEY",
    "BASE_MODEL",
    "REPO",
    "REPO_PYTHON",
    "SIZES",
    "Measurement",
    "RssPeak",
    "Sizes",
    "Workload",
    "local_server",
    "measure",
    "measure_async",
    "traced_peak_mb",
    "worker_main",
]

REPO = Path(__file__).resolve().parents[1]
REPO_PYTHON = REPO / ".venv" / "bin" / "python"
API_KEY = "tml-bench"
BASE_MODEL = "Qwen/Qwen3-8B"  # one of tinkex.testing.config.DEFAULT_BASE_MODELS
_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Sizes:
    """The workload, identical for every SDK. ``train_ops`` counts requests: ``train_ops / 2`` steps of
    forward_backward + optim_step. ``inflight_latency_s`` must exceed the time a client needs to submit
    ``inflight`` samples, or they never all pile up."""

    train_ops: int = 200
    batch: int = 8
    datum_tokens: int = 64
    samples: int = 300
    prompt_tokens: int = 32
    max_tokens: int = 16
    warmup: int = 5
    inflight: int = 256
    inflight_latency_s: float = 2.0


SIZES = Sizes()


# server ------------------------------------------------------------------------------------------------------
@contextmanager
def local_server(latency: float = 0.0, python: Path | str | None = None) -> Iterator[str]:
    """Start ``python -m tinkex.testing`` on a free 127.0.0.1 port and yield its base URL; stop it on exit.

    ``latency`` is the seconds until a future's result is ready (``--latency``): 0 for CPU runs (one poll per
    operation), ``SIZES.inflight_latency_s`` to make samples pile up for memory runs.
    """
    interpreter = str(python or (REPO_PYTHON if REPO_PYTHON.exists() else sys.executable))
    command = [interpreter, "-m", "tinkex.testing", "--port", "0", "--latency", str(latency)]
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: nobody reads it while the server runs
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            yield _first_line(process, stderr)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _first_line(process: subprocess.Popen[str], stderr: Any) -> str:
    """The base URL the server prints on its first stdout line, or an error with the exit code and stderr's tail."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(_START_TIMEOUT_S)
    line = process.stdout.readline().strip() if ready else ""
    if line.startswith("http"):
        return line
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        pass
    stderr.seek(0)
    said = stderr.read()[-1500:]
    what = f"first line {line!r}" if ready else f"no URL within {_START_TIMEOUT_S} s"
    raise RuntimeError(f"local server did not start (exit code {process.poll()}, {what}); stderr: {said}")


# probes ------------------------------------------------------------------------------------------------------
class CallCounter:
    """Python function calls in every thread of this process while ``counting``: installed before the SDK starts
    its threads (``threading.setprofile`` reaches only threads started afterwards). Deterministic where CPU time is
    not, at the price of running everything several times slower, so a counted run reports no CPU figures."""

    def __init__(self) -> None:
        self.calls = 0
        self.counting = False

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call" and self.counting:
            self.calls += 1

    def install(self) -> None:
        threading.setprofile(self._hook)
        sys.setprofile(self._hook)


_COUNTER: CallCounter | None = None
"""Set by ``worker_main --count-calls``; ``measure`` / ``measure_async`` then count the timed region's calls."""


@dataclass(frozen=True)
class Measurement:
    ops: int
    cpu_s: float
    wall_s: float
    calls: int | None = None

    def as_dict(self) -> dict[str, float]:
        if self.calls is not None:
            return {"ops": self.ops, "calls_per_op": self.calls / self.ops}
        return {
            "ops": self.ops,
            "cpu_ms_per_op": 1000 * self.cpu_s / self.ops,
            "wall_ms_per_op": 1000 * self.wall_s / self.ops,
            "cpu_s": self.cpu_s,
            "wall_s": self.wall_s,
        }


@contextmanager
def _counted() -> Iterator[list[int]]:
    counted: list[int] = []
    if _COUNTER is None:
        yield counted
        return
    _COUNTER.calls, _COUNTER.counting = 0, True
    try:
        yield counted
    finally:
        _COUNTER.counting = False
        counted.append(_COUNTER.calls)


def measure(warmup: Callable[[], object], timed: Callable[[], object], ops: int) -> Measurement:
    """Process CPU (every thread of this process, so the SDK's background loop counts) and wall time of ``timed``."""
    warmup()
    cpu, wall = time.process_time(), time.perf_counter()
    with _counted() as calls:
        timed()
    return Measurement(ops, time.process_time() - cpu, time.perf_counter() - wall, calls[0] if calls else None)


async def measure_async(
    warmup: Callable[[], Awaitable[object]], timed: Callable[[], Awaitable[object]], ops: int
) -> Measurement:
    await warmup()
    cpu, wall = time.process_time(), time.perf_counter()
    with _counted() as calls:
        await timed()
    return Measurement(ops, time.process_time() - cpu, time.perf_counter() - wall, calls[0] if calls else None)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssPeak:
    """Highest resident set size while the ``with`` block runs, sampled every ``interval_s`` by a thread."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-peak", daemon=True)
        self.baseline_bytes = 0
        self.peak_bytes = 0

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.peak_bytes = max(self.peak_bytes, _rss_bytes())

    def __enter__(self) -> RssPeak:
        self.baseline_bytes = self.peak_bytes = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, _rss_bytes())

    def as_dict(self) -> dict[str, float]:
        mib = 1024 * 1024
        return {
            "rss_baseline_mb": self.baseline_bytes / mib,
            "rss_peak_mb": self.peak_bytes / mib,
            "rss_inflight_mb": (self.peak_bytes - self.baseline_bytes) / mib,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


async def traced_peak_mb(batch: Callable[[], Awaitable[object]]) -> float:
    """Peak Python-heap growth (tracemalloc) while ``batch`` runs; allocations outside Python's allocator (a Rust
    transport's buffers) are invisible here, which is why RSS is reported too."""
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        await batch()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - start) / (1024 * 1024)


# worker command line -----------------------------------------------------------------------------------------
Workload = Callable[[str], dict[str, Any]]
"""Runs one workload against the server at the given base URL and returns its numbers."""


def worker_main(workloads: dict[str, Workload], argv: list[str] | None = None) -> int:
    """``--workload NAME --base-url URL``: run one workload in this (fresh) process and print its numbers as one
    JSON line. Without ``--base-url`` the worker starts its own server (latency chosen for the workload)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", choices=sorted(workloads), required=True)
    parser.add_argument("--base-url", help="a running local server (default: start one)")
    parser.add_argument("--count-calls", action="store_true", help="report Python calls per op instead of CPU")
    args = parser.parse_args(argv)
    if args.count_calls:
        global _COUNTER
        _COUNTER = CallCounter()
        _COUNTER.install()
    if args.base_url:
        print(json.dumps(workloads[args.workload](args.base_url)), flush=True)
        return 0
    latency = SIZES.inflight_latency_s if args.workload == "inflight" else 0.0
    with local_server(latency) as url:
        print(json.dumps(workloads[args.workload](url)), flush=True)
    return 0
