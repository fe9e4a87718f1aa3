"""The server speaks HTTP/1.1, h2c (prior knowledge) and TLS h2, and stops cleanly."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

import anyio
import httpx
import pytest

from tinkex.testing import LocalServer

pytestmark = pytest.mark.anyio


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tinkex-local-server")]


async def test_http11_by_default(server: LocalServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        reply = await http.get("/api/v1/healthz")
    assert (reply.status_code, reply.json(), reply.http_version) == (200, {"status": "ok"}, "HTTP/1.1")
    assert server.ledger.received("healthz")[0].http_version == "HTTP/1.1"


async def test_h2c_with_prior_knowledge(server: LocalServer, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, http2=True, http1=False, headers=headers) as http:
        reply = await http.post("/api/v1/create_session", json={"tags": [], "user_metadata": {}, "sdk_version": "x"})
    assert reply.status_code == 200 and reply.http_version == "HTTP/2"
    assert reply.json()["session_id"].startswith("sess-")
    assert server.ledger.received("create_session")[0].http_version == "HTTP/2"


async def test_tls_negotiates_h2_via_alpn(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    async with LocalServer(certfile=cert, keyfile=key) as server:
        assert server.base_url.startswith("https://127.0.0.1:")
        verify = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(base_url=server.base_url, http2=True, verify=verify) as http:
            reply = await http.get("/api/v1/healthz")
        assert (reply.status_code, reply.http_version) == (200, "HTTP/2")
        async with httpx.AsyncClient(base_url=server.base_url, verify=verify) as http:
            assert (await http.get("/api/v1/healthz")).http_version == "HTTP/1.1"


def test_stop_leaves_no_thread_even_with_open_connections() -> None:
    before = len(_server_threads())
    server = LocalServer(long_poll_timeout=5.0, graceful_timeout=0.5).start()
    assert len(_server_threads()) == before + 1
    http = httpx.Client(base_url=server.base_url)
    assert http.get("/api/v1/healthz").status_code == 200  # leaves a keep-alive connection open
    server.stop()
    assert len(_server_threads()) == before
    with pytest.raises(httpx.TransportError):
        http.get("/api/v1/healthz")
    http.close()
    server.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url


async def test_stop_releases_a_held_long_poll(headers: dict[str, str]) -> None:
    """A poll held open by the server does not delay shutdown: it is answered (try_again) at once."""
    server = LocalServer(long_poll_timeout=30.0, future_latency=30.0, graceful_timeout=5.0)
    await server.__aenter__()
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=10) as http:
        session = (await http.post("/api/v1/create_session", json={"tags": [], "user_metadata": {}, "sdk_version": "x"})).json()
        body = {"session_id": session["session_id"], "model_seq_id": 0, "base_model": "Qwen/Qwen3-8B"}
        future = (await http.post("/api/v1/create_model", json=body)).json()
        replies: list[httpx.Response] = []

        async def poll() -> None:
            replies.append(await http.post("/api/v1/retrieve_future", json={"request_id": future["request_id"]}))

        with anyio.fail_after(3):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(poll)
                await anyio.sleep(0.2)
                await server.__aexit__(None, None, None)
    assert replies[0].json()["type"] == "try_again"


def test_port_zero_gives_distinct_free_ports() -> None:
    with LocalServer() as first, LocalServer() as second:
        assert first.port != second.port
        assert httpx.get(f"{second.base_url}/api/v1/healthz").status_code == 200
