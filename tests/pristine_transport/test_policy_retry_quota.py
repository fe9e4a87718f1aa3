"""Tower's retry budget as a pure decision: one more re-send fits while re-sends stay within
``floor_per_s * window_s + share * requests`` of the window."""

from __future__ import annotations

import pytest

from pristine_transport.policy import RetryQuota, retry_quota_allows

DEFAULT = RetryQuota()  # share 0.2, floor 10/s, window 10 s: 100 re-sends whatever the traffic
NO_FLOOR = RetryQuota(share=0.2, floor_per_s=0.0)
NONE = RetryQuota(share=0.0, floor_per_s=0.0)


@pytest.mark.parametrize(
    ("quota", "requests", "retries", "allowed"),
    [
        (DEFAULT, 0, 0, True),
        (DEFAULT, 0, 99, True),  # the floor: 10/s over 10 s
        (DEFAULT, 0, 100, False),
        (DEFAULT, 1000, 299, True),  # 100 + 0.2 * 1000
        (DEFAULT, 1000, 300, False),
        (NO_FLOOR, 0, 0, False),  # no floor, no traffic: no re-send
        (NO_FLOOR, 4, 0, False),  # 0.8 of a re-send does not make one
        (NO_FLOOR, 5, 0, True),
        (NO_FLOOR, 5, 1, False),
        (NO_FLOOR, 50, 9, True),
        (NO_FLOOR, 50, 10, False),
        (NONE, 10_000, 0, False),
        (RetryQuota(share=1.0, floor_per_s=0.0), 3, 2, True),  # one re-send per request
        (RetryQuota(share=1.0, floor_per_s=0.0), 3, 3, False),
        (RetryQuota(share=0.0, floor_per_s=0.5, window_s=4.0), 0, 1, True),  # a floor of 2 over the window
        (RetryQuota(share=0.0, floor_per_s=0.5, window_s=4.0), 0, 2, False),
    ],
)
def test_retry_quota_allows(quota: RetryQuota, requests: int, retries: int, allowed: bool) -> None:
    assert retry_quota_allows(quota, requests=requests, retries=retries) is allowed


@pytest.mark.parametrize("fields", [{"share": -0.1}, {"floor_per_s": -1.0}, {"window_s": 0.0}, {"window_s": -5.0}])
def test_a_quota_that_cannot_mean_anything_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryQuota needs"):
        RetryQuota(**fields)
