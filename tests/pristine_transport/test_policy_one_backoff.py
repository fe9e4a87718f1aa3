"""One backoff: every capped exponential wait (retry layer, futures poller, a sample's re-submit after 410, the
recovery policy) is pristine_transport.policy.backoff_delay; its table here, and the callers' own tables."""

import ast
import math
from pathlib import Path

import pytest

import pristine_transport
import tinkex
from pristine_transport.manifest import PollBackoffSpec
from pristine_transport.policy import PollAnswer, backoff_delay, poll_delay
from tinkex.recovery import RecoveryPolicy


@pytest.mark.parametrize(
    ("step", "initial_s", "max_s", "jitter", "mode", "random", "expected"),
    [
        (0, 0.5, 10.0, 0.0, "none", 0.5, 0.5),
        (1, 0.5, 10.0, 0.0, "none", 0.5, 1.0),
        (4, 0.5, 10.0, 0.0, "none", 0.5, 8.0),
        (5, 0.5, 10.0, 0.0, "none", 0.5, 10.0),  # capped
        (10_000, 0.5, 10.0, 0.0, "none", 0.5, 10.0),  # no overflow for absurd steps
        (-1, 5.0, 60.0, 0.0, "none", 0.5, 2.5),  # a step below zero halves (recovery's attempt 0)
        (3, 0.5, math.inf, 0.0, "none", 0.5, 4.0),  # uncapped (a sample's re-submits)
        (2, 0.5, 10.0, 0.25, "down", 1.0, 1.5),  # Stainless: [1 - jitter, 1] of the base
        (2, 0.5, 10.0, 0.25, "down", 0.0, 2.0),
        (2, 0.5, 10.0, 0.25, "both", 0.0, 1.5),  # sampling: ±jitter of the base
        (2, 0.5, 10.0, 0.25, "both", 1.0, 2.5),
        (6, 0.5, 10.0, 0.25, "both", 1.0, 10.0),  # clamped to the cap after jitter
        (0, 0.0, 10.0, 0.25, "both", 1.0, 0.0),
    ],
)
def test_backoff_delay_table(
    step: int, initial_s: float, max_s: float, jitter: float, mode: str, random: float, expected: float
) -> None:
    got = backoff_delay(step, initial_s=initial_s, max_s=max_s, jitter=jitter, mode=mode, random=random)  # type: ignore[arg-type]
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (5, 60.0), (9, 60.0)],
)
def test_recovery_waits_double_from_its_initial_to_its_cap(attempt: int, expected: float) -> None:
    assert RecoveryPolicy().backoff_s(attempt) == expected


def test_the_poller_waits_by_the_same_function() -> None:
    spec = PollBackoffSpec(initial_s=0.05, max_s=1.0, jitter=0.25)
    for streak in range(1, 10):
        expected = backoff_delay(streak - 1, initial_s=0.05, max_s=1.0, jitter=0.25, mode="both", random=0.3)
        assert poll_delay(PollAnswer.TRY_AGAIN, held=False, streak=streak, spec=spec, random=0.3) == expected


def _exponentials(path: Path) -> list[str]:
    """``x * 2 ** n`` / ``2.0 ** n`` written out (a backoff by hand) anywhere in a module."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            if isinstance(node.left, ast.Constant) and node.left.value == 2:
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_caller_writes_the_exponential_out() -> None:
    pristine = Path(pristine_transport.__file__).parent
    sdk = Path(tinkex.__file__).parent
    callers = [
        pristine / "layers" / "retry.py",
        pristine / "futures.py",
        sdk / "sampling_client.py",
        sdk / "recovery.py",
    ]
    assert [hit for path in callers for hit in _exponentials(path)] == []
