"""What a poll's answer means and what follows it, decided by pure functions (no clock, no I/O): the resolver only
sends the polls, sleeps as told and delivers."""

from __future__ import annotations

import pytest

from pristine_transport.manifest import FuturesSpec, MatchSpec, MetadataOnlySpec
from pristine_transport.policy import (
    PollAnswer,
    PollBody,
    PollBodyVerdict,
    PollEnd,
    PollReading,
    PollStreaks,
    PollWait,
    next_poll,
    poll_wait_within_deadline,
    read_poll_answer,
)

SPEC = FuturesSpec(
    retrieve_endpoint="retrieve",
    try_again=MatchSpec(field="type", value="try_again"),
    metadata_only=MetadataOnlySpec(field="type", value="metadata_only", size_field="size"),
    bad_request_retries=2,
)
"""Backoff defaults: not-ready waits 0.05 s doubling to 1 s (jitter 0.25, none at random 0.5); no answer and shed
waits 1 s doubling to 30 s."""

A = PollAnswer
S = PollStreaks


@pytest.mark.parametrize(
    ("status", "content", "welcome", "encoded", "expected"),
    [
        (
            200,
            b'{"loss": 1}',
            True,
            False,
            PollReading(PollBody.RESULT, "HTTP 200", {"loss": 1}, PollBodyVerdict(PollBody.RESULT)),
        ),
        (200, b"\x08\x01", True, True, PollReading(PollBody.RESULT, "HTTP 200")),  # an encoded result: not read here
        (200, b"not json", True, False, PollReading(PollEnd.NOT_JSON, "HTTP 200")),
        (204, b"", True, False, PollReading(PollEnd.NOT_JSON, "HTTP 204")),
        (
            200,
            b'{"type": "try_again", "queue_state": "active"}',
            True,
            False,
            PollReading(
                A.TRY_AGAIN,
                "try_again (active)",
                {"type": "try_again", "queue_state": "active"},
                PollBodyVerdict(A.TRY_AGAIN, "try_again (active)"),
            ),
        ),
        (
            200,
            b'{"type": "metadata_only", "size": 7}',
            True,
            False,
            PollReading(
                A.METADATA_FIRST,
                "metadata_only",
                {"type": "metadata_only", "size": 7},
                PollBodyVerdict(A.METADATA_FIRST, "metadata_only", size=7),
            ),
        ),
        (
            200,
            b'{"error": "boom"}',
            True,
            False,
            PollReading(PollBody.FAILED, "HTTP 200", {"error": "boom"}, PollBodyVerdict(PollBody.FAILED)),
        ),
        (408, b'{"queue_state": "active"}', True, False, PollReading(A.QUEUED, "HTTP 408")),
        (408, b'{"queue_state": "active"}', True, True, PollReading(A.QUEUED, "HTTP 408")),  # the status decides
        (503, b"", False, False, PollReading(A.SERVER_ERROR, "HTTP 503")),
        (429, b"", True, False, PollReading(A.SHED, "HTTP 429")),
        (400, b"", True, False, PollReading(A.BARE_400, "HTTP 400")),
        (410, b"", True, False, PollReading(PollEnd.EXPIRED, "HTTP 410")),
        (401, b'{"detail": "no"}', True, False, PollReading(PollEnd.FATAL, "HTTP 401")),
    ],
)
def test_read_poll_answer(status: int, content: bytes, welcome: bool, encoded: bool, expected: PollReading) -> None:
    got = read_poll_answer(status, content, SPEC, metadata_only_welcome=welcome, encoded_result=encoded)
    assert got == expected


