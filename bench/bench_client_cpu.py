"""Client-side cost of tinkex against the official ``tinker`` SDK: CPU ms per operation and memory in flight.

The local server (``python -m tinkex.testing``) always runs in a separate process, so ``time.process_time()`` of
the client process (every thread: tinkex's background loop and heartbeat included) is client CPU only.

Workloads (written once in ``_workloads.py``, sizes in ``_local_server.Sizes``, identical for both SDKs):

- ``train_sync`` / ``train_async``: 200 training requests, i.e. 100 steps of forward_backward (8 datums x 64
  tokens) + optim_step submitted back to back, then both results awaited; ms per request.
- ``sample_sync``: 300 samples one after another (prompt 32 tokens, max_tokens 16), ``.sample(...).result()``.
- ``sample_async``: the same 300 samples at once with ``asyncio.gather`` of ``sample_async``.
- ``inflight``: 300 concurrent samples against a server that holds every result 2 s, so they all pile up;
  RSS growth and tracemalloc peak while they are in flight.
- ``httpx_floor`` (tinkex's venv only): ``sample_sync``'s requests sent with a bare ``httpx.AsyncClient``, the
  floor under any httpx-based client.

Entry points:

- ``pytest bench/ --benchmark-enable``: tinkex only, in the pytest process; ms CPU per op in ``extra_info``.
  Without ``--benchmark-enable`` (the repo's addopts disable benchmarks) every test here skips.
- ``python bench/bench_client_cpu.py``: every workload of tinkex and of the official SDK (if its venv exists, see
  ``official_sdk_cpu.py``), each run in a fresh process against a fresh server, ``--repeats`` times; prints the
  medians and the ratios against the bar.
- ``python bench/bench_client_cpu.py --workload NAME [--base-url URL]``: one tinkex run, one JSON line.
- ``python bench/bench_client_cpu.py --profile NAME``: cProfile of one tinkex run (caller thread and tinkex's
  background loop thread merged), top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import importlib.metadata
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local_server import (  # noqa: E402  (the bench dir is put on the path just above)
    API_KEY,
    BASE_MODEL,
    SIZES,
    Workload,
    local_server,
    measure_async,
    worker_main,
)
from _workloads import SHARED_WORKLOADS, Sdk, sampling_args, workloads  # noqa: E402

import tinkex  # noqa: E402
from tinkex import types  # noqa: E402

BENCH = Path(__file__).resolve().parent
# The venvs tests/official/setup_venvs.sh makes (each official SDK in its own).
OFFICIAL_PYTHON = BENCH.parent / "tests" / "official" / ".venv" / "tinker-0.16.1" / "bin" / "python"
LATEST_PYTHON = BENCH.parent / "tests" / "official" / ".venv" / "tinker-0.38.0" / "bin" / "python"

# The bar, from the project guide: official SDK 0.16 spends ~12-14 ms of client CPU per operation; its newest
# release on the Rust transport 6.4 ms per sample and 7.6 ms per training op. tinkex must be >= 3x below the
# former and >= 1.5x below the latter, and hold at most half their memory with hundreds of samples in flight.
GUIDE_OFFICIAL_016_MS = 12.0  # the low end of 12-14 ms, so the derived target is the stricter one
GUIDE_LATEST_MS = {"train": 7.6, "sample": 6.4}
SPEEDUP_VS_016 = 3.0
SPEEDUP_VS_LATEST = 1.5
MEMORY_FRACTION = 0.5


# tinkex: its adapter and its own httpx_floor workload --------------------------------------------------------
def _client(base_url: str) -> tinkex.Client:
    """``TINKEX_BENCH_TRANSPORT=httpx-h2c`` measures httpx's HTTP/2 against the plain-text local server (prior
    knowledge: over http:// ALPN never offers h2); otherwise the manifest's base transport (``TINKEX_HTTP_BACKEND``)."""
    transport = None
    if os.environ.get("TINKEX_BENCH_TRANSPORT") == "httpx-h2c":
        import httpx

        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=20, keepalive_expiry=5.0)  # the manifest's
        transport = functools.partial(httpx.AsyncHTTPTransport, http1=False, http2=True, limits=limits)
    return tinkex.Client(api_key=API_KEY, base_url=base_url, telemetry=False, transport=transport)


TINKEX = Sdk(
    types=types,
    service_client=_client,
    info={"sdk": "tinkex", "version": importlib.metadata.version("tinkex")},
    close=tinkex.Client.close,
    aclose=tinkex.Client.aclose,
)


