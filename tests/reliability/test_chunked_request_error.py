"""ChunkedRequestError alone: per chunk state, the slices to submit again, the advice, pickling."""

from __future__ import annotations

import pickle

import pytest

from tinkex.errors import ChunkedRequestError, ChunkReport


def chunk(index: int, outcome: str, *, sent: bool = True, error: str | None = None) -> ChunkReport:
    return ChunkReport(
        index=index, data_start=10 * index, data_stop=10 * index + 10, outcome=outcome,  # type: ignore[arg-type]
        seq_id=index + 1 if sent else None, request_id=f"r-{index}" if sent and outcome == "ran" else None, error=error,
    )


@pytest.mark.parametrize(
    ("chunks", "changes_state", "states", "redo", "says", "never_says"),
    [
        (  # refused at dispatch: the later one not sent
            [chunk(0, "ran"), chunk(1, "did_not_run", error="400"), chunk(2, "did_not_run", sent=False)],
            True, ["ran", "failed", "not_sent"], [(10, 20), (20, 30)],
            ("chunk(s) 0 ran and stay applied to the model", "submit only data[10:20], data[20:30]"), ("may have run",),
        ),
        (  # the answer lost: the client cannot tell
            [chunk(0, "may_have_run", error="timeout"), chunk(1, "did_not_run", sent=False)],
            True, ["failed", "not_sent"], [(10, 20)],
            ("chunk(s) 0 may have run: check before submitting them again", "submit only data[10:20]"), ("stay applied",),
        ),
        (  # a future failed on the server; a forward changes nothing
            [chunk(0, "ran"), chunk(1, "ran", error="Request failed: boom")],
            False, ["ran", "failed"], [],
            ("chunk(s) 0 ran;", "chunk(s) 1 ran on the server and failed there"), ("stay applied", "submit only"),
        ),
    ],
)
def test_the_report_says_what_ran_and_what_to_submit_again(
    chunks: list[ChunkReport],
    changes_state: bool,
    states: list[str],
    redo: list[tuple[int, int]],
    says: tuple[str, ...],
    never_says: tuple[str, ...],
) -> None:
    error = ChunkedRequestError("forward_backward", chunks, changes_state=changes_state)
    assert [c.state for c in error.chunks] == states and error.data_not_run() == redo
    assert error.outcome == next(c.outcome for c in chunks if c.error is not None)
    message = str(error)
    assert message.startswith(f"forward_backward of {chunks[-1].data_stop} data in {len(chunks)} chunks failed in part")
    for phrase in says:
        assert phrase in message, (phrase, message)
    for phrase in never_says:
        assert phrase not in message, (phrase, message)
    copy = pickle.loads(pickle.dumps(error))
    assert copy.chunks == error.chunks and str(copy) == message
