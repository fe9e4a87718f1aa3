"""The write-outcome verdict, by table: what the client knows about a write -> ran / did not run / may have run."""

from __future__ import annotations

import pytest

from pristine_transport.policy import (
    Attempt,
    ReplayAnswer,
    WriteOutcome,
    may_have_run,
    write_outcome,
    write_outcome_advice,
)

NO_CONNECTION = Attempt(failure="ConnectError")
READ_TIMEOUT = Attempt(failure="ReadTimeout")
DROPPED = Attempt(failure="RemoteProtocolError")
BACKPRESSURE = Attempt(status=429, backpressure=True)
PROXY_400 = Attempt(status=400, bare=True)
UNPROCESSABLE = Attempt(status=422)
UNAVAILABLE = Attempt(status=503)
ACCEPTED = Attempt(status=200)


@pytest.mark.parametrize(
    ("attempts", "replay", "expired", "expected"),
    [
        # nothing sent, or nothing that could reach execution
        ((), None, False, "did_not_run"),
        ((NO_CONNECTION,), None, False, "did_not_run"),
        ((NO_CONNECTION, BACKPRESSURE, PROXY_400), None, False, "did_not_run"),
        ((UNPROCESSABLE,), None, False, "did_not_run"),
        # an attempt that may have reached execution, and nothing settles it
        ((READ_TIMEOUT,), None, False, "may_have_run"),
        ((DROPPED, NO_CONNECTION), None, False, "may_have_run"),  # the later refusal does not undo the first
        ((NO_CONNECTION, UNAVAILABLE), None, False, "may_have_run"),
        ((UNAVAILABLE, PROXY_400, PROXY_400), None, False, "may_have_run"),  # ran, answer lost, re-sends refused
        ((Attempt(status=409),), None, False, "may_have_run"),
        # the server accepted one attempt
        ((READ_TIMEOUT, ACCEPTED), None, False, "ran"),
        ((ACCEPTED,), None, False, "ran"),
        ((Attempt(status=201),), None, False, "ran"),
        # the re-send with the same idempotency key settles an unknown
        ((READ_TIMEOUT,), "answered", False, "ran"),
        ((READ_TIMEOUT, UNAVAILABLE), "unknown_key", False, "did_not_run"),
        ((), "answered", False, "ran"),
        # a future that expired: the server accepted and executed it, whatever the attempts saw
        ((), None, True, "ran"),
        ((READ_TIMEOUT,), "unknown_key", True, "ran"),
        ((ACCEPTED,), None, True, "ran"),
    ],
)
def test_write_outcome(
    attempts: tuple[Attempt, ...], replay: ReplayAnswer | None, expired: bool, expected: WriteOutcome
) -> None:
    assert write_outcome(attempts, replay_answer=replay, future_expired=expired) == expected


@pytest.mark.parametrize(
    "attempts",
    [(), (NO_CONNECTION,), (READ_TIMEOUT,), (BACKPRESSURE, DROPPED), (UNPROCESSABLE, PROXY_400), (UNAVAILABLE,)],
)
def test_without_replay_or_success_the_verdict_is_the_per_attempt_rule(attempts: tuple[Attempt, ...]) -> None:
    """One concept: ``may_have_run`` (one attempt, as DeadlineExceededError.may_have_run) is the same rule."""
    verdict = write_outcome(attempts)
    assert (verdict == "may_have_run") is any(may_have_run(a) for a in attempts)
    assert verdict != "ran"


@pytest.mark.parametrize(
    ("refused_with", "must_say", "must_not_say"),
    [
        (None, "safe to send it again", "refused"),  # never reached the server
        (429, "safe to send it again", "refused"),  # refused for now
        (408, "safe to send it again", "refused"),
        (400, "refused with HTTP 400", "safe to send"),  # refused as it is: a re-send would be too
        (410, "refused with HTTP 410", "safe to send"),
        (422, "sending it again unchanged will be refused", "safe to send"),
    ],
)
def test_a_refused_write_is_not_advertised_as_safe_to_send_again(
    refused_with: int | None, must_say: str, must_not_say: str
) -> None:
    advice = write_outcome_advice("did_not_run", what="POST /x", refused_with=refused_with)
    assert advice.startswith("POST /x did not run on the server")
    assert must_say in advice and must_not_say not in advice


@pytest.mark.parametrize(
    ("outcome", "expired", "changes_state", "must_say"),
    [
        ("did_not_run", False, False, ("did not run", "safe to send it again")),
        ("may_have_run", False, True, ("may have run", "same idempotency key", "does not run twice")),
        ("ran", False, True, ("ran on the server", "do not submit it again")),
        ("ran", True, True, ("ran on the server", "expired", "do not submit it again", "continue with the next step")),
        ("ran", True, False, ("ran on the server", "expired", "it will run a second time")),
    ],
)
def test_advice_names_the_outcome_and_what_to_do(
    outcome: WriteOutcome, expired: bool, changes_state: bool, must_say: tuple[str, ...]
) -> None:
    advice = write_outcome_advice(outcome, what="forward_backward", future_expired=expired, changes_state=changes_state)
    assert advice.startswith("forward_backward ")
    for phrase in must_say:
        assert phrase in advice, (phrase, advice)
