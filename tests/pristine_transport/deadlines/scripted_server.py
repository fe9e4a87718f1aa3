"""A scripted HTTP/1.1 server on a raw socket (127.0.0.1), for answers no real server library would send: a body
that trickles, a chunked body that never ends, the same failure forever.

``script(request) -> Answer`` decides each answer; an :class:`Answer` writes its bytes itself, so a test controls
every byte and every pause. The server stops by itself when the ``async with`` block ends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


def reply(status: int, body: Any = b"", headers: dict[str, str] | None = None) -> Writer:
    """A plain answer with a Content-Length (``body`` JSON-encoded unless bytes)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(_head(status, {"content-length": str(len(content)), **(headers or {})}) + content)
        await writer.drain()

    return write


def trickle(status: int, length: int, every_s: float) -> Writer:
    """Headers at once, then one byte of a ``length``-byte body every ``every_s`` seconds."""

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(_head(status, {"content-length": str(length), "content-type": "application/json"}))
        await writer.drain()
        for _ in range(length):
            await asyncio.sleep(every_s)
            writer.write(b" ")
            await writer.drain()

    return write


def endless_chunks(status: int, every_s: float) -> Writer:
    """A chunked body whose chunks keep coming and whose last chunk never does."""

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(_head(status, {"transfer-encoding": "chunked", "content-type": "application/json"}))
        await writer.drain()
        while True:
            writer.write(b"1\r\n \r\n")
            await writer.drain()
            await asyncio.sleep(every_s)

    return write


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} Status"] + [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class RawServer:
    script: Callable[[Request], Writer]
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None
    _connections: set[asyncio.Task[Any]] = field(default_factory=set)

    def seen(self, path_suffix: str) -> list[Request]:
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, headers, body)
                self.requests.append(request)
                await self.script(request)(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
