"""The benchmark gate: ratios against committed baselines; exits 1 when one got worse than its baseline allows.

Absolute times on a shared 2-core machine swing by tens of percent, so every number here is a ratio of two things
measured in the same conditions, in alternating rounds:

- in this process (``--quick`` measures only these), each against a bare ``httpx.AsyncClient`` on the *same* base
  transport, round for round (tinkex, bare, bare, tinkex, ...), CPU time of the whole process (every thread):
  - ``stack``: 200 requests through a full manifest stack on ``httpx.MockTransport`` (``bench_stack.py``'s
    manifest) against the bare client on the same mock transport;
  - ``sample``: ``SamplingClient.sample(...).result()`` against the bare client sending the same two requests
    (``asample``, ``retrieve_future``) to the same local server (a subprocess, so its CPU is not counted);
  - ``train``: ``forward_backward`` + ``optim_step`` submitted back to back, both awaited, against the bare client
    posting pre-encoded JSON bodies and retrieving both futures;
  each also as Python function calls per operation (``*_calls``, cProfile over the caller's and tinkex's loop
  thread): deterministic, so a slowdown made of Python code shows there even when CPU time is noisy.
- in fresh processes (the full run only): tinkex's CPU per operation against each official SDK's (0.16.1, 0.38.0,
  each in its own venv, both against the local server), one fresh process per SDK and round, alternating; and
  tinkex's Python calls per operation against theirs (``*_calls_vs_*``, every thread counted, one run each).

Baselines are in ``bench/baselines.json`` (ratios, lower is better). A ratio fails when it is above its baseline by
more than the tolerance (10 % for the full run, 25 % for ``--quick``, ``.ci/run``'s under-a-minute run).

    .venv/bin/python bench/gate.py            # full: in-process ratios + official SDKs, 10 %
    .venv/bin/python bench/gate.py --quick    # in-process ratios only, 25 %, under a minute
    .venv/bin/python bench/gate.py --update   # measure and rewrite the baselines (after an accepted change)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import httpx  # noqa: E402
import msgspec  # noqa: E402
from _local_server import API_KEY, BASE_MODEL, REPO, local_server  # noqa: E402

BASELINES = BENCH / "baselines.json"
FULL_TOLERANCE = 0.10
QUICK_TOLERANCE = 0.25
OFFICIAL_VENVS = REPO / "tests" / "official" / ".venv"
OFFICIAL_VERSIONS = ("0.16.1", "0.38.0")
OFFICIAL_WORKLOADS = ("sample_sync", "train_sync")


# decisions (pure) --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    metric: str
    measured: float
    baseline: float | None
    tolerance: float

    @property
    def limit(self) -> float | None:
        return None if self.baseline is None else self.baseline * (1 + self.tolerance)

    @property
    def failed(self) -> bool:
        return self.limit is not None and self.measured > self.limit

    def line(self) -> str:
        if self.baseline is None:
            return f"{self.metric:34} {self.measured:7.3f}   (no baseline)"
        verdict = "FAIL" if self.failed else "ok"
        change = self.measured / self.baseline - 1
        return (f"{self.metric:34} {self.measured:7.3f}   baseline {self.baseline:7.3f}   {change:+6.1%}   "
                f"limit {self.limit:7.3f} (+{self.tolerance:.0%})   {verdict}")


def judge(
    measured: dict[str, float], baselines: dict[str, float], tolerance: float, wider: dict[str, float] | None = None
) -> list[Verdict]:
    """One verdict per measured ratio, in the measured order. A ratio without a baseline never fails (it is new);
    a baseline without a measurement is not judged (that run did not measure it). ``wider`` names ratios whose
    measured spread exceeds ``tolerance``: each is judged at the larger of the two."""
    wider = wider or {}
    return [
        Verdict(name, value, baselines.get(name), max(tolerance, wider.get(name, 0.0)))
        for name, value in measured.items()
    ]


def median_ratio(pairs: Sequence[tuple[float, float]]) -> float:
    """The median of the per-round ratios ``subject / reference``: a round that ran on a busy moment skews both
    of its halves alike and cancels out, which the ratio of two medians would not."""
    return statistics.median(subject / reference for subject, reference in pairs)


def load_baselines(path: Path | None = None) -> dict[str, float]:
    path = path or BASELINES
    return {name: float(value) for name, value in json.loads(path.read_text())["ratios"].items()}


def load_wider_tolerances(path: Path | None = None) -> dict[str, float]:
    """Ratios judged at a wider tolerance than the run's, each with its reason in the file (``wider_tolerance``)."""
    path = path or BASELINES
    entries = json.loads(path.read_text()).get("wider_tolerance", {}) if path.exists() else {}
    return {name: float(entry["tolerance"]) for name, entry in entries.items()}


