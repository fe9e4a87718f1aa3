"""The session heartbeat: its wire shape, and that it keeps beating while user code holds the CPU or blocks its
own event loop (docs/design.md, "What users ran into" #4), then stops with the client."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from sdk_helpers import BASE_MODEL, SESSION_ID, WireFake, fake_client, server_client, wait_until

import tinkex.client
from tinkex.config import load_tinker_manifest
from tinkex.testing import LocalServer

INTERVAL_S = 0.05


@pytest.fixture(autouse=True)
def fast_heartbeat(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clients built in these tests beat every 50 ms instead of 10 s."""
    manifest = load_tinker_manifest()
    assert manifest.session is not None
    fast = msgspec.structs.replace(manifest, session=msgspec.structs.replace(manifest.session, interval_s=INTERVAL_S))
    monkeypatch.setattr(tinkex.client, "load_tinker_manifest", lambda: fast)
    yield


def heartbeat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pristine-heartbeat")]


def beats_between(server: LocalServer, start: float, end: float) -> int:
    return sum(1 for r in server.ledger.received("session_heartbeat") if start <= r.time <= end)


def busy(seconds: float) -> None:
    """Pure-Python CPU work holding the GIL, as a tokenizer or reward function would."""
    end = time.monotonic() + seconds
    total = 0
    while time.monotonic() < end:
        total += sum(range(500))


def test_the_heartbeat_sends_the_session_id_without_retries(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        client.create_sampling_client(base_model=BASE_MODEL).result()
        wait_until(lambda: len(wire.sent("session_heartbeat")) >= 2, what="two heartbeats")
    finally:
        client.close()
    beat = wire.sent("session_heartbeat")[0]
    assert beat.raw == b'{"session_id":"%s"}' % SESSION_ID.encode()
    assert float(beat.headers["x-stainless-read-timeout"]) == 10.0
    assert beat.headers["x-stainless-retry-count"] == "0"


def test_a_failed_beat_is_not_retried_and_the_next_beat_comes_on_schedule(wire: WireFake) -> None:
    async def unavailable(request: httpx.Request, body: Any) -> httpx.Response:
        return httpx.Response(503, json={"detail": "down"})

    wire.overrides["session_heartbeat"] = unavailable
    client = fake_client(wire)
    try:
        client.create_sampling_client(base_model=BASE_MODEL).result()
        wait_until(lambda: len(wire.sent("session_heartbeat")) >= 3, what="three beats")
    finally:
        client.close()
    beats = wire.sent("session_heartbeat")
    assert {b.headers["x-stainless-retry-count"] for b in beats} == {"0"}
    assert len({b.headers["X-Idempotency-Key"] for b in beats}) == len(beats), "each beat is a new request"


def test_a_finished_session_stops_the_heartbeat(wire: WireFake) -> None:
    async def gone(request: httpx.Request, body: Any) -> httpx.Response:
        return httpx.Response(410, json={"detail": "session finished"})

    wire.overrides["session_heartbeat"] = gone
    client = fake_client(wire)
    try:
        client.create_sampling_client(base_model=BASE_MODEL).result()
        wait_until(lambda: len(wire.sent("session_heartbeat")) >= 1, what="a heartbeat")
        # Only this session's thread: other tests' dropped clients may still be winding theirs down.
        session_id = client.holder.known_session_id()
        assert session_id is not None
        wait_until(
            lambda: not [t for t in heartbeat_threads() if t.name.endswith(session_id)],
            what="the heartbeat thread to end",
        )
        time.sleep(INTERVAL_S * 3)
        assert len(wire.sent("session_heartbeat")) == 1
    finally:
        client.close()


def test_the_heartbeat_keeps_beating_while_the_main_thread_is_cpu_bound(server: LocalServer) -> None:
    client = server_client(server)
    try:
        client.create_sampling_client(base_model=BASE_MODEL).result()
        start = time.monotonic()
        busy(1.0)
        end = time.monotonic()
        beats = beats_between(server, start, end)
    finally:
        client.close()
    # 20 intervals fit in the busy second; GIL hand-offs cost some, but a starved heartbeat would send none.
    assert beats >= 5, f"only {beats} heartbeats while the main thread was busy"


@pytest.mark.anyio
async def test_the_heartbeat_keeps_beating_while_the_user_event_loop_is_blocked(server: LocalServer) -> None:
    client = server_client(server)
    await client.create_sampling_client_async(base_model=BASE_MODEL)
    start = time.monotonic()
    time.sleep(0.5)  # blocks this event loop, as synchronous user code inside async code does
    end = time.monotonic()
    await asyncio.sleep(0)
    await client.aclose()
    assert beats_between(server, start, end) >= 4


def test_closing_the_client_stops_the_heartbeat_thread(server: LocalServer) -> None:
    before = set(heartbeat_threads())
    client = server_client(server)
    client.create_sampling_client(base_model=BASE_MODEL).result()
    assert set(heartbeat_threads()) - before, "the session has a heartbeat thread"
    client.close()
    assert set(heartbeat_threads()) <= before
    count = len(server.ledger.received("session_heartbeat"))
    time.sleep(INTERVAL_S * 3)
    assert len(server.ledger.received("session_heartbeat")) == count
