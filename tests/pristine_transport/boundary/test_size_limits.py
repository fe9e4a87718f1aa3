"""Case 2 of the boundary: response size limits, enforced while reading and decompressing, on both base
transports, over a real socket; a refused response costs about the limit in memory, not the response's size."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from boundary_helpers import client_env, fast_manifest
from raw_server import RawServer, http_response

from pristine_transport.boundary import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MAX_RESPONSE_HEADER_BYTES
from pristine_transport.client import ManifestClient
from pristine_transport.errors import ResponseTooLargeError
from pristine_transport.manifest import load_manifest

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


def huge_body(total: int) -> Iterator[bytes]:
    yield f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {total}\r\n\r\n".encode()
    block = b" " * MiB
    for _ in range(total // MiB):
        yield block


def test_the_documented_defaults_hold_without_a_manifest_entry() -> None:
    manifest = load_manifest(fast_manifest())
    healthz = manifest.endpoints["healthz"]
    assert healthz.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES == 256 * MiB
    assert healthz.max_response_header_bytes == DEFAULT_MAX_RESPONSE_HEADER_BYTES == 64 * 1024


async def test_a_body_over_the_limit_is_refused_while_reading_without_retry(backend: str) -> None:
    manifest = fast_manifest(healthz={"max_response_bytes": 4 * MiB})
    with RawServer([lambda _: huge_body(100 * MiB)], close_after_reply=True) as server:
        async with ManifestClient(manifest, base_url=server.url, env=client_env(backend)) as client:
            tracemalloc.start()
            try:
                with pytest.raises(ResponseTooLargeError) as caught:
                    await client.call("healthz")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    error = caught.value
    assert (error.endpoint, error.limit_name, error.limit) == ("healthz", "max_response_bytes", 4 * MiB)
    assert "healthz" in str(error) and "max_response_bytes=4194304" in str(error)
    assert len(server.requests) == 1  # the same request would get the same answer: not re-sent
    assert peak < 24 * MiB, f"peak {peak / MiB:.1f} MiB for a refused 100 MiB body"


async def test_a_gzip_bomb_is_refused_while_decompressing(backend: str) -> None:
    bomb = gzip.compress(b"\0" * (200 * MiB), compresslevel=9)  # ~200 KB on the wire
    reply = http_response(bomb, headers=[("Content-Encoding", "gzip"), ("Content-Type", "application/json")])
    manifest = fast_manifest(healthz={"max_response_bytes": 2 * MiB})
    with RawServer([reply]) as server:
        async with ManifestClient(manifest, base_url=server.url, env=client_env(backend)) as client:
            tracemalloc.start()
            try:
                with pytest.raises(ResponseTooLargeError, match="max_response_bytes"):
                    await client.call("healthz")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB decompressing a 200 MiB bomb"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_bodies_under_the_limit_decode_as_before(backend: str, coding: str) -> None:
    body = b'{"status":"' + b"ok" * 5000 + b'"}'
    if coding == "gzip":
        wire, header = gzip.compress(body), "gzip"
    elif coding == "deflate":
        wire, header = zlib.compress(body), "deflate"
    else:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        wire, header = compressor.compress(body) + compressor.flush(), "deflate"
    reply = http_response(wire, headers=[("Content-Encoding", header), ("Content-Type", "application/json")])
    with RawServer([reply]) as server:
        async with ManifestClient(fast_manifest(), base_url=server.url, env=client_env(backend)) as client:
            assert await client.call("healthz") == {"status": "ok" * 5000}


async def test_headers_over_the_limit_are_refused(backend: str) -> None:
    # 30 headers of 4000 bytes: each within the backends' per-line limits, 120 KB together.
    reply = http_response(b"{}", headers=[(f"X-Filler-{i}", "v" * 4000) for i in range(30)])
    with RawServer([reply]) as server:
        async with ManifestClient(fast_manifest(), base_url=server.url, env=client_env(backend)) as client:
            with pytest.raises(ResponseTooLargeError) as caught:
                await client.call("healthz")
    assert caught.value.limit_name == "max_response_header_bytes" and caught.value.limit == 64 * 1024
    assert len(server.requests) == 1


async def test_one_huge_header_line_is_refused_as_over_the_header_limit(backend: str) -> None:
    # Past the backend's own line limit (aiohttp 8190 bytes, h11 100 KiB): named as our limit, not re-sent.
    reply = http_response(b"{}", headers=[("X-Huge", "v" * MiB)])
    with RawServer([reply]) as server:
        async with ManifestClient(fast_manifest(), base_url=server.url, env=client_env(backend)) as client:
            with pytest.raises(ResponseTooLargeError) as caught:
                await client.call("healthz")
    assert caught.value.limit_name == "max_response_header_bytes" and "healthz" in str(caught.value)
    assert len(server.requests) == 1


async def test_a_null_limit_means_unlimited(backend: str) -> None:
    manifest = fast_manifest(healthz={"max_response_bytes": None, "max_response_header_bytes": None})
    body = b'{"pad":"' + b"x" * (3 * MiB) + b'"}'
    with RawServer([http_response(body, headers=[("Content-Type", "application/json")])]) as server:
        async with ManifestClient(manifest, base_url=server.url, env=client_env(backend)) as client:
            assert len((await client.call("healthz"))["pad"]) == 3 * MiB