def write_baselines(ratios: dict[str, float], path: Path | None = None) -> None:
    path = path or BASELINES
    current = json.loads(path.read_text()) if path.exists() else {}
    merged = {**current.get("ratios", {}), **{name: round(value, 4) for name, value in ratios.items()}}
    body = {
        "about": "bench/gate.py: ratios (tinkex / reference, lower is better); rewrite with bench/gate.py --update",
        "ratios": dict(sorted(merged.items())),
    }
    if "wider_tolerance" in current:
        body["wider_tolerance"] = current["wider_tolerance"]
    path.write_text(json.dumps(body, indent=1) + "\n")


# probes ------------------------------------------------------------------------------------------------------
def _cpu_of(run: Callable[[], object]) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


@contextmanager
def _calls_counted(loops: Sequence[asyncio.AbstractEventLoop]) -> Iterator[list[int]]:
    """Python function calls made in this thread and in each running ``loops``' thread while the block runs."""
    profilers = [cProfile.Profile() for _ in range(len(loops) + 1)]
    for loop, profiler in zip(loops, profilers[1:], strict=False):
        _on_loop(loop, profiler.enable)
    total: list[int] = []
    profilers[0].enable()
    try:
        yield total
    finally:
        profilers[0].disable()
        for loop, profiler in zip(loops, profilers[1:], strict=False):
            _on_loop(loop, profiler.disable)
        total.append(sum(pstats.Stats(profiler).total_calls for profiler in profilers))  # type: ignore[attr-defined]


def _on_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], None]) -> None:
    async def run() -> None:
        call()

    asyncio.run_coroutine_threadsafe(run(), loop).result(10)


def alternate(subject: Callable[[], object], reference: Callable[[], object], rounds: int) -> list[tuple[float, float]]:
    """``rounds`` (subject CPU, reference CPU) pairs, the order flipping every round so neither always goes first."""
    pairs = []
    for index in range(rounds):
        if index % 2:
            reference_cpu = _cpu_of(reference)
            subject_cpu = _cpu_of(subject)
        else:
            subject_cpu = _cpu_of(subject)
            reference_cpu = _cpu_of(reference)
        pairs.append((subject_cpu, reference_cpu))
    return pairs


@dataclass(frozen=True)
class Pair:
    """A measured path and its reference, each one round of ``ops`` operations."""

    name: str
    subject: Callable[[], object]
    reference: Callable[[], object]
    ops: int
    loops: Sequence[asyncio.AbstractEventLoop] = ()

    def ratios(self, rounds: int) -> dict[str, float]:
        self.subject(), self.reference()  # warm-up: connections, caches, lazy imports
        cpu = median_ratio(alternate(self.subject, self.reference, rounds))
        with _calls_counted(self.loops) as subject_calls:
            self.subject()
        with _calls_counted(self.loops) as reference_calls:
            self.reference()
        return {self.name: cpu, f"{self.name}_calls": subject_calls[0] / reference_calls[0]}


# the in-process pairs ----------------------------------------------------------------------------------------
STACK_REQUESTS = 200
SAMPLES = 40
TRAIN_STEPS = 20


def _mock_reply(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b'{"request_id":"r-1","model_id":"m","queue_state":"active"}',
                          headers={"Content-Type": "application/json"})


def stack_pair(loop: asyncio.AbstractEventLoop) -> Pair:
    from bench_stack import BODY, ENV, MANIFEST, URL

    from pristine_transport.stack import build_transport

    full = httpx.AsyncClient(transport=build_transport(MANIFEST, base=httpx.MockTransport(_mock_reply), env=ENV))
    bare = httpx.AsyncClient(transport=httpx.MockTransport(_mock_reply))

    def rounds_of(client: httpx.AsyncClient) -> Callable[[], object]:
        async def requests() -> None:
            for _ in range(STACK_REQUESTS):
                (await client.post(URL, json=BODY)).raise_for_status()

        return lambda: loop.run_until_complete(requests())

    return Pair("stack", rounds_of(full), rounds_of(bare), STACK_REQUESTS)


def _same_base_transport() -> httpx.AsyncBaseTransport:
    """The base transport tinkex's manifest picks (and ``TINKEX_HTTP_BACKEND`` overrides), without the layers: the
    bare client's ratio then shows what tinkex and its layers add, not what a different HTTP stack costs."""
    from pristine_transport.stack import _base_transport
    from tinkex.config import load_tinker_manifest

    return _base_transport(load_tinker_manifest().transport, os.environ)


