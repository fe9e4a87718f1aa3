import pytest

from pristine_transport.layers.backoff_window import BackoffWindow

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def backoff_clock() -> FakeClock:
    return FakeClock()


def test_a_fresh_window_is_closed_and_not_recent(backoff_clock: FakeClock) -> None:
    window = BackoffWindow(recent_s=10.0, clock=backoff_clock)
    assert not window.is_open()
    assert not window.is_recent()
    assert window.remaining() == 0.0


def test_open_keeps_the_later_deadline(backoff_clock: FakeClock) -> None:
    window = BackoffWindow(clock=backoff_clock)
    window.open(5.0)
    window.open(1.0)
    assert window.remaining() == pytest.approx(5.0)
    backoff_clock.now += 2.0
    window.open(4.0)
    assert window.remaining() == pytest.approx(4.0)


def test_recent_from_opening_until_recent_s_after_the_deadline(backoff_clock: FakeClock) -> None:
    window = BackoffWindow(recent_s=10.0, clock=backoff_clock)
    window.open(1.0)
    assert window.is_open() and window.is_recent()
    backoff_clock.now += 1.0
    assert not window.is_open()
    assert window.remaining() == 0.0
    assert window.is_recent()
    backoff_clock.now += 9.99
    assert window.is_recent()
    backoff_clock.now += 0.01
    assert not window.is_recent()


async def test_wait_sleeps_until_the_deadline_and_rechecks_when_it_moves(backoff_clock: FakeClock) -> None:
    window = BackoffWindow(clock=backoff_clock)
    window.open(1.0)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            window.open(3.0)  # another request hit backpressure while we slept
        backoff_clock.now += seconds

    await window.wait(sleep=sleep)
    assert sleeps == [pytest.approx(1.0), pytest.approx(2.0)]
    assert not window.is_open()


async def test_wait_returns_at_once_when_closed(backoff_clock: FakeClock) -> None:
    window = BackoffWindow(clock=backoff_clock)

    async def no_sleep(seconds: float) -> None:
        raise AssertionError("must not sleep")

    await window.wait(sleep=no_sleep)


async def test_wait_with_real_sleep_on_a_short_window() -> None:
    window = BackoffWindow()
    window.open(0.02)
    await window.wait()
    assert not window.is_open()
    assert window.is_recent()
