"""A future's result formats and how a result body becomes the result object.

A submit may name the formats its result is asked for in (the manifest's ``result_formats`` of the dialect the
caller speaks). The polls then send them as ``Accept``, and a 2xx reply whose ``Content-Type`` is one of them is
decoded by the codec the SDK registered for its ``(serializer, message)`` (:data:`ResultCodecs`). Every other reply
is read as JSON and converted to the result type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx
import msgspec

from pristine_transport.errors import ConfigurationError, FutureRetrieveError
from pristine_transport.manifest import ResultFormatSpec

__all__ = [
    "ResultCodecs",
    "ResultDecoder",
    "check_codecs",
    "convert_result",
    "decode_result",
    "format_of",
    "request_id_of",
]

T = TypeVar("T")

ResultDecoder = Callable[[bytes], Any]
"""Turns a result body in one registered format into the result object (raises ``ValueError`` when it cannot)."""
ResultCodecs = Mapping[tuple[str, str | None], ResultDecoder]
"""The result decoders an SDK registers, by a :class:`ResultFormatSpec`'s ``(serializer, message)``."""


def check_codecs(result_formats: Sequence[ResultFormatSpec], codecs: ResultCodecs) -> None:
    """Fail before anything is sent when a non-JSON format has no registered codec."""
    for result_format in result_formats:
        if result_format.serializer == "json":
            continue
        if (result_format.serializer, result_format.message) not in codecs:
            raise ConfigurationError(
                f"no result codec is registered for serializer {result_format.serializer!r} and message "
                f"{result_format.message!r} ({result_format.content_type})"
            )


def decode_result(
    request_id: str, result_format: ResultFormatSpec, content: bytes, result_type: type[T], codecs: ResultCodecs
) -> T:
    """A reply in ``result_format`` decoded by its registered codec, checked against ``result_type``."""
    decoder = codecs[(result_format.serializer, result_format.message)]
    try:
        result = decoder(content)
    except ValueError as exc:
        raise FutureRetrieveError(
            f"Error retrieving result for request {request_id}: the {result_format.content_type} result "
            f"does not decode as {result_format.message}: {exc}",
            request_id=request_id,
            status_code=200,
        ) from None
    if isinstance(result_type, type) and not isinstance(result, result_type):
        raise FutureRetrieveError(
            f"Error retrieving result for request {request_id}: the {result_format.message} codec gave "
            f"a {type(result).__name__}, not a {_type_name(result_type)}",
            request_id=request_id,
            status_code=200,
        )
    return result


def convert_result(request_id: str, body: Any, result_type: type[T], status: int) -> T:
    """A decoded JSON result converted to ``result_type``."""
    try:
        return msgspec.convert(body, result_type)
    except msgspec.ValidationError as exc:
        raise FutureRetrieveError(
            f"Error retrieving result for request {request_id}: the result does not match "
            f"{_type_name(result_type)}: {exc}",
            request_id=request_id,
            status_code=status,
            body=body,
        ) from None


def request_id_of(body: Any, field: str, endpoint: str) -> str:
    value = body.get(field) if isinstance(body, Mapping) else getattr(body, field, None)
    if not isinstance(value, str) or not value:
        raise FutureRetrieveError(
            f"{endpoint} answered without a request id in field {field!r}: {body!r:.200}", request_id="", body=body
        )
    return value


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def format_of(response: httpx.Response, formats: Sequence[ResultFormatSpec]) -> ResultFormatSpec | None:
    """The asked-for non-JSON format a reply's ``Content-Type`` names, or None (the reply is read as JSON)."""
    if not formats:
        return None
    media_type = _media_type(response.headers.get("content-type", ""))
    for result_format in formats:
        if result_format.serializer != "json" and _media_type(result_format.content_type) == media_type:
            return result_format
    return None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", repr(tp))