def httpx_floor(base_url: str) -> dict[str, Any]:
    """The floor under any httpx-based client: ``sample_sync``'s two requests per sample (asample, then one
    retrieve_future) sent with a bare ``httpx.AsyncClient`` on one loop: no layers, no background thread."""
    import httpx
    import msgspec

    async def run() -> dict[str, Any]:
        async with TINKEX.async_session(base_url) as client:
            sampler = await client.create_sampling_client_async(base_model=BASE_MODEL)
            prompt, params = sampling_args(TINKEX)
            seq_ids = iter(range(10**9))
            async with httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": API_KEY}) as http:

                async def one_sample() -> None:
                    request = types.SampleRequest(
                        prompt=prompt, sampling_params=params,
                        sampling_session_id=sampler.sampling_session_id, seq_id=next(seq_ids),
                    )
                    submitted = await http.post("/api/v1/asample", content=msgspec.json.encode(request),
                                                headers={"Content-Type": "application/json"})
                    request_id = msgspec.json.decode(submitted.content)["request_id"]
                    result = await http.post("/api/v1/retrieve_future", json={"request_id": request_id})
                    assert "sequences" in msgspec.json.decode(result.content), result.text

                async def samples(count: int) -> None:
                    for _ in range(count):
                        await one_sample()

                warmup, timed = lambda: samples(SIZES.warmup), lambda: samples(SIZES.samples)
                result = await measure_async(warmup, timed, SIZES.samples)
        return {**TINKEX.info, "sdk": "bare httpx", **result.as_dict()}

    return asyncio.run(run())


def _raw_floor(base_url: str, label: str, post: Callable[[Any, str, bytes], Any], session: Callable[[], Any]) -> dict[str, Any]:
    """``sample_sync``'s two requests per sample straight on an HTTP library, without httpx on top: the floor under
    any client built on that library (``post(session, path, body)`` returns the reply's bytes)."""
    import msgspec

    async def run() -> dict[str, Any]:
        async with TINKEX.async_session(base_url) as client:
            sampler = await client.create_sampling_client_async(base_model=BASE_MODEL)
            prompt, params = sampling_args(TINKEX)
            body = msgspec.json.encode(types.SampleRequest(
                prompt=prompt, sampling_params=params, sampling_session_id=sampler.sampling_session_id))
        http = session()

        async def samples(count: int) -> None:
            for _ in range(count):
                request_id = msgspec.json.decode(await post(http, "/api/v1/asample", body))["request_id"]
                reply = await post(http, "/api/v1/retrieve_future", b'{"request_id":"%s"}' % request_id.encode())
                assert b"sequences" in reply, reply

        result = await measure_async(lambda: samples(SIZES.warmup), lambda: samples(SIZES.samples), SIZES.samples)
        return {**TINKEX.info, "sdk": label, **result.as_dict()}

    return asyncio.run(run())


def aiohttp_floor(base_url: str) -> dict[str, Any]:
    import aiohttp

    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}

    async def post(http: Any, path: str, body: bytes) -> bytes:
        async with http.post(base_url + path, data=body, headers=headers) as response:
            return await response.read()

    return _raw_floor(base_url, "bare aiohttp", post, aiohttp.ClientSession)


def pyqwest_floor(base_url: str) -> dict[str, Any]:
    import pyqwest

    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}

    async def post(http: Any, path: str, body: bytes) -> bytes:
        response = await http.post(base_url + path, headers=headers, content=body)
        return bytes(response.content)

    return _raw_floor(base_url, "bare pyqwest", post, pyqwest.Client)


WORKLOADS: dict[str, Workload] = {
    **workloads(TINKEX), "httpx_floor": httpx_floor, "aiohttp_floor": aiohttp_floor, "pyqwest_floor": pyqwest_floor,
}
CPU_WORKLOADS = ("train_sync", "train_async", "sample_sync", "sample_async")


# pytest-benchmark --------------------------------------------------------------------------------------------
try:
    import pytest