@pytest.mark.parametrize(
    ("answer", "streaks", "held", "expected"),
    [
        # ends are the future's outcome, whatever the streaks
        (PollBody.RESULT, S(quick=3), False, PollBody.RESULT),
        (PollBody.FAILED, S(), True, PollBody.FAILED),
        (PollEnd.EXPIRED, S(bare_400=2), False, PollEnd.EXPIRED),
        (PollEnd.FATAL, S(), False, PollEnd.FATAL),
        # no answer: whole seconds doubling to 30, its own streak; the others go on
        (A.NO_ANSWER, S(), False, PollWait(1.0, S(no_answer=1), progress=False)),
        (A.NO_ANSWER, S(no_answer=3, bare_400=1, quick=2), False, PollWait(8.0, S(4, 0, 1, 2), progress=False)),
        (A.NO_ANSWER, S(no_answer=9), True, PollWait(30.0, S(no_answer=10), progress=False)),
        # shed: the same pace as no answer, even for a held poll; ends the no-answer and empty-400 streaks
        (A.SHED, S(no_answer=4, bare_400=1, quick=2), False, PollWait(1.0, S(shed=1, quick=2), progress=False)),
        (A.SHED, S(shed=2), True, PollWait(4.0, S(shed=3), progress=False)),
        # not ready, answered quickly: 0.05 s doubling to 1 s, by the quick streak
        (A.TRY_AGAIN, S(), False, PollWait(0.05, S(quick=1), progress=True)),
        (A.TRY_AGAIN, S(no_answer=2, shed=3, bare_400=1, quick=2), False, PollWait(0.2, S(quick=3), progress=True)),
        (A.NOT_YET, S(quick=10), False, PollWait(1.0, S(quick=11), progress=False)),
        (A.QUEUED, S(), False, PollWait(0.05, S(quick=1), progress=True)),
        (A.SERVER_ERROR, S(quick=1), False, PollWait(0.1, S(quick=2), progress=False)),
        (A.METADATA_AGAIN, S(), False, PollWait(0.05, S(quick=1), progress=False)),
        # a poll the server held open paces itself: re-poll at once, the quick streak starts over
        (A.TRY_AGAIN, S(quick=5), True, PollWait(0.0, S(), progress=True)),
        (A.SERVER_ERROR, S(quick=5), True, PollWait(0.0, S(), progress=False)),
        # the metadata-only reply is fetched in full at once
        (A.METADATA_FIRST, S(quick=4), False, PollWait(0.0, S(), progress=True)),
        # empty bad requests: up to bad_request_retries (2) in a row, then the future ends
        (A.BARE_400, S(), False, PollWait(0.05, S(bare_400=1, quick=1), progress=False)),
        (A.BARE_400, S(bare_400=1, quick=1), False, PollWait(0.1, S(bare_400=2, quick=2), progress=False)),
        (A.BARE_400, S(bare_400=2, quick=2), False, PollEnd.REPEATED_BARE_400),
        (A.TRY_AGAIN, S(bare_400=2), False, PollWait(0.05, S(quick=1), progress=True)),  # another answer: over
        (A.BARE_400, S(no_answer=5, bare_400=1), False, PollWait(0.05, S(bare_400=2, quick=1), progress=False)),
    ],
)
def test_next_poll(
    answer: PollAnswer | PollEnd | PollBody, streaks: PollStreaks, held: bool, expected: PollWait | PollEnd | PollBody
) -> None:
    assert next_poll(answer, streaks, held=held, spec=SPEC, random=0.5) == expected


def test_next_poll_jitters_only_the_not_ready_backoff() -> None:
    low = next_poll(A.TRY_AGAIN, S(quick=2), held=False, spec=SPEC, random=0.0)
    high = next_poll(A.TRY_AGAIN, S(quick=2), held=False, spec=SPEC, random=0.999)
    assert isinstance(low, PollWait) and isinstance(high, PollWait)
    assert low.delay_s == pytest.approx(0.2 * 0.75) and high.delay_s == pytest.approx(0.2 * 1.25, rel=1e-3)
    shed = next_poll(A.SHED, S(), held=False, spec=SPEC, random=0.0)
    assert isinstance(shed, PollWait) and shed.delay_s == 1.0


def test_no_empty_bad_request_is_polled_again_when_the_manifest_allows_none() -> None:
    strict = FuturesSpec(retrieve_endpoint="retrieve", bad_request_retries=0)
    assert next_poll(A.BARE_400, S(), held=False, spec=strict, random=0.5) is PollEnd.REPEATED_BARE_400


@pytest.mark.parametrize(
    ("delay_s", "now", "last_progress", "no_progress_s", "expected"),
    [
        (0.5, 10.0, 0.0, None, 0.5),  # no deadline
        (0.5, 10.0, 0.0, 300.0, 0.5),
        (0.0, 10.0, 10.0, 300.0, 0.0),
        (2.0, 299.0, 0.0, 300.0, None),  # the next poll would start at 301: after the deadline
        (1.0, 299.0, 0.0, 300.0, None),  # exactly at it counts as after
        (0.9, 299.0, 0.0, 300.0, 0.9),
        (0.0, 300.0, 0.0, 300.0, None),  # the deadline has passed
        (400.0, 50.0, 50.0, 300.0, 150.0),  # progress just now: ask again within the deadline
        (30.0, 50.0, 50.0, 20.0, 10.0),
    ],
)
def test_poll_wait_within_deadline(
    delay_s: float, now: float, last_progress: float, no_progress_s: float | None, expected: float | None
) -> None:
    got = poll_wait_within_deadline(delay_s, now=now, last_progress=last_progress, no_progress_s=no_progress_s)
    assert got == expected
