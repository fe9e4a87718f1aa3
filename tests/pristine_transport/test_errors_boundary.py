"""The boundary's decisions as tables: which httpx exception a backend failure becomes, and how a secret split
across response chunks is still masked."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import h11
import httpcore
import httpx
import pytest
from aiohttp.client_reqrep import RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from pristine_transport.boundary import _StreamMasker, map_backend_exception, scrub_exception
from pristine_transport.errors import failure_name
from pristine_transport.redaction import Redactor

SECRET = "tml-table-secret-0123456789abcdef"
REDACTOR = Redactor(secret_values=[SECRET])
REQUEST = httpx.Request("POST", "http://svc.test/x", headers={"X-API-Key": SECRET})


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


def _aiohttp_response_error(message: str) -> aiohttp.ClientResponseError:
    headers = CIMultiDictProxy(CIMultiDict({"x-api-key": SECRET}))
    info = RequestInfo(URL("http://svc.test/x"), "POST", headers, URL("http://svc.test/x"))
    return aiohttp.ClientResponseError(info, (), status=400, message=message)


@pytest.mark.parametrize(
    ("exc", "mapped", "failure"),
    [
        (_aiohttp_response_error("Bad status line"), httpx.RemoteProtocolError, "ClientResponseError"),
        (
            _chained(httpx.ConnectTimeout("Server disconnected"), aiohttp.ServerDisconnectedError()),
            httpx.RemoteProtocolError,
            "ServerDisconnectedError",
        ),
        (aiohttp.ClientPayloadError("Response not completed"), httpx.RemoteProtocolError, "ClientPayloadError"),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), httpx.ReadTimeout, "SocketTimeoutError"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError, "ClientOSError"),
        (
            _chained(
                httpx.RemoteProtocolError("illegal status line"),
                _chained(httpcore.RemoteProtocolError("illegal status line"), h11.RemoteProtocolError("illegal")),
            ),
            httpx.RemoteProtocolError,
            "RemoteProtocolError",
        ),
        (_chained(httpx.ReadTimeout("timed out"), TimeoutError()), httpx.ReadTimeout, "ReadTimeout"),
        (
            _chained(httpx.ConnectError("refused"), ConnectionRefusedError(111, "refused")),
            httpx.ConnectError,
            "ConnectError",
        ),
        (ssl.SSLError(1, "certificate verify failed"), httpx.ReadError, "SSLError"),
        (ConnectionResetError(104, "reset"), httpx.ReadError, "ConnectionResetError"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_backend_failures_map_to_httpx_transport_errors(
    exc: BaseException, mapped: type[httpx.TransportError], failure: str
) -> None:
    result = map_backend_exception(exc, REQUEST, REDACTOR)
    assert type(result) is mapped
    assert failure_name(result) == failure
    assert result.__cause__ is None and result.__context__ is None
    assert SECRET not in str(result) and SECRET not in repr(list(result.request.headers.raw))


@pytest.mark.parametrize(
    "exc", [ValueError("a bug"), KeyError("x"), asyncio.CancelledError(), KeyboardInterrupt()], ids=repr
)
def test_what_is_no_backend_failure_propagates_as_is(exc: BaseException) -> None:
    assert map_backend_exception(exc, REQUEST, REDACTOR) is None


def test_scrub_masks_a_whole_chain_in_place() -> None:
    inner = httpx.ReadError(f"echo {SECRET}", request=REQUEST)
    outer = _chained(RuntimeError(f"wrapped {SECRET}"), inner)
    scrub_exception(outer, REDACTOR)
    assert SECRET not in str(outer) and SECRET not in str(inner)
    assert SECRET not in repr(list(inner.request.headers.raw))


SPLITS = list(range(1, len(SECRET)))


@pytest.mark.parametrize("split", SPLITS)
def test_a_secret_split_across_two_chunks_is_masked(split: int) -> None:
    body = f'{{"detail":"{SECRET}"}}'.encode()
    at = body.index(SECRET.encode()) + split
    masker = _StreamMasker(REDACTOR)
    out = masker.feed(body[:at]) + masker.feed(body[at:]) + masker.finish()
    assert SECRET.encode() not in out and "tml-…cdef".encode() in out


@pytest.mark.parametrize(
    ("chunks", "outputs", "held"),
    [
        ([b"plain body"], [b"plain body"], b""),  # nothing held back: a streamed event is not delayed
        ([b"ends with tml-"], [b"ends with "], b"tml-"),  # a possible secret start waits for the next chunk
        ([b"tml-", b"x and more"], [b"", b"tml-x and more"], b""),  # ... and goes out once it is no secret
    ],
)
def test_only_a_possible_secret_start_is_held_back(chunks: list[bytes], outputs: list[bytes], held: bytes) -> None:
    masker = _StreamMasker(REDACTOR)
    assert [masker.feed(chunk) for chunk in chunks] == outputs
    assert masker.finish() == held
