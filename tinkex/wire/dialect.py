"""Which wire dialect a server speaks, and what that decides for a request body (docs/wire.md §1.7, §13).

Two dialects exist. ``"0.16"``: every body and result is JSON (the official SDK up to 0.16.x). ``"0.38"``: the
server answers ``POST /api/v1/client/config`` (the handshake the official 0.38 SDK sends first), takes
``forward_backward`` bodies as protobuf (zstd-compressed when its ``proto_compress_fwdbwd`` flag says so);
``forward`` is the same message with ``forward_only`` (0.38 servers have no ``/forward``), and the results of
forward/backward and sample futures come back as protobuf when a poll asks. How each endpoint's body and result
travel per dialect is the manifest's ``dialects`` data; this module supplies the codecs those entries name
(:data:`_ENCODERS` for bodies, :data:`RESULT_CODECS` for results).

The dialect is chosen per client by ``resolve_config(dialect=...)``, else ``TINKEX_WIRE_DIALECT``, else
:data:`DEFAULT_DIALECT_SETTING`: ``"0.16"`` or ``"0.38"`` forces one; ``"auto"`` asks the server with the handshake
(:func:`dialect_of_handshake`). These are pure decisions; :mod:`tinkex.holder` runs the handshake and
:mod:`tinkex.training_client` builds the bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import msgspec

from pristine_transport.errors import ConfigurationError
from pristine_transport.manifest import Manifest
from pristine_transport.request import json_body
from tinkex import env_names
from tinkex import types as t
from tinkex.types._base import RequestStruct

from .json_shapes import LITERAL_BODIES, dump_038

__all__ = [
    "DEFAULT_DIALECT_SETTING",
    "DIALECT_ENV",
    "HANDSHAKE_SDK_VERSION",
    "RESULT_CODECS",
    "SDK_VERSIONS",
    "TrainingBody",
    "WireDialect",
    "dialect_of_handshake",
    "dialect_setting",
    "future_options",
    "json_encoder",
    "training_body",
]

WireDialect = Literal["0.16", "0.38"]
DIALECT_ENV = env_names.WIRE_DIALECT
"""``0.16`` or ``0.38`` forces that dialect; ``auto`` asks the server."""
DEFAULT_DIALECT_SETTING = "auto"
"""Used when neither the argument nor the environment says: follow the server. A client's first request is the
``client/config`` handshake; a server without it (404/405) gets the JSON dialect of 0.16, with no error or warning."""
_DIALECTS: tuple[str, ...] = get_args(WireDialect)
SDK_VERSIONS: dict[WireDialect, str] = {"0.16": "0.16.1", "0.38": "0.38.0"}
"""The official SDK release whose requests each dialect reproduces; its ``sdk_version`` is what the bodies say."""
HANDSHAKE_SDK_VERSION = SDK_VERSIONS["0.38"]
"""``client/config`` is the 0.38 handshake, so it introduces the client as 0.38 (as the official SDK does)."""
_NO_HANDSHAKE = frozenset({404, 405})


def dialect_setting(explicit: str | None, env: Mapping[str, str]) -> WireDialect | None:
    """The forced dialect, or ``None`` to negotiate: the explicit argument wins over the environment, which wins
    over :data:`DEFAULT_DIALECT_SETTING`.

    Raises ``ValueError`` naming the accepted values for anything else."""
    sources = (("dialect", explicit), (DIALECT_ENV, env.get(DIALECT_ENV)), ("default", DEFAULT_DIALECT_SETTING))
    for source, value in sources:
        if value is None or value.strip() == "":
            continue
        chosen = value.strip().lower()
        if chosen == "auto":
            return None
        if chosen not in _DIALECTS:
            raise ValueError(f"{source}={value!r} is not a wire dialect: use '0.16', '0.38' or 'auto'")
        return chosen  # type: ignore[return-value]  # checked against the Literal's values just above
    return None


def dialect_of_handshake(status: int) -> WireDialect:
    """The dialect a ``client/config`` answer means: 2xx is 0.38; 404 or 405 (no such endpoint) is 0.16.

    Any other status is not an answer (the request's retries have already run out on it): ``ValueError``."""
    if 200 <= status < 300:
        return "0.38"
    if status in _NO_HANDSHAKE:
        return "0.16"
    raise ValueError(f"client/config answered HTTP {status}, which says nothing about the server's dialect")


@dataclass(frozen=True)
class TrainingBody:
    """How one forward or forward_backward chunk is sent: the endpoint and the keywords of
    ``FutureResolver.submit`` (the body, its headers, and how the future is polled)."""

    endpoint: str
    send_kwargs: dict[str, Any] = field(default_factory=dict)


def _protobuf_forward_backward(request: Any) -> bytes:
    # Imported here: protobuf loads only for a client that sends protobuf (``import tinkex`` stays light); numpy
    # never does for plain-list data (protobuf_bodies packs arrays with the standard library).
    from .protobuf_bodies import encode_forward_backward_request

    return encode_forward_backward_request(request)


def _protobuf_forward_backward_output(body: bytes) -> Any:
    from .protobuf_bodies import decode_forward_backward_output

    return decode_forward_backward_output(body)


def _protobuf_sample_response(body: bytes) -> Any:
    from .protobuf_bodies import decode_sample_response

    return decode_sample_response(body)


_ENCODERS: dict[tuple[str, str | None], Callable[[Any], bytes]] = {
    ("protobuf", "tinker_public.ForwardBackwardRequest"): _protobuf_forward_backward,
}
"""The body codecs tinkex registers for the serializer names a manifest's ``dialects`` entries use."""

RESULT_CODECS: dict[tuple[str, str | None], Callable[[bytes], Any]] = {
    ("protobuf", "tinker_public.ForwardBackwardOutput"): _protobuf_forward_backward_output,
    ("protobuf", "tinker_public.SampleResponse"): _protobuf_sample_response,
}
"""The result codecs tinkex registers for the ``result_formats`` of a manifest's ``dialects`` entries (handed to
``FutureResolver(result_codecs=...)``)."""

ZSTD = "zstd"
"""The ``Content-Encoding`` of a compressed protobuf body (flag ``proto_compress_fwdbwd``)."""


def future_options(name: str, dialect: WireDialect, manifest: Manifest) -> dict[str, Any]:
    """The ``FutureResolver.submit`` keywords for polling endpoint ``name``'s future in ``dialect``: the result
    formats its ``dialects`` entry asks for (none: JSON), and the request type of ``name`` itself, which a
    dialect that sends the request elsewhere keeps (0.38 polls a forward as ``Forward``)."""
    endpoint = manifest.endpoint(name)
    spec = endpoint.dialects.get(dialect)
    options: dict[str, Any] = {}
    if spec is not None and spec.result_formats:
        options["result_formats"] = spec.result_formats
    if spec is not None and spec.endpoint not in (None, name) and endpoint.future is not None:
        options["request_type"] = endpoint.future.request_type
    return options


def json_encoder(dialect_now: Callable[[], WireDialect | None]) -> Callable[[Any], bytes]:
    """The JSON body encoder of a client whose dialect ``dialect_now()`` tells (None while unsettled).

    0.16 (and unsettled: only the handshake is sent then): 0.16.1's shapes, a field left unset is absent, an
    explicit ``None`` is ``null``. 0.38: 0.38.0's shapes, which dump requests with ``exclude_unset=False,
    exclude_none=True``: every field with its default (``type`` discriminators, all optimizer parameters, ...) and
    no ``null``. Only tinkex's request types change shape; any other body (plain data) is sent as it is."""
    encode = msgspec.json.Encoder().encode

    def encode_body(body: Any) -> bytes:
        if isinstance(body, RequestStruct) and type(body) not in LITERAL_BODIES and dialect_now() == "0.38":
            return encode(dump_038(body))
        return json_body(body)

    return encode_body


def _zstd(body: bytes) -> bytes:
    import zstandard  # the official SDK's binding; loaded only by a client whose server asks for compression

    return zstandard.ZstdCompressor().compress(body)


def training_body(
    request: t.ForwardBackwardRequest | t.ForwardRequest,
    dialect: WireDialect,
    manifest: Manifest,
    *,
    compress: bool = False,
) -> TrainingBody:
    """How the manifest says ``request`` travels in ``dialect``: its endpoint's ``dialects`` entry (0.38: protobuf
    to ``forward_backward``, with ``forward_only`` for a forward), else the endpoint itself with JSON.

    ``compress`` (the server's ``proto_compress_fwdbwd``): a non-JSON body is zstd-compressed and says so in
    ``Content-Encoding``, as the official SDK does; JSON bodies are never compressed."""
    name = "forward" if isinstance(request, t.ForwardRequest) else "forward_backward"
    spec = manifest.endpoint(name).dialects.get(dialect)
    options = future_options(name, dialect, manifest)
    if spec is None:
        return TrainingBody(name, {"json": request, **options})
    endpoint = spec.endpoint or name
    if spec.serializer == "json":
        return TrainingBody(endpoint, {"json": request, **options})
    encoder = _ENCODERS.get((spec.serializer, spec.message))
    if encoder is None:
        raise ConfigurationError(
            f"manifest endpoints.{name}.dialects.{dialect}: tinkex has no {spec.serializer!r} codec for {spec.message!r}"
        )
    body = encoder(request)
    headers = {"Content-Type": spec.content_type}
    if compress:
        body = _zstd(body)
        headers["Content-Encoding"] = ZSTD
    return TrainingBody(endpoint, {"content": body, "headers": headers, **options})