class _BareClient:
    """A bare ``httpx.AsyncClient`` on the same base transport, sending pre-encoded bodies and decoding replies with
    msgspec: what any client must at least do for the same requests."""

    def __init__(self, base_url: str, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, transport=_same_base_transport())

    async def call(self, path: str, body: bytes) -> dict[str, Any]:
        response = await self.http.post(path, content=body)
        response.raise_for_status()
        return msgspec.json.decode(response.content)

    async def result(self, submitted: dict[str, Any]) -> dict[str, Any]:
        reply = await self.call("/api/v1/retrieve_future", b'{"request_id":"%s"}' % submitted["request_id"].encode())
        # With the server's latency 0 every result is ready at the first poll; anything else would skew the ratio.
        if reply.get("type") in ("try_again", "error") or "error" in reply:
            raise RuntimeError(f"retrieve_future did not answer with a result: {reply}")
        return reply

    def run(self, coro: Awaitable[object]) -> object:
        return self._loop.run_until_complete(coro)


def client_pairs(base_url: str, loop: asyncio.AbstractEventLoop) -> tuple[Pair, Pair, Callable[[], None]]:
    """The ``sample`` and ``train`` pairs against the local server at ``base_url``, and their clean-up."""
    import tinkex
    from tinkex import types
    from tinkex.runtime import get_runtime

    client = tinkex.Client(api_key=API_KEY, base_url=base_url, telemetry=False)
    bare = _BareClient(base_url, loop)
    loops = [get_runtime().loop]

    sampler = client.create_sampling_client(base_model=BASE_MODEL)
    prompt = types.ModelInput.from_ints([(11 * i) % 200 + 1 for i in range(32)])
    params = types.SamplingParams(max_tokens=16)
    sample_body = msgspec.json.encode(
        types.SampleRequest(prompt=prompt, sampling_params=params, sampling_session_id=sampler.sampling_session_id)
    )

    def tinkex_samples() -> None:
        for _ in range(SAMPLES):
            sampler.sample(prompt, 1, params).result()

    async def bare_samples() -> None:
        for _ in range(SAMPLES):
            await bare.result(await bare.call("/api/v1/asample", sample_body))

    training = client.create_lora_training_client(base_model=BASE_MODEL, rank=8)
    tokens = [(7 * i) % 200 + 1 for i in range(65)]
    data = [
        types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                    loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 64})
        for _ in range(8)
    ]
    adam = types.AdamParams(learning_rate=1e-4)
    fb_input = types.ForwardBackwardInput(data=data, loss_fn="cross_entropy")
    fb_body = msgspec.json.encode(types.ForwardBackwardRequest(forward_backward_input=fb_input, model_id=training.model_id))
    optim_body = msgspec.json.encode(types.OptimStepRequest(adam_params=adam, model_id=training.model_id))

    def tinkex_steps() -> None:
        for _ in range(TRAIN_STEPS):
            forward_backward = training.forward_backward(data, "cross_entropy")
            optim = training.optim_step(adam)
            forward_backward.result()
            optim.result()

    async def bare_steps() -> None:
        for _ in range(TRAIN_STEPS):
            forward_backward = await bare.call("/api/v1/forward_backward", fb_body)
            optim = await bare.call("/api/v1/optim_step", optim_body)
            await bare.result(forward_backward)
            await bare.result(optim)

    def close() -> None:
        bare.run(bare.http.aclose())
        client.close()

    sample = Pair("sample", tinkex_samples, lambda: bare.run(bare_samples()), SAMPLES, loops)
    train = Pair("train", tinkex_steps, lambda: bare.run(bare_steps()), 2 * TRAIN_STEPS, loops)
    return sample, train, close


def measure_in_process(rounds: int, names: Sequence[str] = ("stack", "sample", "train")) -> dict[str, float]:
    """Every in-process ratio (``name`` and ``name_calls``) for the named pairs."""
    loop = asyncio.new_event_loop()
    ratios: dict[str, float] = {}
    try:
        if "stack" in names:
            ratios.update(stack_pair(loop).ratios(rounds))
        if {"sample", "train"} & set(names):
            with local_server(0.0) as url:
                sample, train, close = client_pairs(url, loop)
                try:
                    for pair in (sample, train):
                        if pair.name in names:
                            ratios.update(pair.ratios(rounds))
                finally:
                    close()
    finally:
        loop.close()
    return ratios


