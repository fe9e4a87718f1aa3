"""HTTP replies the app sends, and the JSON error bodies a strict server answers with."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = ["Reply", "error_reply", "json_reply", "validation_error_reply"]

_json_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = field(default=())

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        names = {name.lower() for name, _ in self.headers}
        extra = [] if b"content-length" in names else [(b"content-length", str(len(self.body)).encode())]
        return [*self.headers, *extra]


def json_reply(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """``value`` is a msgspec Struct, a JSON-able value, or pre-encoded JSON ``bytes``."""
    body = value if isinstance(value, bytes) else _json_encoder.encode(value)
    extra = tuple((name.lower().encode(), str(v).encode("latin-1")) for name, v in (headers or {}).items())
    return Reply(status, body, ((b"content-type", b"application/json"), *extra))


def error_reply(status: int, detail: str, headers: dict[str, str] | None = None) -> Reply:
    return json_reply({"detail": detail}, status, headers)


_AT_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN_FIELD = re.compile(r"unknown field `(?P<name>[^`]+)`")
_MISSING_FIELD = re.compile(r"missing required field `(?P<name>[^`]+)`")


def _location(message: str) -> list[str | int]:
    """``$.a.b[0]`` in a msgspec message -> ``["body", "a", "b", 0]``, plus the named field for object errors."""
    loc: list[str | int] = ["body"]
    match = _AT_PATH.search(message)
    if match:
        for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", match.group("path")):
            loc.append(part[0] if part[0] else int(part[1]))
    named = _UNKNOWN_FIELD.search(message) or _MISSING_FIELD.search(message)
    if named:
        loc.append(named.group("name"))
    return loc


def validation_error_reply(error: msgspec.ValidationError) -> Reply:
    """422 naming the offending field, in the FastAPI shape: ``{"detail": [{"loc", "msg", "type"}]}``."""
    message = str(error)
    return json_reply({"detail": [{"loc": _location(message), "msg": message, "type": "value_error"}]}, 422)
