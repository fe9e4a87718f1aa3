from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import httpx
import msgspec
import pytest

from pristine_transport.client import ManifestClient
from pristine_transport.manifest import SessionSpec
from pristine_transport.session import BackgroundHeartbeat, SessionLifecycle
from tests.pristine_transport.flows.conftest import (
    FakeClock,
    assert_no_leaked_tasks,
    manifest,
    mock_client,
    tasks_besides,
)

pytestmark = pytest.mark.anyio


class SessionServer:
    """create_session -> an id; heartbeats answered by ``beat_status`` (a list consumed in order, then 200)."""

    def __init__(self, beat_statuses: list[int] | None = None, *, clock: FakeClock | None = None) -> None:
        self.beat_statuses = list(beat_statuses or [])
        self.clock = clock
        self.beats: list[float] = []
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            if request.url.path == "/v1/create_session":
                return httpx.Response(200, json={"session_id": "sess-9", "type": "create_session"})
            if request.url.path == "/v1/heartbeat":
                self.beats.append(self.clock() if self.clock is not None else time.monotonic())
                status = self.beat_statuses.pop(0) if self.beat_statuses else 200
                return httpx.Response(status, json={} if status == 200 else {"detail": f"status {status}"})
            return httpx.Response(200, json={})


async def wait_for_beats(server: SessionServer, count: int, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while len(server.beats) < count:
            await asyncio.sleep(0.001)


async def test_create_heartbeat_and_stop_with_end_endpoint() -> None:
    before = tasks_besides(set())
    clock = FakeClock()
    server = SessionServer(clock=clock)
    client = mock_client(server)
    session = SessionLifecycle(client, client.manifest.session, clock=clock, sleep=clock.sleep)
    with pytest.raises(RuntimeError, match="create"):
        session.session_id
    session_id = await session.create({"tags": ["a"], "user_metadata": {}})
    assert session_id == "sess-9" == session.session_id
    assert msgspec.json.decode(server.requests[0].content) == {"tags": ["a"], "user_metadata": {}}
    start = clock()
    session.start_heartbeat()
    session.start_heartbeat()  # idempotent while running
    await wait_for_beats(server, 3)
    await session.stop()
    assert not session.heartbeat_running
    assert [b - start for b in server.beats[:3]] == [10.0, 20.0, 30.0]
    heartbeats = [r for r in server.requests if r.url.path == "/v1/heartbeat"]
    assert all(msgspec.json.decode(r.content) == {"session_id": "sess-9"} for r in heartbeats)
    end = server.requests[-1]
    assert end.url.path == "/v1/sessions/sess-9/end"
    await client.aclose()
    await assert_no_leaked_tasks(before)


async def test_warning_after_threshold_on_every_failed_beat(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    # beats at t=10..60 fail; the one at 70 succeeds; 80 fails again (only 10 s since the last success)
    server = SessionServer([500, 503, 500, 500, 500, 500, 200, 500], clock=clock)
    client = mock_client(server)
    session = SessionLifecycle(client, clock=clock, sleep=clock.sleep)
    await session.create({})
    caplog.set_level(logging.DEBUG, logger="pristine_transport")
    session.start_heartbeat()
    await wait_for_beats(server, 9)
    await session.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # warning_after_s = 30: the failed beats at 30, 40, 50 and 60 s warn; those at 10, 20 and 80 s do not.
    assert [w.split(" seconds")[0] for w in warnings] == [
        "Session heartbeat failed for 30",
        "Session heartbeat failed for 40",
        "Session heartbeat failed for 50",
        "Session heartbeat failed for 60",
    ]
    assert all("for session sess-9. Last exception: Error code: 50" in w for w in warnings)
    assert all("sk-secret-value-123" not in r.getMessage() for r in caplog.records)
    await client.aclose()


async def test_stop_on_status_ends_the_loop_with_info(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    server = SessionServer([200, 410], clock=clock)
    client = mock_client(server)
    session = SessionLifecycle(client, clock=clock, sleep=clock.sleep)
    await session.create({})
    caplog.set_level(logging.INFO, logger="pristine_transport")
    session.start_heartbeat()
    await wait_for_beats(server, 2)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not session.heartbeat_running
    assert len(server.beats) == 2
    assert "Session sess-9 has finished; stopping its heartbeat loop." in [r.getMessage() for r in caplog.records]
    await session.stop()
    await client.aclose()


async def test_connection_errors_do_not_end_the_heartbeat() -> None:
    clock = FakeClock()
    calls = {"n": 0}

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/create_session":
            return httpx.Response(200, json={"session_id": "s"})
        calls["n"] += 1
        if calls["n"] <= 3:
            raise httpx.ConnectError("down")
        return httpx.Response(200, json={})

    client = mock_client(server)
    session = SessionLifecycle(client, clock=clock, sleep=clock.sleep)
    await session.create({})
    session.start_heartbeat()
    async with asyncio.timeout(5):
        while calls["n"] < 5:
            await asyncio.sleep(0.001)
    assert session.heartbeat_running
    await session.stop()
    await client.aclose()


async def test_end_endpoint_without_path_parameter_gets_the_id_in_the_body() -> None:
    data = manifest()
    data["endpoints"]["end_session"]["path"] = "/v1/end_session"
    server = SessionServer()
    client = mock_client(server, manifest_data=data)
    session = SessionLifecycle(client)
    await session.create({})
    await session.stop({"status": "done"})
    end = server.requests[-1]
    assert end.url.path == "/v1/end_session"
    assert msgspec.json.decode(end.content) == {"status": "done", "session_id": "sess-9"}
    await client.aclose()


async def test_background_heartbeat_beats_while_the_callers_loop_is_blocked() -> None:
    before = tasks_besides(set())
    server = SessionServer()
    clients: list[ManifestClient] = []
    threads: list[str] = []

    def factory() -> ManifestClient:
        threads.append(threading.current_thread().name)
        client = mock_client(server)
        clients.append(client)
        return client

    spec = SessionSpec(create_endpoint="create_session", heartbeat_endpoint="heartbeat", interval_s=0.02)
    heartbeat = BackgroundHeartbeat(factory, spec, "sess-9")
    heartbeat.start()
    assert heartbeat.running
    assert threads and threads[0] != threading.current_thread().name
    time.sleep(0.3)  # the test's own event loop is blocked, as by CPU-heavy or synchronous user code
    beats_while_blocked = len(server.beats)
    assert beats_while_blocked >= 5  # 0.3 s / 0.02 s = 15 at best; slack for a loaded machine
    assert heartbeat.stop(timeout=5)
    assert not heartbeat.running
    assert clients[0].http.is_closed
    count = len(server.beats)
    time.sleep(0.05)
    assert len(server.beats) == count
    await assert_no_leaked_tasks(before)


async def test_background_heartbeat_also_beats_under_cpu_bound_python() -> None:
    server = SessionServer()
    spec = SessionSpec(create_endpoint="create_session", heartbeat_endpoint="heartbeat", interval_s=0.02)
    heartbeat = BackgroundHeartbeat(lambda: mock_client(server), spec, "sess-9")
    heartbeat.start()
    deadline = time.monotonic() + 0.3
    spins = 0
    while time.monotonic() < deadline:  # holds the GIL except at the interpreter's switch interval
        spins += sum(range(1000))
    assert len(server.beats) >= 3
    assert heartbeat.stop(timeout=5)


async def test_background_heartbeat_reports_a_failing_factory() -> None:
    def broken() -> ManifestClient:
        raise RuntimeError("no config")

    spec = SessionSpec(create_endpoint="create_session", heartbeat_endpoint="heartbeat", interval_s=0.02)
    heartbeat = BackgroundHeartbeat(broken, spec, "sess-9")
    with pytest.raises(RuntimeError, match="no config"):
        heartbeat.start()
    assert heartbeat.stop(timeout=1)


async def test_background_heartbeat_ends_on_stop_status_and_closes_its_client() -> None:
    server = SessionServer([410])
    clients: list[Any] = []

    def factory() -> ManifestClient:
        clients.append(mock_client(server))
        return clients[-1]

    spec = SessionSpec(
        create_endpoint="create_session", heartbeat_endpoint="heartbeat", interval_s=0.01, stop_on_status=410
    )
    heartbeat = BackgroundHeartbeat(factory, spec, "sess-9")
    heartbeat.start()
    deadline = time.monotonic() + 5
    while heartbeat.running and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert not heartbeat.running
    assert len(server.beats) == 1
    assert clients[0].http.is_closed
    assert heartbeat.stop(timeout=1)
