"""AttemptTimer: asyncio.Timeout's contract on one shared loop timer per loop (pristine_transport.deadlines)."""

from __future__ import annotations

import asyncio
import gc
import importlib
import weakref

import pytest

from pristine_transport.deadlines import AttemptTimer

deadlines = importlib.import_module("pristine_transport.deadlines")  # the package exports a function of that name


def run(coro):  # one fresh loop per test: the watchdog is per loop
    return asyncio.run(coro)


def test_a_passed_deadline_cancels_the_attempt_as_timeout_error() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            with AttemptTimer(started + 0.05) as timer:
                await asyncio.sleep(5)
        assert timer.expired()
        assert asyncio.current_task().cancelling() == 0  # the cancellation it caused is taken back
        return loop.time() - started

    elapsed = run(main())
    assert 0.04 <= elapsed < 1.0


def test_timers_end_in_deadline_order_whatever_order_they_start_in() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        ended: list[str] = []

        async def attempt(name: str, after: float) -> None:
            try:
                with AttemptTimer(loop.time() + after):
                    await asyncio.sleep(5)
            except TimeoutError:
                ended.append(name)

        # The first timer armed is the latest: each earlier one must move the shared loop timer forward.
        await asyncio.gather(attempt("c", 0.15), attempt("a", 0.05), attempt("b", 0.10))
        return ended

    assert run(main()) == ["a", "b", "c"]


def test_an_attempt_that_ends_in_time_is_not_cancelled_later() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with AttemptTimer(loop.time() + 0.05) as timer:
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)  # past its deadline: the shared timer fires and must leave this task alone
        assert not timer.expired()

    run(main())


def test_reschedule_later_and_earlier_and_to_never() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with AttemptTimer(loop.time() + 0.05) as timer:
            timer.reschedule(loop.time() + 0.3)
            await asyncio.sleep(0.1)  # the first deadline passed: moved, so nothing happens
            timer.reschedule(None)
            await asyncio.sleep(0.25)  # the second one passed too: never, now
        assert not timer.expired()

        started = loop.time()
        with pytest.raises(TimeoutError):
            with AttemptTimer(started + 10) as timer:
                timer.reschedule(started + 0.05)  # earlier than the armed loop timer
                await asyncio.sleep(5)
        assert loop.time() - started < 1.0

    run(main())


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def attempt() -> None:
            with AttemptTimer(loop.time() + 5):
                await asyncio.sleep(5)

        task = asyncio.create_task(attempt())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_an_ended_timer_keeps_neither_its_task_nor_much_memory() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        refs = []

        async def attempt() -> bytes:
            with AttemptTimer(loop.time() + 60):
                await asyncio.sleep(0)
            return b"x" * 1000

        for _ in range(2000):
            task = asyncio.create_task(attempt())
            await task
            refs.append(weakref.ref(task))
            del task
        gc.collect()
        assert sum(ref() is not None for ref in refs) <= 1
        watchdog = deadlines._watchdog_of(loop)
        assert len(watchdog._heap) < 2 * deadlines._MIN_SWEEP  # swept of ended timers

    run(main())


def test_outside_a_task_or_entered_twice_is_an_error() -> None:
    timer = AttemptTimer(None)
    with pytest.raises(RuntimeError):
        timer.__enter__()

    async def main() -> None:
        with AttemptTimer(None) as entered:
            with pytest.raises(RuntimeError):
                entered.__enter__()
        with pytest.raises(RuntimeError):
            entered.reschedule(1.0)

    run(main())


def test_one_watchdog_per_loop() -> None:
    async def deadline_in(after: float) -> bool:
        loop = asyncio.get_running_loop()
        try:
            with AttemptTimer(loop.time() + after):
                await asyncio.sleep(1)
        except TimeoutError:
            return True
        return False

    # Two loops one after the other: each has its own watchdog and its own loop timer.
    assert run(deadline_in(0.02))
    assert run(deadline_in(0.02))


def test_a_loop_without_weak_references_still_gets_its_deadlines() -> None:
    loop = asyncio.new_event_loop()
    real_ref = weakref.ref

    def refuse(obj: object, *args: object) -> object:
        if obj is loop:
            raise TypeError("cannot create weak reference to 'Loop' object")  # as uvloop-like loops may
        return real_ref(obj, *args)

    async def main() -> bool:
        try:
            with AttemptTimer(asyncio.get_running_loop().time() + 0.02):
                await asyncio.sleep(1)
        except TimeoutError:
            return True
        return False

    deadlines.weakref.ref = refuse  # the weakref module's own: WeakKeyDictionary refuses the loop too
    try:
        assert loop.run_until_complete(main())
    finally:
        deadlines.weakref.ref = real_ref
        deadlines._strong_watchdogs.pop(loop, None)
        loop.close()