except ImportError:  # the plain entry point does not need pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="module")
    def cpu_server_url() -> Iterator[str]:
        with local_server(latency=0.0) as url:
            yield url

    @pytest.fixture(scope="module")
    def inflight_server_url() -> Iterator[str]:
        with local_server(latency=SIZES.inflight_latency_s) as url:
            yield url

    def _record(benchmark: Any, workload: Callable[[], dict[str, Any]], keys: tuple[str, ...]) -> None:
        """Three rounds of the workload; the median of each key lands in ``benchmark.extra_info``. The benchmark's
        own time column includes client set-up (session, model); ``cpu_ms_per_op`` covers the workload only."""
        if benchmark.disabled:
            pytest.skip("client CPU benchmarks run only with --benchmark-enable")
        runs: list[dict[str, Any]] = []
        benchmark.pedantic(lambda: runs.append(workload()), rounds=3, iterations=1)
        for key in keys:
            benchmark.extra_info[key] = statistics.median(run[key] for run in runs)
        assert all(run["ops"] > 0 and run["cpu_ms_per_op"] > 0 for run in runs)

    @pytest.mark.parametrize("name", CPU_WORKLOADS)
    def test_client_cpu_per_op(benchmark: Any, cpu_server_url: str, name: str) -> None:
        _record(benchmark, lambda: WORKLOADS[name](cpu_server_url), ("cpu_ms_per_op", "wall_ms_per_op"))

    def test_memory_with_samples_in_flight(benchmark: Any, inflight_server_url: str) -> None:
        # RSS growth is left out: in the shared pytest process earlier rounds have grown the heap already.
        keys = ("traced_peak_mb", "cpu_ms_per_op", "wall_s")
        _record(benchmark, lambda: WORKLOADS["inflight"](inflight_server_url), keys)
        # Every sample waits out the server's latency, so the batch cannot finish sooner: they were in flight.
        assert benchmark.extra_info["wall_s"] >= SIZES.inflight_latency_s


