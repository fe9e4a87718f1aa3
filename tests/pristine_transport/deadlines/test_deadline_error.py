"""What a DeadlineExceededError tells about the write it gave up on."""

from __future__ import annotations

import pickle

import httpx
import pytest

from pristine_transport.deadlines import DeadlineExceededError

REQUEST = httpx.Request("POST", "http://127.0.0.1:1/api/v1/optim_step")


@pytest.mark.parametrize(
    ("may_have_run", "request_id", "outcome", "says"),
    [
        (False, None, "did_not_run", "did not run on the server: it is safe to send it again"),
        (True, None, "may_have_run", "may have run on the server"),
        (True, "req-7", "ran", "accepted the work (it runs or has run): do not submit it again"),
        (False, "req-7", "ran", "request_id='req-7'"),
    ],
)
def test_the_error_names_the_outcome_and_what_to_do(
    may_have_run: bool, request_id: str | None, outcome: str, says: str
) -> None:
    error = DeadlineExceededError(
        REQUEST,
        waited_on="optim_step",
        waited_s=3.0,
        deadline="no_progress",
        last_seen="HTTP 503",
        may_have_run=may_have_run,
        request_id=request_id,
    )
    assert error.outcome == outcome
    assert error.may_have_run == (outcome != "did_not_run")
    assert says in str(error) and "HTTP 503" in str(error)
    assert pickle.loads(pickle.dumps(error)).outcome == outcome
