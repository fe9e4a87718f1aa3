"""The local server's side of the 0.38 dialect (docs/wire.md §1.7, §2.2, §12.1): the ``client/config`` handshake and
``client/dynamic_config``, protobuf ``forward_backward`` bodies, and protobuf results for a poll that asks.

A 0.16 client never touches any of it: it sends JSON and polls without ``Accept: application/x-protobuf``, so
it gets JSON. A 0.38 client announces itself through its bodies' content type and its polls' ``Accept``; the
server keeps one record per future either way, so the ledger, replay cache and faults see both dialects alike.

The flags both config endpoints answer are the server's (:class:`WireFlags`, from ``ServerConfig.client_config``
and ``ServerConfig.dynamic_config``); the dynamic ones can be changed while the server runs
(:func:`change_dynamic_config`), as a hosted service changes them between a client's refreshes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from tinkex import types as t
from tinkex.types import codec
from tinkex.wire.protobuf_bodies import (
    ProtobufBodyError,
    decode_forward_backward_request,
    encode_forward_backward_output,
    encode_sample_response,
)

from .calls import Call, Result
from .replies import Reply, error_reply, json_reply, validation_error_reply

if TYPE_CHECKING:
    from .server import LocalServer

__all__ = [
    "PROTOBUF",
    "ClientConfigRequest",
    "WireFlags",
    "accepts_protobuf",
    "change_dynamic_config",
    "is_protobuf",
    "json_refused",
    "protobuf_request",
    "result_reply",
]

PROTOBUF = "application/x-protobuf"
_TRAINING_BODIES = frozenset({"forward", "forward_backward"})
_FORWARD_BACKWARD_RESULTS = frozenset({"forward", "forward_backward"})
_SAMPLE_RESULTS = frozenset({"asample"})


class ClientConfigRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``client/config`` and ``client/dynamic_config``. Unknown fields are ignored: a newer SDK may add some
    and must still get its flags."""

    sdk_version: str | None = None


class WireFlags:
    """What this server answers to ``client/config`` (fixed for its run) and ``client/dynamic_config`` (changeable
    while it runs). Touched on the server loop only."""

    def __init__(self, client: t.ClientConfigResponse, dynamic: t.ClientDynamicConfigResponse) -> None:
        self.client = client
        self.dynamic = dynamic

    def client_config(self, call: Call) -> Result:
        """``POST /api/v1/client/config``: the feature flags, the first request of a 0.38 client."""
        # Every flag is sent (the types omit defaults when encoding), so a client reads the server's choice rather
        # than its own default.
        return Result(json_reply(msgspec.structs.asdict(self.client)))

    def dynamic_config(self, call: Call) -> Result:
        """``POST /api/v1/client/dynamic_config``: the settings a 0.38 client refreshes every few minutes."""
        return Result(json_reply(msgspec.structs.asdict(self.dynamic)))


def change_dynamic_config(server: LocalServer, **flags: Any) -> t.ClientDynamicConfigResponse:
    """Change the running ``server``'s ``client/dynamic_config`` (e.g. ``sample_cancel_enabled=False``): clients
    see it at their next refresh. Returns the new flags; an unknown flag name is a ``TypeError``."""

    def change(api: Any) -> t.ClientDynamicConfigResponse:
        flags_now: WireFlags = api.wire_flags
        flags_now.dynamic = msgspec.structs.replace(flags_now.dynamic, **flags)
        return flags_now.dynamic

    return server.call(change)


def is_protobuf(content_type: str | None) -> bool:
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() == PROTOBUF


def accepts_protobuf(accept: str | None) -> bool:
    """Whether an ``Accept`` header lists protobuf (what a 0.38 client sends when polling for these results)."""
    return accept is not None and any(is_protobuf(part) for part in accept.split(","))


def json_refused(endpoint: str, content_type: str | None, json_training_bodies: bool) -> Reply | None:
    """415 for a JSON training body when the server takes protobuf only (``ServerConfig.json_training_bodies``)."""
    if json_training_bodies or endpoint not in _TRAINING_BODIES or is_protobuf(content_type):
        return None
    return error_reply(415, f"{endpoint} takes {PROTOBUF} bodies only (tinker_public.ForwardBackwardRequest)")


ZSTD = "zstd"


def protobuf_request(body: bytes, content_encoding: str | None) -> Any | Reply:
    """The request a protobuf ``forward_backward`` body carries, or the error reply: 415 for a content encoding
    other than ``zstd`` (what a 0.38 client sends when ``proto_compress_fwdbwd`` is on), 400 naming what does not
    decode, 422 naming a field the JSON body would also be refused for."""
    encoding = (content_encoding or "").strip().lower()
    if encoding == ZSTD:
        try:
            body = _unzstd(body)
        except ValueError as exc:
            return error_reply(400, f"forward_backward body is not valid zstd: {exc}")
    elif encoding not in ("", "identity"):
        return error_reply(415, f"Content-Encoding {content_encoding!r} is not supported; send identity or zstd")
    try:
        decoded = decode_forward_backward_request(body)
    except ProtobufBodyError as exc:
        return error_reply(400, f"forward_backward body: {exc}")
    # Checked as the JSON body would be (e.g. an unknown loss_fn is 422 naming it): a dialect changes the encoding,
    # not what the server accepts.
    try:
        return codec.decode(codec.encode(decoded), type(decoded))
    except msgspec.ValidationError as exc:
        return validation_error_reply(exc)


_MAX_DECOMPRESSED = 1 << 30
"""A zstd body may not expand beyond 1 GiB (a bomb is refused rather than decompressed into memory)."""


def _unzstd(body: bytes) -> bytes:
    import zstandard

    try:
        # A stream reader, not ``decompress``: the official client's frames may not record their content size.
        with zstandard.ZstdDecompressor().stream_reader(body) as reader:
            data = reader.read(_MAX_DECOMPRESSED + 1)
    except zstandard.ZstdError as exc:
        raise ValueError(str(exc)) from None
    if len(data) > _MAX_DECOMPRESSED:
        raise ValueError("decompressed body is larger than 1 GiB")
    return data


def result_reply(endpoint: str, result: bytes, accept: str | None) -> Reply:
    """A finished future's result: protobuf for a forward/backward or sample result when the poll accepts it, else
    the stored JSON. Results are stored once, as JSON, and converted per poll, so a re-poll in either dialect works."""
    if accepts_protobuf(accept):
        if endpoint in _FORWARD_BACKWARD_RESULTS:
            body = encode_forward_backward_output(codec.decode(result, t.ForwardBackwardOutput))
            return Reply(200, body, ((b"content-type", PROTOBUF.encode()),))
        if endpoint in _SAMPLE_RESULTS:
            body = encode_sample_response(codec.decode(result, t.SampleResponse))
            return Reply(200, body, ((b"content-type", PROTOBUF.encode()),))
    return json_reply(result)
