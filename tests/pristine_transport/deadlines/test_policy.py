"""The decisions, by table: pure functions of (policy, deadlines, state, outcome) -> verdict."""

from __future__ import annotations

import pytest

from pristine_transport.manifest import PollBackoffSpec, RetryPolicySpec
from pristine_transport.policy import (
    Attempt,
    Deadlines,
    GiveUp,
    PollAnswer,
    Retry,
    RetryBudget,
    RetryState,
    backoff_delay,
    decide_retry,
    is_bare_400,
    may_have_run,
    poll_delay,
    poll_is_progress,
)

STANDARD = RetryPolicySpec()  # Stainless: 10 re-sends, 0.5 s doubling to 10 s, jitter down to 0.75
SAMPLING = RetryPolicySpec(kind="sampling", max_retries=None, progress_timeout_s=7200.0)
NONE = RetryPolicySpec(max_retries=0)
OFFICIAL = Deadlines()
NO_ROUNDS = Deadlines(budget=RetryBudget(rounds=False))


@pytest.mark.parametrize(
    ("step", "mode", "random", "expected"),
    [
        (0, "none", 0.5, 0.5),
        (3, "none", 0.5, 4.0),
        (10, "none", 0.5, 10.0),  # capped
        (0, "down", 1.0, 0.375),  # Stainless: x [0.75, 1]
        (0, "down", 0.0, 0.5),
        (1, "both", 0.0, 0.75),  # sampling: +-25 %
        (1, "both", 1.0, 1.25),
        (10, "both", 1.0, 10.0),  # clamped to the cap
    ],
)
def test_one_backoff(step: int, mode: str, random: float, expected: float) -> None:
    assert backoff_delay(step, initial_s=0.5, max_s=10.0, jitter=0.25, mode=mode, random=random) == expected  # type: ignore[arg-type]


