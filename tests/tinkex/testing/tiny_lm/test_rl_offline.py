"""RL offline (examples/rl_offline.py): sample -> reward -> advantage -> forward_backward -> optim_step raises the
mean reward, with importance_sampling and with ppo, against a real loopback LocalServer."""

from __future__ import annotations

import importlib.util
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import tinkex
from tinkex.testing import LocalServer

EXAMPLE = Path(__file__).resolve().parents[4] / "examples" / "rl_offline.py"


@pytest.fixture(scope="module")
def rl_offline() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rl_offline_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def client() -> Iterator[tinkex.Client]:
    with LocalServer(base_models=("tinkex/fake-tiny",)) as server:
        with tinkex.Client(api_key="tml-rl", base_url=server.base_url, telemetry=False) as running:
            yield running


def test_the_reward_is_the_share_of_letters_in_place(rl_offline: ModuleType) -> None:
    assert rl_offline.reward("blue sky", "blue") == 1.0
    assert rl_offline.reward("bxue", "blue") == 0.75
    assert rl_offline.reward("", "blue") == 0.0 and rl_offline.reward("xxxx", "blue") == 0.0


@pytest.mark.parametrize(("loss_fn", "epochs"), [("importance_sampling", 1), ("ppo", 3)])
def test_the_mean_reward_rises(rl_offline: ModuleType, client: tinkex.Client, loss_fn: str, epochs: int) -> None:
    history = rl_offline.train(client, rounds=20, group_size=16, loss_fn=loss_fn, epochs=epochs)
    rewards = [round(r.mean_reward, 3) for r in history]
    print(f"\n{loss_fn} mean reward per round: {rewards}", file=sys.stderr)
    first, last = statistics.fmean(rewards[:5]), statistics.fmean(rewards[-5:])
    assert last >= first + 0.25, rewards
    assert rewards[-1] > rewards[0]


def test_the_example_runs_as_a_program(rl_offline: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert rl_offline.main(["--rounds", "3", "--group-size", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("mean reward") == 3 and "reward for answering 'blue'" in out
