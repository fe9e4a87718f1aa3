"""``pristine_transport.layers.headers.context_headers``: headers scoped to a context reach every request sent in it
(tasks it starts included) through a real ManifestClient stack, a request's own header wins, and ``None`` clears an
outer scope. The loopback server echoes what it received."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pristine_transport.client import ManifestClient
from pristine_transport.layers.headers import context_headers

MANIFEST = {
    "name": "echo",
    "base_url": {"default": "http://127.0.0.1:9"},
    "headers": {"X-Static": {"value": "static"}},
    "endpoints": {"echo": {"method": "GET", "path": "/echo"}},
    "transport": {"backend": "httpx", "http2": False},
}


class Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_context_headers_reach_requests_of_the_scope_only(echo_url: str) -> None:
    async def run() -> list[dict[str, str]]:
        async with ManifestClient(MANIFEST, base_url=echo_url, env={}) as client:
            seen = [await client.call("echo")]
            with context_headers({"x-sdk-method": "Outer.call", "X-Static": "not-the-manifest's"}):
                seen.append(await client.call("echo"))
                seen.append(await asyncio.create_task(client.call("echo")))  # a task started in the scope
                seen.append(await client.call("echo", headers={"x-sdk-method": "explicit"}))
                with context_headers(None):
                    seen.append(await client.call("echo"))
            seen.append(await client.call("echo"))
            return seen

    outside, inside, in_task, explicit, cleared, after = asyncio.run(run())
    assert "x-sdk-method" not in outside and "x-sdk-method" not in after and "x-sdk-method" not in cleared
    assert inside["x-sdk-method"] == in_task["x-sdk-method"] == "Outer.call"
    assert explicit["x-sdk-method"] == "explicit"
    # The scope's headers rank above the manifest's defaults, below the request's own.
    assert inside["x-static"] == "not-the-manifest's" and outside["x-static"] == "static"
