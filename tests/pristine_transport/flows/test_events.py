from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import httpx
import msgspec
import pytest

from pristine_transport.events import EventReporter, toggle_enabled
from tests.pristine_transport.flows.conftest import (
    FakeClock,
    assert_no_leaked_tasks,
    manifest,
    mock_client,
    tasks_besides,
)

pytestmark = pytest.mark.anyio


def envelope(batch: list[Any]) -> dict[str, Any]:
    return {"session_id": "sess-1", "events": batch}


class EventServer:
    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.batches: list[list[Any]] = []
        self.attempts = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.attempts += 1
            status = self.statuses.pop(0) if self.statuses else 200
            if status == 200:
                body = msgspec.json.decode(request.content)
                assert body["session_id"] == "sess-1"
                self.batches.append(body["events"])
            return httpx.Response(status, json={"status": "accepted"} if status == 200 else {"detail": "no"})


def reporter_for(server: EventServer, *, events: dict[str, Any] | None = None, **kwargs: Any) -> EventReporter:
    client = mock_client(server, manifest_data=manifest(events=events or {}))
    kwargs.setdefault("env", {})
    return EventReporter(client, envelope=envelope, **kwargs)


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def test_sends_as_soon_as_a_batch_is_queued_and_drains_everything() -> None:
    before = tasks_besides(set())
    server = EventServer()
    reporter = reporter_for(server)  # batch_size 3, flush interval 10 s
    reporter.start()
    for i in range(7):
        assert reporter.enqueue({"i": i})
    await wait_until(lambda: sum(map(len, server.batches)) == 7)
    assert [len(b) for b in server.batches] == [3, 3, 1]
    assert [e["i"] for b in server.batches for e in b] == list(range(7))
    assert await reporter.aclose()
    assert reporter.sent == 7
    assert not reporter.enqueue({"late": True})
    await reporter.client.aclose()
    await assert_no_leaked_tasks(before)


async def test_flushes_on_the_interval_below_a_batch() -> None:
    server = EventServer()
    reporter = reporter_for(server, events={"flush_interval_s": 0.02})
    reporter.start()
    reporter.enqueue({"i": 1})
    await wait_until(lambda: server.batches == [[{"i": 1}]], timeout=2)
    await reporter.aclose()
    await reporter.client.aclose()


async def test_drops_when_full_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    server = EventServer()
    reporter = reporter_for(server, events={"queue_size": 5, "batch_size": 100})
    caplog.set_level(logging.WARNING, logger="pristine_transport")
    accepted = [reporter.enqueue({"i": i}) for i in range(12)]
    assert accepted == [True] * 5 + [False] * 7
    assert reporter.dropped == 7
    full = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(full) == 1
    await reporter.flush()
    assert [e["i"] for e in server.batches[0]] == [0, 1, 2, 3, 4]
    # After draining, a new overflow episode warns again (once).
    for i in range(7):
        reporter.enqueue({"i": i})
    assert len([r for r in caplog.records if "queue full" in r.getMessage()]) == 2
    await reporter.aclose()
    await reporter.client.aclose()


async def test_failed_batch_is_retried_then_dropped_and_the_reporter_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    server = EventServer([500, 503, 500, 500])  # the first batch fails all 1 + 3 attempts
    reporter = reporter_for(server, sleep=clock.sleep)
    caplog.set_level(logging.WARNING, logger="pristine_transport")
    for i in range(3):
        reporter.enqueue({"i": i})
    await reporter.flush()
    assert server.attempts == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert reporter.dropped == 3
    assert any("Dropping a batch of 3 events after 4 failed attempts" in r.getMessage() for r in caplog.records)
    reporter.enqueue({"i": 3})
    await reporter.flush()
    assert server.batches == [[{"i": 3}]]
    await reporter.aclose()
    await reporter.client.aclose()


async def test_failed_batch_recovers_within_its_retries() -> None:
    clock = FakeClock()
    server = EventServer([500, 200])
    reporter = reporter_for(server, sleep=clock.sleep)
    reporter.enqueue({"i": 0})
    await reporter.flush()
    assert server.batches == [[{"i": 0}]]
    assert clock.sleeps == [1.0]
    assert reporter.dropped == 0
    await reporter.client.aclose()


async def test_aclose_drains_within_its_bound_when_the_server_hangs(caplog: pytest.LogCaptureFixture) -> None:
    before = tasks_besides(set())
    release = asyncio.Event()

    async def hanging(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json={})

    reporter = EventReporter(mock_client(hanging), envelope=envelope, env={})
    reporter.start()
    for i in range(5):
        reporter.enqueue({"i": i})
    caplog.set_level(logging.WARNING, logger="pristine_transport")
    started = time.monotonic()
    assert not await reporter.aclose(timeout=0.1)
    assert time.monotonic() - started < 1.0
    assert reporter.dropped == 5
    assert reporter.pending == 0
    assert any("unsent" in r.getMessage() for r in caplog.records)
    await reporter.client.aclose()
    await assert_no_leaked_tasks(before)


async def test_aclose_without_start_sends_what_is_queued() -> None:
    server = EventServer()
    reporter = reporter_for(server)
    for i in range(4):
        reporter.enqueue(i)
    assert await reporter.aclose()
    assert server.batches == [[0, 1, 2], [3]]
    await reporter.client.aclose()


async def test_enqueue_from_many_threads() -> None:
    server = EventServer()
    reporter = reporter_for(server, events={"batch_size": 10, "queue_size": 1000})
    reporter.start()

    def produce(worker: int) -> None:
        for i in range(50):
            reporter.enqueue({"w": worker, "i": i})

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    await wait_until(lambda: sum(map(len, server.batches)) >= 200)
    assert await reporter.aclose()
    events = [(e["w"], e["i"]) for b in server.batches for e in b]
    assert sorted(events) == [(w, i) for w in range(4) for i in range(50)]
    assert all(len(b) <= 10 for b in server.batches)
    await reporter.client.aclose()


@pytest.mark.parametrize(
    ("env", "enabled"),
    [({}, True), ({"EV": "1"}, True), ({"EV": "TRUE"}, True), ({"EV": "on"}, True), ({"EV": "yes"}, True),
     ({"EV": "0"}, False), ({"EV": "false"}, False), ({"EV": ""}, False), ({"EV": "off"}, False)],
)
async def test_env_toggle(env: dict[str, str], enabled: bool) -> None:
    assert toggle_enabled(env, "EV") is enabled
    server = EventServer()
    reporter = reporter_for(server, events={"env_toggle": "EV"}, env=env)
    assert reporter.enabled is enabled
    reporter.start()
    assert reporter.enqueue({"x": 1}) is enabled
    await reporter.aclose()
    assert len(server.batches) == (1 if enabled else 0)
    await reporter.client.aclose()
