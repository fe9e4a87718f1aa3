"""What a 2xx poll answer's body says, decided by one pure function (the poller only applies it)."""

from __future__ import annotations

import pytest

from pristine_transport.manifest import FailureSpec, FuturesSpec, MatchSpec, MetadataOnlySpec
from pristine_transport.policy import PollAnswer, PollBody, PollBodyVerdict, poll_body_verdict

SPEC = FuturesSpec(
    retrieve_endpoint="retrieve",
    try_again=MatchSpec(field="type", value="try_again"),
    metadata_only=MetadataOnlySpec(field="type", value="metadata_only", size_field="size"),
    failure=FailureSpec(
        field="error",
        category_field="category",
        rate_limit_patterns=["rate limit"],
        capacity_patterns=["out of capacity"],
        cancelled_patterns=["cancelled by"],
    ),
)
BARE = FuturesSpec(retrieve_endpoint="retrieve")
"""A manifest without try-again or metadata-only matches: only the failure field (default ``error``) is read."""


@pytest.mark.parametrize(
    ("body", "welcome", "expected"),
    [
        ({"loss": 1.0}, True, PollBodyVerdict(PollBody.RESULT)),
        ([1, 2], True, PollBodyVerdict(PollBody.RESULT)),
        ("done", True, PollBodyVerdict(PollBody.RESULT)),
        (None, True, PollBodyVerdict(PollBody.RESULT)),
        ({"type": "try_again"}, True, PollBodyVerdict(PollAnswer.TRY_AGAIN, "try_again (no queue state)")),
        (
            {"type": "try_again", "queue_state": "paused_capacity"},
            False,
            PollBodyVerdict(PollAnswer.TRY_AGAIN, "try_again (paused_capacity)"),
        ),
        # try-again wins over a failure field in the same body
        (
            {"type": "try_again", "error": "x"},
            True,
            PollBodyVerdict(PollAnswer.TRY_AGAIN, "try_again (no queue state)"),
        ),
        (
            {"type": "metadata_only", "size": 2048},
            True,
            PollBodyVerdict(PollAnswer.METADATA_FIRST, "metadata_only", size=2048),
        ),
        ({"type": "metadata_only", "size": 0}, True, PollBodyVerdict(PollAnswer.METADATA_FIRST, "metadata_only")),
        (
            {"type": "metadata_only", "size": 2048},
            False,
            PollBodyVerdict(PollAnswer.METADATA_AGAIN, "metadata_only again, although the full result was asked for"),
        ),
        ({"type": "metadata_only"}, True, PollBodyVerdict(PollBody.BAD_METADATA)),
        ({"type": "metadata_only", "size": -1}, True, PollBodyVerdict(PollBody.BAD_METADATA)),
        ({"type": "metadata_only", "size": True}, True, PollBodyVerdict(PollBody.BAD_METADATA)),
        ({"type": "metadata_only", "size": "12"}, False, PollBodyVerdict(PollBody.BAD_METADATA)),
        ({"type": "other", "size": 12}, True, PollBodyVerdict(PollBody.RESULT)),
        ({"error": "boom"}, True, PollBodyVerdict(PollBody.FAILED)),
        ({"error": None}, True, PollBodyVerdict(PollBody.FAILED)),
        ({"error": "boom", "category": "User"}, True, PollBodyVerdict(PollBody.FAILED, category="user")),
        ({"error": "boom", "category": "SERVER"}, True, PollBodyVerdict(PollBody.FAILED, category="server")),
        ({"error": "boom", "category": "client"}, True, PollBodyVerdict(PollBody.FAILED)),
        ({"error": "boom", "category": 3}, True, PollBodyVerdict(PollBody.FAILED)),
        ({"error": "Hit the RATE LIMIT"}, True, PollBodyVerdict(PollBody.FAILED, failure="rate_limited")),
        ({"error": "service out of capacity"}, True, PollBodyVerdict(PollBody.FAILED, failure="capacity")),
        ({"error": "Cancelled by the client"}, True, PollBodyVerdict(PollBody.FAILED, failure="cancelled")),
        # cancelled is checked first, then rate limit, then capacity
        (
            {"error": "cancelled by: rate limit, out of capacity"},
            True,
            PollBodyVerdict(PollBody.FAILED, failure="cancelled"),
        ),
        ({"error": "rate limit and out of capacity"}, True, PollBodyVerdict(PollBody.FAILED, failure="rate_limited")),
    ],
)
def test_poll_body_verdict(body: object, welcome: bool, expected: PollBodyVerdict) -> None:
    assert poll_body_verdict(body, SPEC, metadata_only_welcome=welcome) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"type": "try_again"}, PollBodyVerdict(PollBody.RESULT)),
        ({"type": "metadata_only", "size": 5}, PollBodyVerdict(PollBody.RESULT)),
        ({"error": "rate limit"}, PollBodyVerdict(PollBody.FAILED)),  # no patterns: a plain failure
    ],
)
def test_only_the_matches_the_manifest_declares_apply(body: object, expected: PollBodyVerdict) -> None:
    assert poll_body_verdict(body, BARE, metadata_only_welcome=True) == expected
