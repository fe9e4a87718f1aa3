"""What a poll's HTTP status says, decided by one pure function of (status, body, the manifest's futures block);
the poller only applies it."""

import json
from pathlib import Path

import pytest

from pristine_transport.manifest import FuturesSpec, PollStatusesSpec, load_manifest
from pristine_transport.policy import PollAnswer, PollEnd, poll_status_verdict

DEFAULTS = FuturesSpec(retrieve_endpoint="retrieve")
"""A futures block that states no poll statuses: the defaults (today's Tinker meanings)."""

OTHER_API = FuturesSpec(
    retrieve_endpoint="retrieve",
    queue_state_field="lane",
    expiry_status=404,
    poll_statuses=PollStatusesSpec(shed=[420, 503], server_errors_from=None, not_yet=[425], empty_bad_request=[]),
)
"""Another API's meanings: sheds with 420 and 503, has no server-error range, says "too early" for not yet, sends no
empty bad requests and expires with 404."""


@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (200, b'{"result": 1}', None),  # the body decides
        (204, b"", None),
        (200, b"", None),
        (429, b"", PollAnswer.SHED),
        (429, b'{"queue_state": "active"}', PollAnswer.SHED),
        (500, b"", PollAnswer.SERVER_ERROR),
        (503, b'{"queue_state": "active"}', PollAnswer.SERVER_ERROR),
        (599, b"", PollAnswer.SERVER_ERROR),
        (408, b'{"queue_state": "paused_capacity"}', PollAnswer.QUEUED),
        (408, b"", PollAnswer.NOT_YET),
        (408, b'{"message": "timeout"}', PollAnswer.NOT_YET),
        (410, b'{"message": "gone"}', PollEnd.EXPIRED),
        (410, b"", PollEnd.EXPIRED),
        (400, b"", PollAnswer.BARE_400),
        (400, b"  \n", PollAnswer.BARE_400),
        (400, b"{}", PollAnswer.BARE_400),
        (400, b'{"detail": ""}', PollAnswer.BARE_400),
        (400, b'{"detail": "bad request id"}', PollEnd.FATAL),
        (400, b"not json", PollEnd.FATAL),
        (404, b"", PollEnd.FATAL),
        (402, b"", PollEnd.FATAL),
        (302, b"", PollEnd.FATAL),
        (101, b"", PollEnd.FATAL),
        (401, b"{}", PollEnd.FATAL),
        (409, b"", PollEnd.FATAL),
    ],
)
def test_the_default_meanings(status: int, content: bytes, expected: PollAnswer | PollEnd | None) -> None:
    assert poll_status_verdict(status, content, DEFAULTS) is expected


@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (200, b"{}", None),
        (420, b"", PollAnswer.SHED),
        (503, b"", PollAnswer.SHED),
        (500, b"", PollEnd.FATAL),  # no server-error range
        (502, b"", PollEnd.FATAL),
        (429, b"", PollEnd.FATAL),
        (425, b'{"lane": "slow"}', PollAnswer.QUEUED),  # its own queue-state field
        (425, b'{"queue_state": "active"}', PollAnswer.NOT_YET),
        (408, b'{"lane": "slow"}', PollEnd.FATAL),
        (404, b"", PollEnd.EXPIRED),
        (410, b"", PollEnd.FATAL),
        (400, b"", PollEnd.FATAL),  # no empty bad requests: an empty 400 is an answer like any other
    ],
)
def test_another_apis_meanings_come_from_its_manifest(
    status: int, content: bytes, expected: PollAnswer | PollEnd | None
) -> None:
    assert poll_status_verdict(status, content, OTHER_API) is expected


def test_an_empty_bad_request_can_be_any_status_the_manifest_names() -> None:
    spec = FuturesSpec(retrieve_endpoint="retrieve", poll_statuses=PollStatusesSpec(empty_bad_request=[400, 422]))
    assert poll_status_verdict(422, b"", spec) is PollAnswer.BARE_400
    assert poll_status_verdict(422, b'{"detail": "no"}', spec) is PollEnd.FATAL


def test_tinkers_manifest_states_the_meanings_explicitly_and_they_are_the_defaults() -> None:
    path = Path(__file__).resolve().parents[2] / "manifest.json"
    stated = json.loads(path.read_text())["futures"]["poll_statuses"]
    assert stated == {"shed": [429], "server_errors_from": 500, "not_yet": [408], "empty_bad_request": [400]}
    futures = load_manifest(path).futures
    assert futures is not None
    assert futures.poll_statuses == PollStatusesSpec()
    assert futures.expiry_status == 410 and futures.bad_request_retries == 3
