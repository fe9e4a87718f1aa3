"""Shared helpers of the flow tests: a small test manifest, clients over MockTransport, a fake clock, a tiny
HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length or chunked bodies), and a leaked-task check."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from pristine_transport.client import ManifestClient


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


BASE_MANIFEST: dict[str, Any] = {
    "name": "flows-test",
    "base_url": {"default": "http://flows.test"},
    "headers": {"X-Api-Key": {"value": "sk-secret-value-123", "secret": True}},
    "endpoints": {
        "submit": {
            "method": "POST",
            "path": "/v1/submit",
            "future": {"request_type": "Sample", "result": "Result"},
        },
        "retrieve": {"method": "POST", "path": "/v1/retrieve", "queue_state": True, "timeout_s": 45},
        "create_session": {"method": "POST", "path": "/v1/create_session"},
        "heartbeat": {"method": "POST", "path": "/v1/heartbeat", "timeout_s": 10},
        "end_session": {"method": "POST", "path": "/v1/sessions/{session_id}/end"},
        "events": {"method": "POST", "path": "/v1/events", "timeout_s": 5},
    },
    "futures": {
        "retrieve_endpoint": "retrieve",
        "allow_metadata_only_field": "allow_metadata_only",
        "try_again": {"field": "type", "value": "try_again"},
        "metadata_only": {
            "field": "status",
            "value": "complete_metadata",
            "size_field": "response_payload_size",
            "budget_bytes": 10_000,
        },
        "poll_headers": {
            "iteration": "X-Request-Iteration",
            "request_type": "X-Request-Type",
            "roundtrip": "X-Roundtrip-Time",
        },
        "backoff": {"initial_s": 0.01, "max_s": 0.08, "jitter": 0.25, "held_poll_s": 1.0},
    },
    "session": {
        "create_endpoint": "create_session",
        "heartbeat_endpoint": "heartbeat",
        "end_endpoint": "end_session",
        "interval_s": 10.0,
        "warning_after_s": 30.0,
        "stop_on_status": 410,
    },
    "events": {"endpoint": "events", "batch_size": 3, "flush_interval_s": 10.0, "queue_size": 100},
}


def manifest(**sections: dict[str, Any]) -> dict[str, Any]:
    """The test manifest with some blocks' fields replaced, e.g. ``manifest(events={"batch_size": 5})``."""
    result = copy.deepcopy(BASE_MANIFEST)
    for name, changes in sections.items():
        result[name] = {**result[name], **changes}
    return result


Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def mock_client(handler: Handler, *, manifest_data: dict[str, Any] | None = None, **kwargs: Any) -> ManifestClient:
    return ManifestClient(
        manifest_data or manifest(), base_transport=httpx.MockTransport(handler), env={}, **kwargs
    )


class FakeClock:
    """A monotonic clock that only moves when told; ``sleep`` advances it and yields to the loop once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def tasks_besides(own: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task not in own and not task.done()}


async def assert_no_leaked_tasks(before: set[asyncio.Task[Any]]) -> None:
    for _ in range(3):
        await asyncio.sleep(0)
    leaked = tasks_besides(before)
    assert not leaked, f"tasks still running: {leaked}"


# --- a tiny real HTTP/1.1 server on 127.0.0.1 -------------------------------------------------------------------


@dataclass
class ServerRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ServerReply:
    status: int = 200
    body: bytes | AsyncIterator[bytes] = b""
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


ServerHandler = Callable[[ServerRequest], Awaitable[ServerReply]]

_REASONS = {200: "OK", 400: "Bad Request", 408: "Request Timeout", 410: "Gone", 500: "Internal Server Error"}


class LoopbackServer:
    """Serves ``handler`` on 127.0.0.1 with a free port. A streamed body (async iterator) is sent chunked; the
    server notices when the client goes away and records it in ``disconnects``."""

    def __init__(self, handler: ServerHandler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self.disconnects = 0
        self.url = ""

    async def __aenter__(self) -> LoopbackServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                reply = await self._handler(request)
                if not await _write_reply(writer, reply):
                    self.disconnects += 1
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            self.disconnects += 1
        finally:
            self._connections.discard(task)
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> ServerRequest | None:
    line = await reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return ServerRequest(method, path, headers, body)


async def _write_reply(writer: asyncio.StreamWriter, reply: ServerReply) -> bool:
    head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
    head += [f"{name}: {value}" for name, value in reply.headers.items()]
    if isinstance(reply.body, bytes):
        head.append(f"content-length: {len(reply.body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
        await writer.drain()
        return True
    head.append("transfer-encoding: chunked")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    try:
        async for chunk in reply.body:
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except ConnectionError:
        return False
    finally:
        await reply.body.aclose()  # type: ignore[attr-defined]
    return True
