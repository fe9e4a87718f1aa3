"""What a poll's HTTP status says, decided by one pure function (the poller only applies it)."""

import pytest

from pristine_transport.policy import PollAnswer, PollEnd, poll_status_verdict


@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (200, b'{"result": 1}', None),  # the body decides
        (204, b"", None),
        (429, b"", PollAnswer.SHED),
        (429, b'{"queue_state": "active"}', PollAnswer.SHED),
        (500, b"", PollAnswer.SERVER_ERROR),
        (503, b'{"queue_state": "active"}', PollAnswer.SERVER_ERROR),
        (408, b'{"queue_state": "paused_capacity"}', PollAnswer.QUEUED),
        (408, b"", PollAnswer.NOT_YET),
        (408, b'{"message": "timeout"}', PollAnswer.NOT_YET),
        (410, b'{"message": "gone"}', PollEnd.EXPIRED),
        (400, b"", PollAnswer.BARE_400),
        (400, b'{"detail": ""}', PollAnswer.BARE_400),
        (400, b'{"detail": "bad request id"}', PollEnd.FATAL),
        (404, b"", PollEnd.FATAL),
        (302, b"", PollEnd.FATAL),
        (401, b"{}", PollEnd.FATAL),
    ],
)
def test_poll_status_verdict(status: int, content: bytes, expected: PollAnswer | PollEnd | None) -> None:
    got = poll_status_verdict(status, content, expiry_status=410, queue_state_field="queue_state")
    assert got is expected


def test_the_expiry_status_and_queue_state_field_are_the_manifests() -> None:
    assert poll_status_verdict(404, b"", expiry_status=404, queue_state_field="state") is PollEnd.EXPIRED
    assert poll_status_verdict(410, b"", expiry_status=404, queue_state_field="state") is PollEnd.FATAL
    assert (
        poll_status_verdict(408, b'{"state": "x"}', expiry_status=404, queue_state_field="state") is PollAnswer.QUEUED
    )
    assert poll_status_verdict(408, b'{"queue_state": "x"}', expiry_status=404, queue_state_field="lane") is (
        PollAnswer.NOT_YET
    )