# fresh processes against the official SDKs -------------------------------------------------------------------
def official_python(version: str) -> Path:
    return OFFICIAL_VENVS / f"tinker-{version}" / "bin" / "python"


def _worker(python: Path, script: Path, workload: str, *extra: str) -> dict[str, Any]:
    """One fresh-process run; a run that fails is tried once more (a local server that could not start on a busy
    machine is not a regression), a second failure ends the gate."""
    from bench_client_cpu import _run_worker

    try:
        return _run_worker(python, script, workload, *extra)
    except RuntimeError as error:
        print(f"{script.name} {workload} failed once, trying again: {error}", file=sys.stderr)
        return _run_worker(python, script, workload, *extra)


def measure_official(rounds: int, versions: Sequence[str] = OFFICIAL_VERSIONS,
                     workloads: Sequence[str] = OFFICIAL_WORKLOADS) -> dict[str, float]:
    """``{workload}_vs_{version}``: tinkex's CPU per op over the official SDK's, one fresh process per SDK and
    round (each against a fresh local server), the SDKs' order rotating every round; median of the rounds' ratios.
    A version whose venv is missing is left out (``tests/official/setup_venvs.sh`` makes them)."""
    present = [version for version in versions if official_python(version).exists()]
    for version in sorted(set(versions) - set(present)):
        print(f"official {version}: no venv at {official_python(version)} (run tests/official/setup_venvs.sh)",
              file=sys.stderr)
    sdks = [("tinkex", Path(sys.executable), BENCH / "bench_client_cpu.py")] + [
        (version, official_python(version), BENCH / "official_sdk_cpu.py") for version in present
    ]
    ratios: dict[str, float] = {}
    for workload in workloads:
        cpu: dict[str, list[float]] = {label: [] for label, _, _ in sdks}
        for index in range(rounds):
            order = sdks[index % len(sdks):] + sdks[: index % len(sdks)]
            for label, python, script in order:
                cpu[label].append(_worker(python, script, workload)["cpu_ms_per_op"])
        # Python calls per op: one counted run each is enough, they repeat to within 0.5 %.
        calls = {label: _worker(python, script, workload, "--count-calls")["calls_per_op"]
                 for label, python, script in sdks}
        for version in present:
            ratios[f"{workload}_vs_{version}"] = median_ratio(list(zip(cpu["tinkex"], cpu[version], strict=True)))
            ratios[f"{workload}_calls_vs_{version}"] = calls["tinkex"] / calls[version]
            print(f"{workload} tinkex {statistics.median(cpu['tinkex']):.2f} ms/op {calls['tinkex']:.0f} calls/op, "
                  f"official {version} {statistics.median(cpu[version]):.2f} ms/op {calls[version]:.0f} calls/op",
                  file=sys.stderr)
    return ratios


# command line ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="in-process ratios only, 25%% tolerance (.ci/run)")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default: 11 quick, 21 full)")
    parser.add_argument("--official-rounds", type=int, default=9, help="fresh-process rounds per official SDK")
    parser.add_argument("--tolerance", type=float, help="allowed worsening over a baseline (0.10 = 10%%)")
    parser.add_argument("--update", action="store_true", help="write the measured ratios as the new baselines")
    parser.add_argument("--json", type=Path, help="also write the measured ratios here")
    args = parser.parse_args(argv)
    tolerance = args.tolerance if args.tolerance is not None else QUICK_TOLERANCE if args.quick else FULL_TOLERANCE
    started = time.perf_counter()
    measured = measure_in_process(args.rounds or (11 if args.quick else 21))
    if not args.quick:
        measured.update(measure_official(args.official_rounds))
    if args.json:
        args.json.write_text(json.dumps(measured, indent=1) + "\n")
    if args.update:
        write_baselines(measured)
        print(f"baselines written to {BASELINES}")
    verdicts = judge(measured, load_baselines() if BASELINES.exists() else {}, tolerance, load_wider_tolerances())
    print(f"benchmark gate ({'quick' if args.quick else 'full'}, tolerance {tolerance:.0%}, "
          f"{time.perf_counter() - started:.0f} s): ratio tinkex / reference, lower is better")
    for verdict in verdicts:
        print("  " + verdict.line())
    failed = [verdict.metric for verdict in verdicts if verdict.failed]
    if failed:
        print(f"benchmark gate FAILED: {', '.join(failed)} worse than baseline by more than {tolerance:.0%}")
        return 1
    print("benchmark gate passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
