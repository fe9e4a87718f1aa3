"""The strict-sequence rule of LocalServer (``strict_sequence=True``), by table."""

from __future__ import annotations

import pytest

from tinkex.testing.sequence_rules import sequence_problem

SCOPE = "train:sess-1:train:0"


@pytest.mark.parametrize(
    ("last_ran", "got", "expected"),
    [
        (None, 1, None),  # a model's first request
        (None, 2, "expected seq_id 1, got 2"),  # the first one was refused and its seq_id skipped
        (1, 2, None),
        (4, 5, None),
        (4, 6, "expected seq_id 5, got 6"),  # a gap: what a never-reused seq_id leaves
        (4, 4, "expected seq_id 5, got 4"),  # an old seq_id that is not a replay (replays are answered earlier)
        (4, 1, "expected seq_id 5, got 1"),
    ],
)
def test_sequence_problem(last_ran: int | None, got: int, expected: str | None) -> None:
    problem = sequence_problem(SCOPE, last_ran, got)
    if expected is None:
        assert problem is None
    else:
        assert problem == f"seq_id out of order for model sess-1:train:0: {expected}"
