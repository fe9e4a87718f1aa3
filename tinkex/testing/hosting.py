"""Running an ASGI app on hypercorn over a pre-bound socket, with a handle on every client connection.

Hypercorn's own ``serve()`` binds its sockets internally and hides the transports. Driving its ``TCPServer``
per connection ourselves lets the caller bind port 0 up front (so the URL is known before serving) and lets
the app cut a client's TCP connection outright: that is what a dropped-connection fault needs, for HTTP/1.1,
h2c and TLS alike (an unfinished HTTP/2 stream alone would leave the client waiting instead).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.utils import wrap_app

__all__ = ["Connections", "bind_socket", "hypercorn_config", "serve_asgi"]

_log = logging.getLogger("tinkex.testing.server")

Peer = tuple[str, int]
AsgiApp = Callable[
    [MutableMapping[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]
]


class _TCPServer(TCPServer):
    """Hypercorn's per-connection server, closing at once when the client closes.

    Hypercorn (0.17, 0.18) reads the client's EOF but then waits for the connection's idle timer
    (``keep_alive_timeout``, 5 s) before it closes its side, so every connection a client closes sits in CLOSE-WAIT
    that long: with many worker processes coming and going that is a pile of half-open sockets and handler tasks.
    Once reading is over there is nothing to be idle for: the timer is stopped and the connection closes."""

    async def _read_data(self) -> None:
        try:
            await super()._read_data()
        finally:
            await self.idle_task.stop()


class Connections:
    """Open client connections by peer address (the ASGI ``scope["client"]``)."""

    def __init__(self) -> None:
        self._writers: dict[Peer, asyncio.StreamWriter] = {}

    def add(self, peer: Peer, writer: asyncio.StreamWriter) -> None:
        self._writers[peer] = writer

    def discard(self, peer: Peer) -> None:
        self._writers.pop(peer, None)

    def abort(self, peer: Peer) -> bool:
        """Cut the connection without a goodbye; False if it is already gone."""
        writer = self._writers.pop(peer, None)
        if writer is None:
            return False
        writer.transport.abort()
        return True

    def abort_all(self) -> None:
        for peer in list(self._writers):
            self.abort(peer)


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)  # bursts of hundreds of new client connections must not overflow the queue
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def hypercorn_config(certfile: Path | None, keyfile: Path | None, graceful_timeout: float) -> HypercornConfig:
    config = HypercornConfig()
    config.certfile = str(certfile) if certfile is not None else None
    config.keyfile = str(keyfile) if keyfile is not None else None
    config.graceful_timeout = graceful_timeout
    config.accesslog = None
    config.errorlog = _log
    return config


async def serve_asgi(
    app: AsgiApp,
    sock: socket.socket,
    config: HypercornConfig,
    connections: Connections,
    stop: asyncio.Event,
    on_stopping: Callable[[], None] = lambda: None,
) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set, then shut down within ``config.graceful_timeout``.

    ``on_stopping`` runs first on shutdown (the app releases its held long polls there).
    """
    loop = asyncio.get_running_loop()
    context = WorkerContext(None)
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    ssl_context = config.create_ssl_context()
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        peer: Peer = writer.get_extra_info("peername")[:2]
        connections.add(peer, writer)
        try:
            await _TCPServer(wrapped, loop, config, context, {}, reader, writer)
        finally:
            connections.discard(peer)
            tasks.discard(task)

    server = await asyncio.start_server(
        on_connect,
        sock=sock,
        ssl=ssl_context,
        ssl_handshake_timeout=config.ssl_handshake_timeout if ssl_context is not None else None,
    )
    try:
        await stop.wait()
    finally:
        on_stopping()
        await context.terminated.set()
        server.close()
        if tasks:
            _, still_running = await asyncio.wait(set(tasks), timeout=config.graceful_timeout)
            if still_running:
                connections.abort_all()
                for task in still_running:
                    task.cancel()
                await asyncio.wait(still_running)
        await server.wait_closed()
