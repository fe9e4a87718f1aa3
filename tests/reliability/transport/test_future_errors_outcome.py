"""The errors of a future say what became of the write behind it: failed there (ran), abandoned (may have run),
or accepted but not retrievable (ran)."""

from __future__ import annotations

import pytest

from pristine_transport.futures import (
    FutureExpiredError,
    FutureRetrieveError,
    RequestCancelledError,
    RequestCapacityError,
    RequestFailedError,
)


@pytest.mark.parametrize(
    ("error", "outcome", "says"),
    [
        (RequestFailedError("Request failed: boom", request_id="r-1"), "ran", "it ran on the server and failed there"),
        (RequestCapacityError("Request failed: full", request_id="r-1"), "ran", "it ran on the server and failed"),
        (RequestCancelledError("Request failed: cancelled", request_id="r-1"), "may_have_run", "abandoned it"),
        (FutureRetrieveError("Error retrieving result", request_id="r-1"), "ran", "accepted the request"),
        (FutureExpiredError("r-1", 410, changes_state=True), "ran", "do not submit it again"),
    ],
)
def test_each_future_error_names_its_outcome(error: Exception, outcome: str, says: str) -> None:
    assert error.outcome == outcome  # type: ignore[attr-defined]
    assert says in str(error)
    assert str(error).count(says) == 1
