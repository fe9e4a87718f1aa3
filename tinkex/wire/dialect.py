"""Which wire dialect a server speaks, and what that decides for a request body (wire spec §1.7, §13).

Two dialects exist. ``"0.16"``: every body is JSON (the official SDK up to 0.16.x). ``"0.38"``: the server answers
``POST /api/v1/client/config`` (the handshake the official 0.38 SDK sends first) and takes ``forward_backward``
bodies as protobuf; ``forward`` is the same message with ``forward_only`` (0.38 servers have no ``/forward``).
How each endpoint's body travels per dialect is the manifest's ``dialects`` data; this module supplies the codecs
those entries name.

The dialect is chosen per client by ``resolve_config(dialect=...)``, else ``TINKEX_WIRE_DIALECT``, else
:data:`DEFAULT_DIALECT_SETTING`: ``"0.16"`` or ``"0.38"`` forces one; ``"auto"`` asks the server with the handshake
(:func:`dialect_of_handshake`). These are pure decisions; :mod:`tinkex.holder` runs the handshake and
:mod:`tinkex.training_client` builds the bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pristine_transport.errors import ConfigurationError
from pristine_transport.manifest import Manifest
from tinkex import types as t

__all__ = [
    "DEFAULT_DIALECT_SETTING",
    "DIALECT_ENV",
    "TrainingBody",
    "WireDialect",
    "dialect_of_handshake",
    "dialect_setting",
    "training_body",
]

WireDialect = Literal["0.16", "0.38"]
DIALECT_ENV = "TINKEX_WIRE_DIALECT"
"""``0.16`` or ``0.38`` forces that dialect; ``auto`` asks the server."""
DEFAULT_DIALECT_SETTING = "0.16"
"""Used when neither the argument nor the environment says: JSON, no handshake (tinkex's wire until now, which
existing request-sequence tests pin). ``"auto"`` is the setting that follows the server."""
_DIALECTS: tuple[str, ...] = get_args(WireDialect)
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
    """How one forward or forward_backward chunk is sent: the endpoint and the keywords of ``ManifestClient.send``."""

    endpoint: str
    send_kwargs: dict[str, Any] = field(default_factory=dict)


def _protobuf_forward_backward(request: Any) -> bytes:
    # Imported here: numpy and protobuf load only for a client that sends protobuf (``import tinkex`` stays light).
    from .protobuf_bodies import encode_forward_backward_request

    return encode_forward_backward_request(request)


_ENCODERS: dict[tuple[str, str | None], Callable[[Any], bytes]] = {
    ("protobuf", "tinker_public.ForwardBackwardRequest"): _protobuf_forward_backward,
}
"""The body codecs tinkex registers for the serializer names a manifest's ``dialects`` entries use."""


def training_body(
    request: t.ForwardBackwardRequest | t.ForwardRequest, dialect: WireDialect, manifest: Manifest
) -> TrainingBody:
    """How the manifest says ``request`` travels in ``dialect``: its endpoint's ``dialects`` entry (0.38: protobuf
    to ``forward_backward``, with ``forward_only`` for a forward), else the endpoint itself with JSON."""
    name = "forward" if isinstance(request, t.ForwardRequest) else "forward_backward"
    spec = manifest.endpoint(name).dialects.get(dialect)
    if spec is None:
        return TrainingBody(name, {"json": request})
    endpoint = spec.endpoint or name
    if spec.serializer == "json":
        return TrainingBody(endpoint, {"json": request})
    encoder = _ENCODERS.get((spec.serializer, spec.message))
    if encoder is None:
        raise ConfigurationError(
            f"manifest endpoints.{name}.dialects.{dialect}: tinkex has no {spec.serializer!r} codec for {spec.message!r}"
        )
    return TrainingBody(endpoint, {"content": encoder(request), "headers": {"Content-Type": spec.content_type}})
