"""tinker-cookbook 0.6.1's supervised and RL loops, unchanged, on tinkex against a LocalServer, offline.

Each test runs tests/cookbook/cookbook_loops.py with the cookbook venv's python under ``tinkex exec`` (so the
cookbook's ``import tinker`` is tinkex), reads the per-step figures the loop logged to its metrics.jsonl, checks
them and shows them in the run's summary.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

LOOPS = Path(__file__).resolve().with_name("cookbook_loops.py")


def _run_loop(venv: Any, loop: str, log_dir: Path) -> dict:
    result = venv.run_for_json(
        [venv.tinkex, "exec", "--", venv.python, LOOPS, loop, "--log-dir", log_dir],
        marker="COOKBOOK_RESULT ",
        what=f"the cookbook's {loop} loop on tinkex",
        timeout=600,
    )
    assert result["tinker_version"] == "0.38.0"  # `import tinker` was tinkex.compat, serving the 0.38 API
    assert result["duplicates_executed"] == 0
    return result


def _figure(value: float) -> str:
    return f"{value:.4f}"


def test_cookbook_supervised_loop_trains_on_tinkex(
    cookbook_venv: Any, tmp_path: Path, cookbook_report: list[str], offline: str
) -> None:
    result = _run_loop(cookbook_venv, "sl", tmp_path / "sl")
    steps = result["metrics"]
    # 8 conversations in batches of 2 for 2 epochs.
    assert [row["step"] for row in steps] == list(range(8))
    losses = [row["train_mean_nll"] for row in steps]
    assert all(math.isfinite(loss) and loss > 0 for loss in losses)
    # The held-out NLL, measured by the loop's own evaluator before steps 0 and 4, fell as the model trained.
    evals = [(row["step"], row["test/nll"]) for row in steps if "test/nll" in row]
    assert [step for step, _ in evals] == [0, 4]
    assert evals[1][1] < evals[0][1]
    assert sum(losses[-2:]) < sum(losses[:2])
    assert steps[-1]["tokens/cumulative/trained"] == sum(row["num_tokens"] for row in steps)
    assert steps[-1]["cost/cumulative_usd"] > 0  # the local pricing table reached the loop's cost tracker
    checkpoints = (tmp_path / "sl" / "checkpoints.jsonl").read_text()
    assert '"name": "final"' in checkpoints and "tinker://" in checkpoints

    cookbook_report.append(f"supervised loop (tinker_cookbook.supervised.train.main), 8 steps, {offline}:")
    cookbook_report.append("  step  train_mean_nll  test/nll")
    for row in steps:
        test_nll = _figure(row["test/nll"]) if "test/nll" in row else ""
        cookbook_report.append(f"  {row['step']:>4}  {_figure(row['train_mean_nll']):>14}  {test_nll:>8}")


def test_cookbook_rl_loop_trains_on_tinkex(
    cookbook_venv: Any, tmp_path: Path, cookbook_report: list[str], offline: str
) -> None:
    result = _run_loop(cookbook_venv, "rl", tmp_path / "rl")
    steps = [row for row in result["metrics"] if "env/all/reward/total" in row]
    # 3 batches of 2 groups of 4 rollouts each.
    assert [row["step"] for row in steps] == [0, 1, 2]
    for row in steps:
        assert 0.0 <= row["env/all/reward/total"] <= 1.0
        assert row["env/all/total_episodes"] == 8
        assert row["env/all/by_group/frac_mixed"] > 0  # rewards differed within groups: the loss had a signal
        assert row["tokens/sampled"] > 0 and row["tokens/trained"] > 0
        assert math.isfinite(row["optim/entropy"])
    checkpoints = (tmp_path / "rl" / "checkpoints.jsonl").read_text()
    assert '"name": "final"' in checkpoints

    cookbook_report.append(f"RL loop (tinker_cookbook.rl.train.main), 3 steps of 2 groups x 4 rollouts, {offline}:")
    cookbook_report.append("  step  reward/total  frac_mixed  sampled_tokens")
    for row in steps:
        cookbook_report.append(
            f"  {row['step']:>4}  {_figure(row['env/all/reward/total']):>12}  "
            f"{_figure(row['env/all/by_group/frac_mixed']):>10}  {row['tokens/sampled']:>14}"
        )
