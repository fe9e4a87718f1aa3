"""A scripted HTTP/1.1 server on a raw socket (127.0.0.1): it answers each request with exactly the bytes a test
scripts, malformed or huge, so the client's boundary sees what a broken or hostile server would send."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from types import TracebackType

Reply = bytes | Iterable[bytes] | Callable[[bytes], bytes | Iterable[bytes]]
"""The bytes to send: one block, several writes, or a function of the request's bytes (head and body)."""


class RawServer:
    """Serves ``replies`` in order, one per request, across connections (the last reply repeats). A connection
    stays open for the next request unless ``close_after_reply``. Stops by itself when the ``with`` block ends."""

    def __init__(self, replies: list[Reply], *, close_after_reply: bool = False) -> None:
        self.replies = replies
        self.close_after_reply = close_after_reply
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="raw-server", daemon=True)
        self._conn_threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        for thread in self._conn_threads:
            thread.join(5)
        self._listener.close()

    def _next_reply(self, request: bytes) -> Iterable[bytes]:
        with self._lock:
            index = len(self.requests)
            self.requests.append(request)
        reply = self.replies[min(index, len(self.replies) - 1)]
        if callable(reply):
            reply = reply(request)
        return [reply] if isinstance(reply, bytes) else reply

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._conn_threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                request, buffer = _read_request(conn, buffer, self._stop)
                if request is None:
                    return
                try:
                    for block in self._next_reply(request):
                        conn.sendall(block)
                except OSError:
                    return
                if self.close_after_reply:
                    return


def _read_request(conn: socket.socket, buffer: bytes, stop: threading.Event) -> tuple[bytes | None, bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = _recv(conn, stop)
        if not chunk:
            return None, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = _recv(conn, stop)
        if not chunk:
            return None, b""
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def _recv(conn: socket.socket, stop: threading.Event) -> bytes:
    while not stop.is_set():
        try:
            return conn.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return b""
    return b""


def http_response(
    body: bytes = b"{}", *, status: str = "200 OK", headers: Iterable[tuple[str, str]] = (), length: bool = True
) -> bytes:
    """A well-formed response (unless the caller's headers make it otherwise)."""
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