# plain entry point: both SDKs, fresh processes ---------------------------------------------------------------
def _run_worker(python: Path, script: Path, workload: str, *extra: str) -> dict[str, Any]:
    latency = SIZES.inflight_latency_s if workload == "inflight" else 0.0
    with local_server(latency) as url:
        done = subprocess.run(
            [str(python), str(script), "--workload", workload, "--base-url", url, *extra],
            capture_output=True,
            text=True,
            timeout=600,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{python} {script.name} --workload {workload} exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _sdks(args: argparse.Namespace) -> dict[str, tuple[Path, Path]]:
    """label -> (python, script) for every SDK that is installed."""
    found = {"tinkex": (Path(sys.executable), BENCH / "bench_client_cpu.py")}
    for label, python in (("official", args.official_python), ("latest", args.latest_python)):
        if python is not None and Path(python).exists():
            found[label] = (Path(python), BENCH / "official_sdk_cpu.py")
    return found


def _medians(args: argparse.Namespace) -> dict[str, dict[str, dict[str, Any]]]:
    """workload -> label -> median of every numeric field over ``args.repeats`` runs (one at a time)."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    failed: set[str] = set()  # an SDK that cannot talk to the local server fails every workload the same way
    for workload in args.workloads:
        for label, (python, script) in _sdks(args).items():
            if label in failed or (label != "tinkex" and workload not in SHARED_WORKLOADS):
                continue
            try:
                runs = [_run_worker(python, script, workload) for _ in range(args.repeats)]
            except RuntimeError as error:
                print(f"{label} {workload}: FAILED, skipping {label} from now on: {error}", file=sys.stderr)
                failed.add(label)
                continue
            numeric = {key for key, value in runs[0].items() if isinstance(value, float | int)}
            median = {key: statistics.median(run[key] for run in runs) for key in numeric}
            table.setdefault(workload, {})[label] = {**runs[0], **median, "runs": runs}
            print(f"{label:8} {workload:12} cpu ms/op " + " ".join(f"{run['cpu_ms_per_op']:.2f}" for run in runs),
                  file=sys.stderr)
    return table


def _versions(table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, str]:
    return {label: row["version"] for rows in table.values() for label, row in rows.items()}


def _print_table(table: dict[str, dict[str, dict[str, Any]]]) -> None:
    versions = _versions(table)
    labels = [label for label in ("tinkex", "official", "latest") if label in versions]
    heads = [f"{label} {versions[label]}" for label in labels]
    print("\nclient CPU, ms per op (median)")
    print(f"{'workload':14}" + "".join(f"{head:>22}" for head in heads) + "".join(
        f"{'x ' + label:>12}" for label in labels[1:]))
    for workload in (name for name in CPU_WORKLOADS if name in table):
        rows = table[workload]
        cells = "".join(f"{rows[label]['cpu_ms_per_op']:>22.2f}" if label in rows else f"{'-':>22}" for label in labels)
        ratios = "".join(
            f"{rows[label]['cpu_ms_per_op'] / rows['tinkex']['cpu_ms_per_op']:>12.2f}"
            if label in rows and "tinkex" in rows else f"{'-':>12}"
            for label in labels[1:]
        )
        print(f"{workload:14}{cells}{ratios}")
    floor = table.get("httpx_floor", {}).get("tinkex")
    if floor:
        print(f"{'httpx_floor':14}{floor['cpu_ms_per_op']:>22.2f}   (bare httpx: sample_sync's requests, no tinkex)")
    if "inflight" in table:
        print(f"\n{SIZES.inflight} samples in flight (median)")
        for label in labels:
            row = table["inflight"].get(label)
            if row:
                print(f"{label:10} RSS peak {row['rss_peak_mb']:7.1f} MiB (+{row['rss_inflight_mb']:.1f} in flight), "
                      f"tracemalloc peak {row['traced_peak_mb']:.1f} MiB, {row['cpu_ms_per_op']:.2f} ms CPU/sample, "
                      f"batch wall {row['wall_s']:.2f} s")
    _print_bar(table)


def _print_bar(table: dict[str, dict[str, dict[str, Any]]]) -> None:
    print("\nthe bar (tinkex must be at or under each target)")
    for workload in (name for name in CPU_WORKLOADS if name in table and "tinkex" in table[name]):
        rows = table[workload]
        mine = rows["tinkex"]["cpu_ms_per_op"]
        kind = "train" if workload.startswith("train") else "sample"
        targets = {
            f"guide 0.16 {GUIDE_OFFICIAL_016_MS:g} ms / {SPEEDUP_VS_016:g}": GUIDE_OFFICIAL_016_MS / SPEEDUP_VS_016,
            f"guide newest {GUIDE_LATEST_MS[kind]:g} ms / {SPEEDUP_VS_LATEST:g}": GUIDE_LATEST_MS[kind] / SPEEDUP_VS_LATEST,
        }
        if "official" in rows:
            targets[f"measured 0.16 / {SPEEDUP_VS_016:g}"] = rows["official"]["cpu_ms_per_op"] / SPEEDUP_VS_016
        if "latest" in rows:
            targets[f"measured newest / {SPEEDUP_VS_LATEST:g}"] = rows["latest"]["cpu_ms_per_op"] / SPEEDUP_VS_LATEST
        verdicts = ", ".join(f"{name} = {target:.2f} {'ok' if mine <= target else 'MISSED'}" for name, target in targets.items())
        print(f"{workload:14} tinkex {mine:.2f} ms: {verdicts}")
    rows = table.get("inflight", {})
    for label in ("official", "latest"):
        if "tinkex" in rows and label in rows:
            for key in ("rss_peak_mb", "rss_inflight_mb"):
                mine, theirs = rows["tinkex"][key], rows[label][key]
                verdict = "ok" if mine <= MEMORY_FRACTION * theirs else "MISSED"
                print(f"inflight {key:16} tinkex {mine:.1f} MiB vs {label} {theirs:.1f} MiB: "
                      f"{mine / theirs:.2f}x (target <= {MEMORY_FRACTION:g}x) {verdict}")


def _profile(workload: str, top: int) -> None:
    """cProfile one tinkex run: the caller's thread plus tinkex's background loop thread, merged."""
    from tinkex.runtime import get_runtime

    runtime = get_runtime()
    in_loop = cProfile.Profile(time.thread_time)  # CPU of each thread: waits in either thread cost nothing
    runtime.loop.call_soon_threadsafe(in_loop.enable)
    caller = cProfile.Profile(time.thread_time)
    with local_server(SIZES.inflight_latency_s if workload == "inflight" else 0.0) as url:
        caller.enable()
        print(json.dumps(WORKLOADS[workload](url)))
        caller.disable()
    runtime.run(_disable(in_loop))
    stats = pstats.Stats(caller).add(in_loop)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


async def _disable(profiler: cProfile.Profile) -> None:
    profiler.disable()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--workload" in argv:
        return worker_main(WORKLOADS, argv)
    parser = argparse.ArgumentParser(description="tinkex vs the official tinker SDK: client CPU and memory")
    parser.add_argument("--official-python", type=Path, default=OFFICIAL_PYTHON, help="venv python with tinker==0.16.1")
    parser.add_argument("--latest-python", type=Path, default=LATEST_PYTHON, help="venv python with the newest tinker")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--json", type=Path, help="also write every run's numbers here")
    parser.add_argument("--profile", choices=sorted(WORKLOADS), help="cProfile one tinkex run instead")
    parser.add_argument("--top", type=int, default=30, help="functions shown by --profile")
    args = parser.parse_args(argv)
    if args.profile:
        _profile(args.profile, args.top)
        return 0
    table = _medians(args)
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))
    _print_table(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
