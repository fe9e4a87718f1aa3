"""LocalServer's sockets with many clients coming and going, and with worker processes forked from the process
it runs in: a connection its client closes is closed at once (no CLOSE-WAIT left behind), and a forked child holds
none of the parent's sockets (its port is free once the server stops, the parent's closed connections close).

Socket states are read from ``/proc/net/tcp`` (Linux), for the server's own port only.
"""

from __future__ import annotations

import multiprocessing
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fanout_workers import MODEL

import tinkex
from tinkex import types
from tinkex.testing import LocalServer

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods(),
    reason="reads /proc/net/tcp and forks",
)

_STATES = {"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT", "08": "CLOSE_WAIT",
           "09": "LAST_ACK", "0A": "LISTEN"}


def _sockets(port: int) -> Counter[tuple[str, str]]:
    """(side, state) of every IPv4 TCP socket of ``port``: side "server" (local port) or "client" (remote)."""
    found: Counter[tuple[str, str]] = Counter()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        state = _STATES.get(fields[3], fields[3])
        if local_port == port:
            found["server", state] += 1
        elif remote_port == port:
            found["client", state] += 1
    return found


def _until(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _sample_once(base_url: str) -> tinkex.Client:
    client = tinkex.Client(api_key="tml-fanout", base_url=base_url, telemetry=False)
    sampler = client.create_sampling_client(base_model=MODEL)
    sampler.sample(types.ModelInput.from_ints([1, 2]), 1, types.SamplingParams(max_tokens=2)).result(timeout=30)
    return client


def test_a_connection_its_client_closed_is_closed_by_the_server_at_once() -> None:
    """Hypercorn alone leaves it in CLOSE-WAIT until its 5 s keep-alive timer runs out."""
    with LocalServer(base_models=(MODEL,)) as server:
        client = _sample_once(server.base_url)
        assert _sockets(server.port)["server", "ESTABLISHED"] >= 1
        client.close()
        assert _until(lambda: not any(side == "server" and state in ("ESTABLISHED", "CLOSE_WAIT")
                                      for side, state in _sockets(server.port)), 2.0), _sockets(server.port)


def _wait_for_release(release: Any) -> None:
    release.wait(60)


def test_a_forked_child_keeps_none_of_the_parents_sockets() -> None:
    context = multiprocessing.get_context("fork")
    release = context.Event()
    child = None
    try:
        with LocalServer(base_models=(MODEL,)) as server:
            port = server.port
            client = _sample_once(server.base_url)  # the parent's client has a connection open at the fork
            child = context.Process(target=_wait_for_release, args=(release,), daemon=True)
            child.start()
            # The parent closes its client while the child lives: its connection really closes (FIN), so the
            # server's side goes too, instead of both staying established on the child's copy.
            client.close()
            assert _until(lambda: _sockets(port)["server", "ESTABLISHED"] == 0, 2.0), _sockets(port)
        # The server stopped while the child lives: nothing listens on the port any more (a child holding a copy
        # of the listening socket would take the connection into a backlog nobody accepts from).
        assert child.is_alive()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        release.set()
        if child is not None:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