def test_the_official_round_pauses_are_min_2_pow_n_30() -> None:
    assert [backoff_delay(n, initial_s=1.0, max_s=30.0) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


R = 0.0  # random: no jitter below the base


@pytest.mark.parametrize(
    ("policy", "deadlines", "state", "attempt", "expected"),
    [
        # retryable outcomes within the policy's own re-sends: the Stainless pace
        (STANDARD, OFFICIAL, RetryState(remaining_s=300), Attempt(status=503), Retry(0.5, "status 503")),
        (
            STANDARD,
            OFFICIAL,
            RetryState(round_retries=3, remaining_s=300),
            Attempt(status=429),
            Retry(4.0, "status 429"),
        ),
        (STANDARD, OFFICIAL, RetryState(remaining_s=300), Attempt(failure="ConnectError"), Retry(0.5, "ConnectError")),
        (
            STANDARD,
            OFFICIAL,
            RetryState(remaining_s=300),
            Attempt(status=503, retry_after_s=7.0),
            Retry(7.0, "status 503"),
        ),
        # not retryable: handed back as it is
        (STANDARD, OFFICIAL, RetryState(remaining_s=300), Attempt(status=404), GiveUp(None)),
        (STANDARD, OFFICIAL, RetryState(remaining_s=300), Attempt(status=503, should_retry="false"), GiveUp(None)),
        (NONE, OFFICIAL, RetryState(remaining_s=300), Attempt(status=503), GiveUp(None)),
        # the policy's re-sends are spent: the official budget starts another round after min(2**n, 30) s
        (
            STANDARD,
            OFFICIAL,
            RetryState(round_retries=10, rounds=0, remaining_s=250),
            Attempt(status=503),
            Retry(1.0, "status 503", new_round=True),
        ),
        (
            STANDARD,
            OFFICIAL,
            RetryState(round_retries=10, rounds=6, remaining_s=250),
            Attempt(status=503),
            Retry(30.0, "status 503", new_round=True),
        ),
        (STANDARD, NO_ROUNDS, RetryState(round_retries=10, remaining_s=250), Attempt(status=503), GiveUp(None)),
        # the next re-send would start after the no-progress deadline
        (
            STANDARD,
            OFFICIAL,
            RetryState(round_retries=10, rounds=6, remaining_s=20),
            Attempt(status=503),
            GiveUp("no progress for the deadline (next re-send would start after it): status 503", "no_progress"),
        ),
        # an empty-body 400 counts as a connection failure while tokens last
        (
            STANDARD,
            OFFICIAL,
            RetryState(remaining_s=300, bare_400_tokens=16),
            Attempt(status=400, bare=True),
            Retry(0.5, "status 400 with an empty body (counted as a connection failure)", takes_bare_400_token=True),
        ),
        (
            STANDARD,
            OFFICIAL,
            RetryState(remaining_s=300, bare_400_tokens=0),
            Attempt(status=400, bare=True),
            GiveUp(None),
        ),
        (STANDARD, OFFICIAL, RetryState(remaining_s=300, bare_400_tokens=16), Attempt(status=400), GiveUp(None)),
        # a poison request of an unlimited policy: capped only while others succeed
        (
            SAMPLING,
            OFFICIAL,
            RetryState(retries=9, failures_in_a_row=10, others_succeeded=True, remaining_s=200),
            Attempt(status=500),
            GiveUp("10 failed attempts in a row while other requests succeed", "failed_attempts"),
        ),
        (
            SAMPLING,
            OFFICIAL,
            RetryState(retries=9, failures_in_a_row=10, others_succeeded=False, remaining_s=200),
            Attempt(status=500),
            Retry(7.5, "status 500"),
        ),  # 10 s, jittered -25 %
    ],
)
def test_decide_retry(
    policy: RetryPolicySpec, deadlines: Deadlines, state: RetryState, attempt: Attempt, expected: object
) -> None:
    assert decide_retry(policy, deadlines, state, attempt, R) == expected


@pytest.mark.parametrize(
    ("attempt", "ran"),
    [
        (Attempt(failure="ConnectError"), False),
        (Attempt(failure="ClientConnectorError"), False),
        (Attempt(failure="ReadTimeout"), True),
        (Attempt(failure="AttemptDeadline"), True),
        (Attempt(failure="RemoteProtocolError"), True),
        (Attempt(status=429, backpressure=True), False),
        (Attempt(status=429), False),
        (Attempt(status=400, bare=True), False),
        (Attempt(status=409), True),
        (Attempt(status=503), True),
    ],
)
def test_may_have_run(attempt: Attempt, ran: bool) -> None:
    assert may_have_run(attempt) is ran


@pytest.mark.parametrize(
    ("content", "bare"),
    [(b"", True), (b"  ", True), (b"{}", True), (b'{"detail": ""}', True), (b'{"detail": "x"}', False)],
)
def test_is_bare_400(content: bytes, bare: bool) -> None:
    assert is_bare_400(400, content) is bare
    assert not is_bare_400(500, content)


SPEC = PollBackoffSpec(initial_s=0.05, max_s=1.0, jitter=0.25, connection_error_max_s=30.0)


@pytest.mark.parametrize(
    ("answer", "held", "streak", "delay", "progress"),
    [
        (PollAnswer.TRY_AGAIN, True, 1, 0.0, True),  # the server held the poll: it paces us
        (PollAnswer.TRY_AGAIN, False, 1, 0.05, True),
        (PollAnswer.TRY_AGAIN, False, 6, 1.0, True),  # capped
        (PollAnswer.QUEUED, False, 2, 0.1, True),
        (PollAnswer.NOT_YET, False, 1, 0.05, False),
        (PollAnswer.SERVER_ERROR, False, 3, 0.2, False),
        (PollAnswer.BARE_400, False, 1, 0.05, False),
        (PollAnswer.METADATA_FIRST, False, 1, 0.0, True),  # fetch the full result at once, once
        (PollAnswer.METADATA_AGAIN, False, 1, 0.05, False),  # the hot loop: backs off like any quick answer
        (PollAnswer.METADATA_AGAIN, False, 5, 0.8, False),
        (PollAnswer.NO_ANSWER, False, 1, 1.0, False),  # min(2**n, 30)
        (PollAnswer.NO_ANSWER, True, 6, 30.0, False),
        (PollAnswer.SHED, False, 3, 4.0, False),
    ],
)
def test_poll_pacing_and_progress(answer: PollAnswer, held: bool, streak: int, delay: float, progress: bool) -> None:
    assert poll_delay(answer, held=held, streak=streak, spec=SPEC, random=0.5) == pytest.approx(delay)
    assert poll_is_progress(answer) is progress
