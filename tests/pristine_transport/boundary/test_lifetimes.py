"""Case 5 of the boundary: thousands of client lifetimes, closed or dropped, leave nothing behind: resident
memory, threads, file descriptors and masking redactors stay flat. Real HTTP against a loopback LocalServer, on
both base transports."""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import threading
import time
import warnings

import pytest
from boundary_helpers import API_KEY, client_env, fast_manifest

from pristine_transport.client import ManifestClient
from pristine_transport.logs import masking_filter
from pristine_transport.manifest import load_manifest
from tinkex.testing import LocalServer

pytestmark = pytest.mark.anyio

LIFETIMES = 1000
"""Per base transport: half closed with aclose(), half dropped without it."""


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def open_fds(server_port: int) -> int:
    """This process's open descriptors, less the server side of connections to the in-process LocalServer (its
    own lifetimes are not what is measured here)."""
    server_side = {inode for inode, (local, _remote) in _tcp_sockets().items() if local == server_port}
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if not (target.startswith("socket:[") and int(target[8:-1]) in server_side):
            count += 1
    return count


def _tcp_sockets() -> dict[int, tuple[int, int]]:
    """inode -> (local port, remote port) of every TCP socket (``/proc/net/tcp`` and ``tcp6``)."""
    found: dict[int, tuple[int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            found[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
    return found


MANIFEST = load_manifest(fast_manifest())


async def one_lifetime(url: str, backend: str, *, close: bool) -> None:
    client = ManifestClient(MANIFEST, base_url=url, env=client_env(backend))
    assert (await client.call("healthz")) is not None
    if close:
        await client.aclose()
    # Dropped otherwise: its finalizer must warn and close the connections.


async def settle() -> None:
    gc.collect()
    for _ in range(5):  # let the close tasks that abandoned clients scheduled run
        await asyncio.sleep(0.01)
    gc.collect()


async def test_thousands_of_closed_and_dropped_clients_leave_nothing_behind(backend: str) -> None:
    with LocalServer() as server, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for index in range(50):  # warm-up: caches, pools and lazy imports fill once
            await one_lifetime(server.base_url, backend, close=index % 2 == 0)
        await settle()
        port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
        before = (rss_bytes(), threading.active_count(), open_fds(port), masking_filter().redactor_count)
        for index in range(LIFETIMES):
            await one_lifetime(server.base_url, backend, close=index % 2 == 0)
            if index % 100 == 99:
                await settle()
        await settle()
        after = (rss_bytes(), threading.active_count(), open_fds(port), masking_filter().redactor_count)
    rss_growth = after[0] - before[0]
    print(
        f"\n{backend}: {LIFETIMES} lifetimes: RSS {before[0] / 2**20:.1f} -> {after[0] / 2**20:.1f} MiB, "
        f"threads {before[1]} -> {after[1]}, fds {before[2]} -> {after[2]}, redactors {before[3]} -> {after[3]}"
    )
    assert after[1] <= before[1], "threads piled up"
    assert after[2] <= before[2] + 2, "file descriptors piled up"
    assert after[3] <= before[3], "redactors piled up in the logging filter"
    assert rss_growth < 24 * 2**20, f"RSS grew by {rss_growth / 2**20:.1f} MiB"
    dropped_warnings = [w for w in caught if issubclass(w.category, ResourceWarning) and "aclose()" in str(w.message)]
    assert len(dropped_warnings) >= LIFETIMES // 2 * 0.9  # every dropped client said so (as files do)


SDK_LIFETIMES = 400
"""tinkex.Client lifetimes, each with a session (a heartbeat thread, telemetry): half closed, half dropped."""


def sdk_lifetime(url: str, *, close: bool) -> None:
    import tinkex

    client = tinkex.Client(api_key=API_KEY, base_url=url, env={}, telemetry=True)
    client.create_lora_training_client("Qwen/Qwen3-8B").result()
    if close:
        client.close()
    # Dropped otherwise: the heartbeat stops, telemetry closes, connections close, each with a ResourceWarning.


def settle_threads(limit: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        count = threading.active_count()
        if count <= limit or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def test_hundreds_of_sdk_clients_closed_or_dropped_release_threads_descriptors_and_redactors() -> None:
    with LocalServer(long_poll_timeout=0.2) as server, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
        for index in range(20):
            sdk_lifetime(server.base_url, close=index % 2 == 0)
        threads_before = settle_threads(0, timeout=2.0)
        before = (rss_bytes(), threads_before, open_fds(port), masking_filter().redactor_count)
        started = time.monotonic()
        for index in range(SDK_LIFETIMES):
            sdk_lifetime(server.base_url, close=index % 2 == 0)
        threads_after = settle_threads(threads_before)
        time.sleep(0.2)
        gc.collect()
        after = (rss_bytes(), threads_after, open_fds(port), masking_filter().redactor_count)
        elapsed = time.monotonic() - started
    print(
        f"\nsdk: {SDK_LIFETIMES} lifetimes in {elapsed:.1f} s: RSS {before[0] / 2**20:.1f} -> {after[0] / 2**20:.1f} "
        f"MiB, threads {before[1]} -> {after[1]}, fds {before[2]} -> {after[2]}, redactors {before[3]} -> {after[3]}"
    )
    assert after[1] <= before[1], "heartbeat threads piled up"
    assert after[2] <= before[2] + 4, "file descriptors piled up"
    assert after[3] <= before[3], "redactors piled up in the logging filter"
    assert after[0] - before[0] < 48 * 2**20, "RSS grew"
    heartbeat_warnings = [w for w in caught if "heartbeat" in str(w.message)]
    assert len(heartbeat_warnings) >= SDK_LIFETIMES // 2 * 0.9  # every dropped client said so
