"""Each workload x each base transport (and wire dialect) of tinkex x each official SDK: client CPU per operation
and memory with samples in flight, alternating fresh-process runs, medians; prints a Markdown table.

    .venv/bin/python bench/compare.py [--rounds 5] [--workloads train_sync sample_sync ...] [--json out.json]

Every cell is one configuration: tinkex with a base transport (``aiohttp``, ``httpx`` HTTP/1.1, ``httpx-h2c``:
httpx's HTTP/2 with prior knowledge, since the local server is plain-text, ``pyqwest``) and a wire dialect
(``TINKEX_WIRE_DIALECT``), or an official SDK in its own venv (``tests/official/setup_venvs.sh``; 0.38.0 uses
pyqwest, its default). A round runs every configuration once, each in a fresh process against a fresh local server
(``bench_client_cpu._run_worker``), the order rotating every round; the table shows medians over the rounds, and
the official SDKs' CPU over tinkex's (so 4.0 means tinkex spends a quarter of it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_client_cpu import _run_worker  # noqa: E402
from gate import official_python  # noqa: E402


@dataclass(frozen=True)
class Config:
    label: str
    python: Path
    script: Path
    env: dict[str, str] = field(default_factory=dict)
    replaces: dict[str, str] = field(default_factory=dict)
    """workload -> the workload this configuration runs in its place; with any, it runs only those."""

    def workload(self, name: str) -> str | None:
        if not self.replaces:
            return name
        return self.replaces.get(name)


def tinkex(backend: str, dialect: str) -> Config:
    env = {"TINKEX_WIRE_DIALECT": dialect}
    if backend == "httpx-h2c":
        env.update(TINKEX_HTTP_BACKEND="httpx", TINKEX_BENCH_TRANSPORT="httpx-h2c")
    else:
        env["TINKEX_HTTP_BACKEND"] = backend
    return Config(f"tinkex {backend} {dialect}", Path(sys.executable), BENCH / "bench_client_cpu.py", env)


def floor(library: str) -> Config:
    """``sample_sync``'s two requests per sample on the bare HTTP library: the floor under any client on it."""
    workload = f"{library}_floor"
    return Config(f"bare {library} (floor)", Path(sys.executable), BENCH / "bench_client_cpu.py",
                  replaces={"sample_sync": workload})


FLOORS = ("httpx", "aiohttp", "pyqwest")


def official(version: str) -> Config:
    return Config(f"official {version}", official_python(version), BENCH / "official_sdk_cpu.py")


BACKENDS = ("aiohttp", "httpx", "httpx-h2c", "pyqwest")
DIALECTS = ("0.16", "0.38")
WORKLOADS = ("train_sync", "train_async", "sample_sync", "sample_async", "inflight")


def configs(backends: list[str], dialects: list[str], versions: list[str], floors: list[str]) -> list[Config]:
    found = [tinkex(backend, dialect) for dialect in dialects for backend in backends]
    found += [floor(library) for library in floors]
    return found + [official(version) for version in versions if official_python(version).exists()]


def run(config: Config, workload: str) -> dict[str, Any]:
    saved = dict(os.environ)
    os.environ.update(config.env)
    try:
        return _run_worker(config.python, config.script, config.workload(workload) or workload)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def measure(workloads: list[str], found: list[Config], rounds: int) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """workload -> label -> the rounds' results."""
    table: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for workload in workloads:
        runs = [config for config in found if config.workload(workload)]
        rows = table.setdefault(workload, {config.label: [] for config in runs})
        for index in range(rounds):
            for config in runs[index % len(runs):] + runs[: index % len(runs)]:
                try:
                    result = run(config, workload)
                except RuntimeError as error:  # one failed run (a shared, busy machine) leaves a hole, not a crash
                    print(f"{workload} {config.label}: run failed: {error}", file=sys.stderr, flush=True)
                    continue
                rows[config.label].append(result)
                print(f"{workload:12} {config.label:28} cpu {result['cpu_ms_per_op']:.2f} ms/op"
                      + (f" rss peak {result['rss_peak_mb']:.1f} MiB" if "rss_peak_mb" in result else ""),
                      file=sys.stderr, flush=True)
    return table


def median(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(result[key] for result in results)


def markdown(table: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    lines = []
    officials = sorted({label for rows in table.values() for label in rows if label.startswith("official")})
    for workload, rows in table.items():
        key = "rss_peak_mb" if workload == "inflight" else "cpu_ms_per_op"
        unit = "RSS peak, MiB" if workload == "inflight" else "CPU ms per op"
        lines += [f"\n{workload} ({unit}, median)\n", "| configuration | " + unit + " | "
                  + " | ".join(f"{label} / this" for label in officials) + " |",
                  "|---|---|" + "---|" * len(officials)]
        for label, results in rows.items():
            if not results:
                continue
            mine = median(results, key)
            ratios = [f"{median(rows[o], key) / mine:.2f}" if rows.get(o) else "-" for o in officials]
            lines.append(f"| {label} | {mine:.2f} | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--dialects", nargs="+", default=list(DIALECTS), choices=DIALECTS)
    parser.add_argument("--official", nargs="*", default=["0.16.1", "0.38.0"])
    parser.add_argument("--floors", nargs="*", default=list(FLOORS), choices=FLOORS,
                        help="bare HTTP libraries measured in sample_sync's place")
    parser.add_argument("--json", type=Path, help="every run's numbers")
    args = parser.parse_args(argv)
    found = configs(args.backends, args.dialects, args.official, args.floors)
    table = measure(args.workloads, found, args.rounds)
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
