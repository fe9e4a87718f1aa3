"""What one poll of a future sends (pristine_transport.future_polls), by a table of states and manifests."""

from __future__ import annotations

import pytest

from pristine_transport.future_polls import PollState, poll_deadlines, poll_request_body, poll_request_headers
from pristine_transport.manifest import FuturePollHeaders, FuturesSpec, ResultFormatSpec
from pristine_transport.policy import Deadlines

NAMES = FuturePollHeaders(iteration="X-Iter", request_type="X-Type", roundtrip="X-Roundtrip")
PROTO = ResultFormatSpec(content_type="application/x-protobuf", serializer="proto", message="m")
JSON = ResultFormatSpec(content_type="application/json")


def _state(
    iteration: int = 0, request_type: str | None = "Sample", formats: tuple[ResultFormatSpec, ...] = ()
) -> PollState:
    state = PollState("r1", request_type, 0.25, formats)
    state.iteration = iteration
    return state


@pytest.mark.parametrize(
    ("names", "state", "expected"),
    [
        (NAMES, _state(), {"X-Iter": "0", "X-Type": "Sample", "X-Roundtrip": "0.25"}),
        (NAMES, _state(iteration=3), {"X-Iter": "3", "X-Type": "Sample"}),  # the roundtrip goes with the first only
        (NAMES, _state(request_type=None), {"X-Iter": "0", "X-Roundtrip": "0.25"}),
        (
            NAMES,
            _state(iteration=1, formats=(PROTO, JSON)),
            {"X-Iter": "1", "X-Type": "Sample", "Accept": "application/x-protobuf, application/json"},
        ),
        (FuturePollHeaders(), _state(), {}),
        (FuturePollHeaders(), _state(formats=(JSON,)), {"Accept": "application/json"}),
    ],
)
def test_poll_request_headers(names: FuturePollHeaders, state: PollState, expected: dict[str, str]) -> None:
    assert poll_request_headers(names, state) == expected


def test_poll_request_body_says_whether_metadata_only_is_still_welcome() -> None:
    spec = FuturesSpec(retrieve_endpoint="retrieve", allow_metadata_only_field="allow_metadata_only")
    state = _state()
    assert poll_request_body(spec, state) == {"request_id": "r1", "allow_metadata_only": True}
    state.allow_metadata_only = False
    assert poll_request_body(spec, state) == {"request_id": "r1", "allow_metadata_only": False}
    bare = FuturesSpec(retrieve_endpoint="retrieve", request_id_field="id")
    assert poll_request_body(bare, state) == {"id": "r1"}


@pytest.mark.parametrize(
    ("no_progress_s", "last_progress", "now", "expected"),
    [
        (None, 0.0, 500.0, None),  # no deadline: the future's deadlines as they are
        (300.0, 0.0, 0.0, 300.0),
        (300.0, 100.0, 250.0, 150.0),  # what is left since the last progress
        (300.0, 0.0, 299.5, 0.5),
        (300.0, 0.0, 300.0, 0.001),  # spent: the poll still goes out, with the least deadline
        (300.0, 0.0, 400.0, 0.001),
    ],
)
def test_poll_deadlines_never_outlast_the_futures_own(
    no_progress_s: float | None, last_progress: float, now: float, expected: float | None
) -> None:
    deadlines = Deadlines(no_progress_s=no_progress_s)
    state = _state()
    state.last_progress = last_progress
    got = poll_deadlines(deadlines, state, now)
    if expected is None:
        assert got is deadlines
    else:
        assert got.no_progress_s == pytest.approx(expected)
    assert got.budget == deadlines.budget
