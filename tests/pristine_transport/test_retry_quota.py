"""The process's retry quota (pristine_transport.retry_quota): opt-in, one window for every client of the process,
counted in slots that fall out of the window as time passes, empty again in a forked child."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator

import pytest

from pristine_transport.policy import RetryQuota
from pristine_transport.retry_quota import (
    RetryQuotaWindow,
    disable_retry_quota,
    enable_retry_quota,
    process_retry_quota,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def no_quota_after() -> Iterator[None]:
    yield
    disable_retry_quota()


def test_off_until_enabled_then_one_window_for_the_process() -> None:
    assert process_retry_quota() is None
    window = enable_retry_quota(RetryQuota(share=0.5))
    assert process_retry_quota() is window and window.quota == RetryQuota(share=0.5)
    assert enable_retry_quota().quota == RetryQuota()  # a second call replaces it
    disable_retry_quota()
    assert process_retry_quota() is None


def test_re_sends_are_taken_while_the_quota_lasts() -> None:
    window = RetryQuotaWindow(RetryQuota(share=0.5, floor_per_s=0.0), clock=Clock())
    assert not window.try_retry()  # no requests yet, no floor
    for _ in range(4):
        window.record_request()
    assert [window.try_retry() for _ in range(3)] == [True, True, False]
    assert window.counts == (4, 2)  # a refused re-send takes nothing


def test_requests_and_re_sends_leave_the_window_as_time_passes() -> None:
    clock = Clock()
    window = RetryQuotaWindow(RetryQuota(share=1.0, floor_per_s=0.0, window_s=10.0), clock=clock)
    window.record_request()
    window.record_request()
    assert window.try_retry() and window.try_retry() and not window.try_retry()
    clock.now += 5.0
    window.record_request()
    assert window.counts == (3, 2) and window.try_retry()
    clock.now += 5.0  # the first two requests and their re-sends are 10 s old: out
    assert window.counts == (1, 1)
    assert not window.try_retry()
    clock.now += 5.0
    assert window.counts == (0, 0)


def test_the_window_counts_safely_from_several_threads() -> None:
    window = RetryQuotaWindow(RetryQuota(share=0.5, floor_per_s=0.0, window_s=3600.0))

    def client() -> None:
        for _ in range(1000):
            window.record_request()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    granted = [0]

    def retrier() -> None:
        for _ in range(1000):
            if window.try_retry():
                granted[0] += 1

    threads = [threading.Thread(target=retrier) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert window.counts == (8000, 4000) and granted[0] == 4000


def _child_counts(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    window = process_retry_quota()
    queue.put(None if window is None else (window.counts, window.quota))


def test_a_forked_child_starts_with_an_empty_window_of_the_same_quota() -> None:
    window = enable_retry_quota(RetryQuota(share=0.3))
    for _ in range(5):
        window.record_request()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_counts, args=(queue,))
    child.start()
    got = queue.get(timeout=30)
    child.join(timeout=30)
    assert got == ((0, 0), RetryQuota(share=0.3))
    assert window.counts == (5, 0)
