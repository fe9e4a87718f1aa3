"""The benchmark gate (bench/gate.py): its decisions as a table, and the gate itself on the real measured paths,
once as they are (it passes against the committed baselines) and once with a slowdown injected into the path every
request of the stack and of tinkex takes (it fails, on CPU time and on function calls)."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
gate: Any = importlib.import_module("gate")

from pristine_transport.boundary import BoundaryTransport  # noqa: E402


@pytest.mark.parametrize(
    ("measured", "baseline", "tolerance", "failed"),
    [
        (1.00, 1.00, 0.10, False),
        (1.10, 1.00, 0.10, False),  # exactly at the limit
        (1.11, 1.00, 0.10, True),
        (1.24, 1.00, 0.25, False),
        (1.26, 1.00, 0.25, True),
        (0.50, 1.00, 0.10, False),  # better than the baseline never fails
        (9.00, None, 0.10, False),  # a new ratio has nothing to be worse than
    ],
)
def test_a_ratio_fails_only_above_its_baseline_plus_the_tolerance(
    measured: float, baseline: float | None, tolerance: float, failed: bool
) -> None:
    baselines = {} if baseline is None else {"m": baseline}
    [verdict] = gate.judge({"m": measured}, baselines, tolerance)
    assert verdict.failed is failed
    assert ("FAIL" in verdict.line()) is failed


def test_a_ratio_named_as_noisier_is_judged_at_its_wider_tolerance_only_when_wider() -> None:
    verdicts = gate.judge({"noisy": 1.2, "calm": 1.2}, {"noisy": 1.0, "calm": 1.0}, 0.10, {"noisy": 0.25, "calm": 0.05})
    assert [(v.metric, v.tolerance, v.failed) for v in verdicts] == [("noisy", 0.25, False), ("calm", 0.10, True)]


def test_the_committed_wider_tolerances_say_why_and_name_measured_ratios() -> None:
    import json

    entries = json.loads(gate.BASELINES.read_text())["wider_tolerance"]
    assert set(entries) <= set(gate.load_baselines())
    assert all(entry["reason"] and entry["tolerance"] <= 0.25 for entry in entries.values())


def test_a_baseline_the_run_did_not_measure_is_not_judged() -> None:
    assert [v.metric for v in gate.judge({"a": 1.0}, {"a": 1.0, "b": 1.0}, 0.1)] == ["a"]


def test_the_ratio_is_the_median_of_each_rounds_ratio() -> None:
    # A busy moment slows both halves of its round: that round's ratio stays put, the medians' ratio would not.
    assert gate.median_ratio([(2.0, 1.0), (20.0, 10.0), (3.0, 1.0)]) == 2.0


def test_baselines_cover_every_quick_ratio_and_round_trip(tmp_path: Path) -> None:
    committed = gate.load_baselines()
    for name in ("stack", "sample", "train"):
        assert {name, f"{name}_calls"} <= set(committed)
    path = tmp_path / "baselines.json"
    gate.write_baselines({"x": 1.234567}, path)
    gate.write_baselines({"y": 2.0}, path)
    assert gate.load_baselines(path) == {"x": 1.2346, "y": 2.0}
    assert gate.load_wider_tolerances(path) == {}


# the gate on the real paths ----------------------------------------------------------------------------------
SLOWDOWN_CALLS = 2000
SLOWDOWN_S = 0.001


def _noop() -> None:
    pass


def _slow_down() -> None:
    """About a millisecond of CPU made of Python calls, what a careless per-request change costs."""
    start = time.process_time()
    for _ in range(SLOWDOWN_CALLS):
        _noop()
    while time.process_time() - start < SLOWDOWN_S:
        pass


@pytest.fixture
def slowed_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every request through a manifest stack (the sample path's included) pays ``_slow_down`` at the boundary."""
    original = BoundaryTransport.handle_async_request

    async def slow(self: BoundaryTransport, request: Any) -> Any:
        _slow_down()
        return await original(self, request)

    monkeypatch.setattr(BoundaryTransport, "handle_async_request", slow)
    yield


ROUNDS = 7
MEASURED = ("stack", "sample")


def _failed(measured: dict[str, float]) -> set[str]:
    verdicts = gate.judge(measured, gate.load_baselines(), gate.QUICK_TOLERANCE)
    return {verdict.metric for verdict in verdicts if verdict.failed}


def test_the_gate_passes_on_the_paths_as_they_are() -> None:
    measured = gate.measure_in_process(ROUNDS, MEASURED)
    assert set(measured) == {"stack", "stack_calls", "sample", "sample_calls"}
    assert _failed(measured) == set(), measured


def test_the_gate_fails_when_a_slowdown_is_injected_into_the_measured_path(slowed_down: None) -> None:
    measured = gate.measure_in_process(ROUNDS, MEASURED)
    assert _failed(measured) == {"stack", "stack_calls", "sample", "sample_calls"}, measured


def test_the_command_exits_1_when_a_ratio_is_worse_than_its_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    baselines = tmp_path / "baselines.json"
    gate.write_baselines({"stack": 0.5, "stack_calls": 0.5}, baselines)  # no stack costs half of bare httpx
    monkeypatch.setattr(gate, "BASELINES", baselines)
    measure = gate.measure_in_process
    monkeypatch.setattr(gate, "measure_in_process", lambda rounds: measure(rounds, ("stack",)))
    assert gate.main(["--quick", "--rounds", "3"]) == 1
    assert "benchmark gate FAILED: stack, stack_calls" in capsys.readouterr().out
