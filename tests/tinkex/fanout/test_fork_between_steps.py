"""A fork waits for the background loop to finish the step it is running, so that the child never starts from a
copy of the process taken mid-step (a half-imported module, a subprocess's error pipe: the first request's set-up
does both, and a ``ProcessPoolExecutor`` forks its workers right then)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

import pytest

from tinkex.runtime import FORK_WAIT_LIMIT_S, get_runtime

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")

STEP_S = 0.4
_step = {"state": "not started"}


def _report_step(queue: Any) -> None:
    queue.put(_step["state"])


def test_a_fork_waits_for_the_loop_thread_to_finish_its_step() -> None:
    assert STEP_S < FORK_WAIT_LIMIT_S
    started = threading.Event()

    async def blocking_step() -> None:  # a callback that holds the loop thread, as an import or a subprocess does
        _step["state"] = "mid-step"
        started.set()
        time.sleep(STEP_S)
        _step["state"] = "step finished"

    running = get_runtime().submit(blocking_step())
    assert started.wait(10)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_report_step, args=(queue,), daemon=True)
    forked_at = time.monotonic()
    child.start()
    waited = time.monotonic() - forked_at
    try:
        assert queue.get(timeout=30) == "step finished"
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    running.result(timeout=10)
    assert waited < FORK_WAIT_LIMIT_S  # it waited for the step, not for the limit


def test_a_fork_does_not_wait_for_an_idle_loop() -> None:
    get_runtime().run(_nothing())  # started and idle
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_report_step, args=(queue,), daemon=True)
    forked_at = time.monotonic()
    child.start()
    waited = time.monotonic() - forked_at
    try:
        queue.get(timeout=30)
    finally:
        child.join(timeout=10)
    assert waited < FORK_WAIT_LIMIT_S / 2  # no wait beyond the fork's own cost (an idle loop is never waited for)


async def _nothing() -> None:
    return None
