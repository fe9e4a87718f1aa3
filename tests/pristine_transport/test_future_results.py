"""A future's result formats and decoding (pristine_transport.future_results): which reply a codec decodes, and
what is wrong when it cannot."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from pristine_transport.errors import ConfigurationError, FutureRetrieveError
from pristine_transport.future_results import (
    check_codecs,
    convert_result,
    decode_result,
    format_of,
    request_id_of,
)
from pristine_transport.manifest import ResultFormatSpec

PROTO = ResultFormatSpec(content_type="application/x-protobuf", serializer="proto", message="pkg.Result")
JSON = ResultFormatSpec(content_type="application/json")


class Result(msgspec.Struct):
    loss: float


def _reply(content_type: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": content_type} if content_type else {})


@pytest.mark.parametrize(
    ("content_type", "formats", "expected"),
    [
        ("application/x-protobuf", (PROTO, JSON), PROTO),
        ("Application/X-Protobuf; charset=binary", (PROTO,), PROTO),
        ("application/json", (PROTO, JSON), None),  # JSON is read as JSON, not by a codec
        ("application/x-protobuf", (), None),  # nothing asked: read as JSON
        ("", (PROTO,), None),
        ("text/plain", (PROTO,), None),
    ],
)
def test_format_of(content_type: str, formats: tuple[ResultFormatSpec, ...], expected: ResultFormatSpec | None) -> None:
    assert format_of(_reply(content_type), formats) is expected


def test_check_codecs_names_the_missing_codec() -> None:
    check_codecs((JSON, PROTO), {("proto", "pkg.Result"): bytes.decode})
    check_codecs((JSON,), {})
    with pytest.raises(ConfigurationError, match=r"'proto' and message 'pkg.Result'"):
        check_codecs((PROTO,), {("proto", "other.Message"): bytes.decode})


def test_decode_result_uses_the_registered_codec_and_checks_the_type() -> None:
    codecs = {("proto", "pkg.Result"): lambda content: Result(loss=float(content))}
    assert decode_result("r1", PROTO, b"0.5", Result, codecs) == Result(loss=0.5)
    with pytest.raises(
        FutureRetrieveError, match="r1: the application/x-protobuf result does not decode as pkg.Result"
    ):
        decode_result("r1", PROTO, b"not a number", Result, codecs)
    with pytest.raises(FutureRetrieveError, match="codec gave a str, not a Result"):
        decode_result("r1", PROTO, b"x", Result, {("proto", "pkg.Result"): bytes.decode})


def test_convert_result_names_the_type_and_keeps_the_body() -> None:
    assert convert_result("r2", {"loss": 1.5}, Result, 200) == Result(loss=1.5)
    with pytest.raises(FutureRetrieveError, match="r2: the result does not match Result") as caught:
        convert_result("r2", {"loss": "high"}, Result, 200)
    assert (caught.value.status_code, caught.value.body) == (200, {"loss": "high"})


@pytest.mark.parametrize(
    ("body", "expected"),
    [({"request_id": "abc"}, "abc"), (["abc"], None), ({"request_id": ""}, None), ({}, None)],
)
def test_request_id_of(body: object, expected: str | None) -> None:
    if expected is not None:
        assert request_id_of(body, "request_id", "submit") == expected
    else:
        with pytest.raises(FutureRetrieveError, match="submit answered without a request id in field 'request_id'"):
            request_id_of(body, "request_id", "submit")
