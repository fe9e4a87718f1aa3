"""Case 1 of the boundary: what a broken server sends comes out as a typed, retried, masked error, on both base
transports, over a real socket."""

from __future__ import annotations

import httpx
import pytest
from boundary_helpers import API_KEY, CF_SECRET, client_env, fast_manifest
from raw_server import RawServer, http_response

from pristine_transport.client import ManifestClient
from pristine_transport.errors import APIConnectionError, AuthenticationError, InternalServerError

pytestmark = pytest.mark.anyio

MALFORMED = {
    "duplicate Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "garbage status line": b"HTTP/1.1 2x0 WHAT\r\nContent-Length: 2\r\n\r\n{}",
    "not HTTP at all": b"SSH-2.0-OpenSSH_8.9\r\n\r\n",
    "cut short": b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{}",
}
GOOD = http_response(b'{"status":"ok"}', headers=[("Content-Type", "application/json")])


def chain_of(exc: BaseException) -> list[BaseException]:
    links: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(links) < 20:
        links.append(current)
        current = current.__cause__ or current.__context__
    return links


def assert_no_secret(exc: BaseException) -> None:
    for link in chain_of(exc):
        for text in (str(link), repr(link)):
            assert API_KEY not in text and CF_SECRET not in text, text
        request = getattr(link, "_request", None) or getattr(link, "request", None)
        if isinstance(request, httpx.Request):
            dump = repr(list(request.headers.raw))
            assert API_KEY not in dump and CF_SECRET not in dump


@pytest.mark.parametrize("reply", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_malformed_reply_is_a_connection_error_that_is_retried(backend: str, reply: bytes) -> None:
    close = reply is MALFORMED["cut short"]
    with RawServer([reply, GOOD], close_after_reply=close) as server:
        async with ManifestClient(fast_manifest(), base_url=server.url, env=client_env(backend)) as client:
            assert await client.call("healthz") == {"status": "ok"}
    assert len(server.requests) == 2  # the malformed reply was re-sent like any connection failure


@pytest.mark.parametrize("reply", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_malformed_reply_that_persists_is_a_typed_masked_error(backend: str, reply: bytes) -> None:
    close = reply is MALFORMED["cut short"]
    manifest = fast_manifest(healthz={"retry": "none"})  # how long retries go on is the retry layer's business
    with RawServer([reply], close_after_reply=close) as server:
        async with ManifestClient(manifest, base_url=server.url, env=client_env(backend)) as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.call("healthz")
    assert len(server.requests) == 1
    error = caught.value
    assert isinstance(error.__cause__, httpx.TransportError)
    assert all(type(link).__module__.split(".")[0] in ("httpx", "pristine_transport") for link in chain_of(error))
    assert_no_secret(error)


async def test_a_bare_lf_reply_is_read_or_refused_with_a_typed_error(backend: str) -> None:
    # RFC 9112 lets a recipient accept a bare LF as a line end; either way no backend exception may escape.
    reply = b"HTTP/1.1 200 OK\nContent-Length: 15\nContent-Type: application/json\n\n" + b'{"status":"ok"}'
    with RawServer([reply]) as server:
        async with ManifestClient(fast_manifest(), base_url=server.url, env=client_env(backend)) as client:
            try:
                assert await client.call("healthz") == {"status": "ok"}
            except APIConnectionError as error:
                assert_no_secret(error)


async def test_bytes_after_a_body_are_never_the_next_requests_answer(backend: str) -> None:
    smuggled = http_response(b'{"status":"smuggled"}', headers=[("Content-Type", "application/json")])
    with RawServer([GOOD + smuggled, GOOD]) as server:
        async with ManifestClient(fast_manifest(), base_url=server.url, env=client_env(backend)) as client:
            first = await client.call("healthz")
            second = await client.call("healthz")
    assert first == second == {"status": "ok"}
    assert len(server.requests) == 2 and server.connections == 2  # the poisoned connection was not reused


async def test_an_error_body_that_echoes_secrets_is_masked_everywhere(backend: str) -> None:
    echo = f'{{"detail":"bad key {API_KEY} / {CF_SECRET}"}}'.encode()
    with RawServer([http_response(echo, status="401 Unauthorized"), http_response(echo, status="500 Oops")]) as server:
        manifest = fast_manifest(healthz={"retry": "none"})
        async with ManifestClient(manifest, base_url=server.url, env=client_env(backend)) as client:
            with pytest.raises(AuthenticationError) as unauthorized:
                await client.call("healthz")
            with pytest.raises(InternalServerError) as failed:
                await client.call("healthz")
    for error in (unauthorized.value, failed.value):
        assert_no_secret(error)
        assert API_KEY not in repr(error.body) and CF_SECRET not in repr(error.body)
        assert API_KEY not in error.response.text and "tml-…cdef" in error.response.text
        dump = repr(list(error.response.request.headers.raw))
        assert API_KEY not in dump and CF_SECRET not in dump


async def test_a_refused_connection_is_a_typed_masked_error(backend: str) -> None:
    with RawServer([GOOD]) as server:
        url = server.url
    manifest = fast_manifest(healthz={"retry": "none"})
    async with ManifestClient(manifest, base_url=url, env=client_env(backend)) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.call("healthz")
    assert_no_secret(caught.value)


def test_through_tinkex_a_malformed_reply_is_retried_and_the_call_succeeds(backend: str) -> None:
    import tinkex

    capabilities = http_response(b'{"supported_models":[]}', headers=[("Content-Type", "application/json")])
    with RawServer([MALFORMED["garbage status line"], capabilities]) as server:
        # The dialect forced: the scripted replies are for this one call, not for the client/config handshake.
        env = {"TINKEX_HTTP_BACKEND": backend, "TINKEX_WIRE_DIALECT": "0.16"}
        client = tinkex.Client(api_key=API_KEY, base_url=server.url, env=env)
        try:
            answer = client.get_server_capabilities()
        finally:
            client.close()
    assert answer.supported_models == []
    assert len(server.requests) == 2
