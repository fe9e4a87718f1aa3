"""The base-transport boundary: what a backend (httpx/httpcore, aiohttp, h2, a socket) raises or sends comes out
of here in one shape.

:class:`BoundaryTransport` is the innermost layer of every endpoint stack, directly over the shared base transport.
As httpx's ``default.py`` maps httpcore's exceptions to its own, it maps every backend failure to an httpx
transport exception:

- a malformed reply (duplicate ``Content-Length``, a garbage status line, not HTTP at all) is a
  ``httpx.RemoteProtocolError``, a connection-level failure the retry layer re-sends like any other;
- the message names the backend's own exception type and text, with every secret masked; the exception carries a
  masked copy of the request and no cause chain (a backend exception's repr carries the request headers, the API
  key among them), and ``failure_type`` names the backend's exception class for retry reasons and span errors.

It also enforces the endpoint's response limits (manifest ``max_response_bytes`` / ``max_response_header_bytes``)
while reading and decompressing, so a 100 MB body or a gzip bomb costs no more memory than the limit, masks secret
values a server echoes back in a body before any layer or error message sees them, and never lets bytes a server
sent after a response's body be read as the answer to the next request on that connection.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import anyio
import httpx

from pristine_transport import extensions
from pristine_transport.errors import ResponseTooLarge  # defined with every error; re-exported here
from pristine_transport.layers.header_list import encoded_size, find_header
from pristine_transport.redaction import Redactor

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_RESPONSE_HEADER_BYTES",
    "BoundaryTransport",
    "ResponseLimits",
    "ResponseTooLarge",
    "map_backend_exception",
    "masked_request",
    "scrub_exception",
]

DEFAULT_MAX_RESPONSE_BYTES: Final = 256 * 1024 * 1024
"""A response body after decompression (256 MiB)."""
DEFAULT_MAX_RESPONSE_HEADER_BYTES: Final = 64 * 1024
"""A response's status line and headers together (64 KiB)."""

_DECOMPRESS_STEP = 1024 * 1024
"""At most this many decompressed bytes per step, so a bomb never expands far past the limit in memory."""
_MODULES_OF_BACKENDS = ("aiohttp", "httpcore", "h11", "h2", "hpack", "hyperframe", "anyio", "ssl", "yarl", "multidict")


@dataclass(frozen=True, slots=True)
class ResponseLimits:
    """An endpoint's response limits; None means unlimited (for streamed downloads to disk)."""

    endpoint: str
    max_body_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES
    max_header_bytes: int | None = DEFAULT_MAX_RESPONSE_HEADER_BYTES


class BoundaryTransport(httpx.AsyncBaseTransport):
    """Wraps the base transport for one endpoint: typed and masked failures, bounded and masked responses."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, limits: ResponseLimits, redactor: Redactor) -> None:
        self._inner = inner
        self.limits = limits
        self._redactor = redactor

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        failure: httpx.RequestError | None = None
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as exc:
            mapped = map_backend_exception(exc, request, self._redactor)
            if mapped is None:
                raise
            failure = mapped
            if _is_header_overflow(exc):  # one header line past the backend's own limit: not worth a re-send
                limit = self.limits.max_header_bytes or 0
                failure = self._too_large(request, "max_response_header_bytes", limit, "headers (one line too long)")
        if failure is not None:
            raise failure  # outside the except block: no __context__ leading back to the backend's exception
        limit = self.limits.max_header_bytes
        if limit is not None:
            size = header_bytes(response)
            if size > limit:
                await _close_quietly(response)
                raise self._too_large(request, "max_response_header_bytes", limit, f"headers of {size} bytes")
        decoders = None
        if find_header(response.headers, "content-encoding") is not None:  # rare: skip httpx's get_list otherwise
            decoders = _decoders_for(response.headers.get_list("content-encoding", split_commas=True))
        if decoders is not None:
            # Decoded here, under the limit; httpx must not decode a second time, and the length is the wire's.
            del response.headers["content-encoding"]
            response.headers.pop("content-length", None)
        response.stream = _BoundedStream(response, request, self, decoders or [])
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

    def _too_large(self, request: httpx.Request, name: str, limit: int, what: str) -> ResponseTooLarge:
        endpoint = self.limits.endpoint
        return ResponseTooLarge(
            f"endpoint {endpoint!r}: response {what} exceed {name}={limit} bytes; raise endpoints.{endpoint}.{name} "
            "in the manifest if such responses are expected",
            request=masked_request(request, self._redactor),
            limit_name=name,
            limit=limit,
            endpoint=endpoint,
        )


class _BoundedStream(httpx.AsyncByteStream):
    def __init__(
        self, response: httpx.Response, request: httpx.Request, boundary: BoundaryTransport, decoders: list[_Decoder]
    ) -> None:
        self._inner = response.stream
        self._request = request
        self._boundary = boundary
        self._decoders = decoders

    async def __aiter__(self) -> AsyncIterator[bytes]:
        boundary, request = self._boundary, self._request
        masker = _StreamMasker(boundary._redactor)  # made here: a body already in memory is never iterated
        limit = boundary.limits.max_body_bytes
        received = 0
        # Undecoded bodies (nearly all) are read straight from the backend: one async generator less per response.
        chunks = self._decoded().__aiter__() if self._decoders else self._inner.__aiter__()
        while True:
            failure: Exception | None = None
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except ResponseTooLarge:
                raise
            except Exception as exc:
                failure = map_backend_exception(exc, request, boundary._redactor)
                if failure is None:
                    raise
            if failure is not None:
                raise failure
            received += len(chunk)
            if limit is not None and received > limit:
                raise boundary._too_large(request, "max_response_bytes", limit, f"body of more than {limit} bytes")
            masked = masker.feed(chunk)
            if masked:
                yield masked
        tail = masker.finish()
        if tail:
            yield tail
        _refuse_reuse_after_trailing_bytes(self._inner)

    async def _decoded(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            for piece in _decode_all(self._decoders, chunk):
                yield piece
        for piece in _flush_all(self._decoders):
            yield piece

    async def aclose(self) -> None:
        failure: httpx.TransportError | None = None
        try:
            await self._inner.aclose()
        except Exception as exc:
            mapped = map_backend_exception(exc, self._request, self._boundary._redactor)
            if mapped is None:
                raise
            failure = mapped
        if failure is not None:
            raise failure


class _StreamMasker:
    """Replaces registered secret values in a byte stream, including one split across chunks: only a chunk's tail
    that could be the start of a secret is held back (usually nothing, so streamed events are not delayed)."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        secrets = self._redactor.secret_bytes()
        if not secrets:
            return chunk
        data = self._held + chunk if self._held else chunk
        for secret, mask in secrets:
            if secret in data:
                data = data.replace(secret, mask)
        hold = _partial_secret_suffix(data, secrets)
        self._held = data[len(data) - hold :] if hold else b""
        return data[: len(data) - hold] if hold else data

    def finish(self) -> bytes:
        held, self._held = self._held, b""
        return held


def _partial_secret_suffix(data: bytes, secrets: Iterable[tuple[bytes, bytes]]) -> int:
    """The length of the longest suffix of ``data`` that is a proper prefix of a secret."""
    longest = 0
    for secret, _ in secrets:
        first = secret[:1]
        start = max(len(data) - len(secret) + 1, 0)
        position = data.find(first, start)
        while position != -1:
            if secret.startswith(data[position:]):
                longest = max(longest, len(data) - position)
                break
            position = data.find(first, position + 1)
    return longest


class _Decoder:
    """One content coding, decompressed in bounded steps (zlib's ``max_length``) so a bomb cannot balloon."""

    def __init__(self, coding: str) -> None:
        wbits = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}[coding]
        self._coding = coding
        self._zlib = zlib.decompressobj(wbits)
        self._first = True

    def decode(self, data: bytes) -> Iterable[bytes]:
        if self._first and self._coding == "deflate" and data:
            self._first = False
            if not _looks_like_zlib(data):  # some servers send raw deflate without the zlib header
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            out = self._zlib.decompress(data, _DECOMPRESS_STEP)
            while True:
                if out:
                    yield out
                tail = self._zlib.unconsumed_tail
                if not tail:
                    return
                out = self._zlib.decompress(tail, _DECOMPRESS_STEP)
        except zlib.error as exc:
            raise httpx.DecodingError(f"{self._coding} body does not decompress: {exc}") from None

    def flush(self) -> bytes:
        try:
            return self._zlib.flush()
        except zlib.error as exc:
            raise httpx.DecodingError(f"{self._coding} body does not decompress: {exc}") from None


def _looks_like_zlib(data: bytes) -> bool:
    return len(data) >= 2 and (data[0] & 0x0F) == 8 and (data[0] * 256 + data[1]) % 31 == 0


def _decoders_for(codings: list[str]) -> list[_Decoder] | None:
    """Decoders for the response's content codings, applied last-first; None to leave the body as it is (no
    coding, or one this boundary does not decode, which then reaches httpx's own decoders)."""
    names = [c.strip().lower() for c in codings if c.strip() and c.strip().lower() != "identity"]
    if not names or any(name not in ("gzip", "x-gzip", "deflate") for name in names):
        return None
    return [_Decoder(name) for name in reversed(names)]


def _decode_all(decoders: list[_Decoder], data: bytes) -> Iterator[bytes]:
    """Lazily, so that a bomb's output is checked against the limit one bounded step at a time."""
    pieces: Iterator[bytes] = iter((data,))
    for decoder in decoders:
        pieces = _decode_each(decoder, pieces)
    return pieces


def _decode_each(decoder: _Decoder, pieces: Iterator[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield from decoder.decode(piece)


def _flush_all(decoders: list[_Decoder]) -> Iterator[bytes]:
    pending = b""
    for decoder in decoders:
        produced = b"".join(decoder.decode(pending)) if pending else b""
        pending = produced + decoder.flush()
    if pending:
        yield pending


def header_bytes(response: httpx.Response) -> int:
    """The size of a response's header block as sent (status line, names, values, separators)."""
    return 16 + encoded_size(response.headers)


def masked_request(request: httpx.Request, redactor: Redactor) -> httpx.Request:
    """A copy of ``request`` that can travel with an exception: secret headers and URL parts masked, no body."""
    headers = [(name, value.encode()) for name, value in redactor.headers(request.headers).items()]  # masks are UTF-8
    copy = httpx.Request(request.method, redactor.url(request.url), headers=headers)
    copy.extensions = {
        k: v
        for k, v in request.extensions.items()
        if isinstance(k, str) and k.startswith("pristine.") and k not in _PER_REQUEST_STATE
    }
    return copy


_PER_REQUEST_STATE = frozenset({extensions.TELEMETRY, extensions.NOT_READY_POLLS})
"""Extensions an exception need not carry: span contexts and instruments, which would keep spans alive with it."""


def scrub_exception(exc: BaseException, redactor: Redactor) -> BaseException:
    """Mask secrets in ``exc`` and every exception behind it (cause and context), in place: string arguments, and
    the requests they carry (``request`` of httpx and taxonomy errors, a response's request) replaced by masked
    copies. Returns ``exc``, for ``raise ... from scrub_exception(exc, redactor)``."""
    for link in _chain(exc, follow_suppressed=True):
        if link.args and any(isinstance(arg, str) for arg in link.args):
            link.args = tuple(redactor.text(a) if isinstance(a, str) else a for a in link.args)
        message = getattr(link, "message", None)
        if isinstance(message, str):
            with contextlib.suppress(AttributeError):
                link.message = redactor.text(message)  # type: ignore[attr-defined]
        request = _carried_request(link)
        if request is not None and _has_secret(request, redactor):
            copy = masked_request(request, redactor)
            with contextlib.suppress(AttributeError):
                link.request = copy  # type: ignore[attr-defined]
            response = getattr(link, "response", None)
            if isinstance(response, httpx.Response):
                response.request = copy
    return exc


def _carried_request(exc: BaseException) -> httpx.Request | None:
    if isinstance(exc, httpx.RequestError):
        return exc._request  # the property raises when unset
    request = getattr(exc, "request", None)
    return request if isinstance(request, httpx.Request) else None


def _has_secret(request: httpx.Request, redactor: Redactor) -> bool:
    if any(redactor.is_secret_header(name.decode("latin-1")) for name, _ in request.headers.raw):
        return True
    url = str(request.url)
    return redactor.url(url) != url


def map_backend_exception(
    exc: BaseException, request: httpx.Request, redactor: Redactor
) -> httpx.TransportError | None:
    """The httpx transport exception for a backend failure, with a masked message and a masked request copy and no
    cause chain; None for an exception that is no backend failure (a bug, a cancellation), which must propagate."""
    if isinstance(exc, ResponseTooLarge) or not isinstance(exc, Exception):
        return None
    chain = _chain(exc)
    root = _root_backend_failure(chain)
    if root is None:
        return None
    cls = _mapped_class(exc, root)
    message = redactor.text(_describe(chain))
    mapped = cls(message, request=masked_request(request, redactor))
    # What retry reasons and span errors name: the backend's own class, unless httpx already named it.
    mapped.failure_type = type(exc).__name__ if type(exc) is cls else type(root).__name__  # type: ignore[attr-defined]
    return mapped


def _describe(chain: list[BaseException]) -> str:
    """``text`` of an httpx exception as is; other links as ``Type: text``; a link that only repeats the text
    before it (httpx over httpcore over h11) is left out."""
    parts: list[str] = []
    texts: set[str] = set()
    for index, link in enumerate(chain):
        text = str(link) or type(link).__name__
        if text in texts:
            continue
        texts.add(text)
        plain = index == 0 and isinstance(link, httpx.HTTPError)
        parts.append(text if plain else f"{type(link).__name__}: {text}")
    return " <- ".join(parts)


def _chain(exc: BaseException, *, follow_suppressed: bool = False) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen) and len(seen) < 16:
        seen.append(current)
        hidden = current.__suppress_context__ and not follow_suppressed
        current = current.__cause__ or (None if hidden else current.__context__)
    return seen


def _is_backend_failure(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError | OSError | TimeoutError | EOFError | zlib.error):
        return True
    if isinstance(exc, httpx.DecodingError):
        return True
    module = type(exc).__module__.split(".")[0]
    return module in _MODULES_OF_BACKENDS


def _root_backend_failure(chain: list[BaseException]) -> BaseException | None:
    """The failure that tells what happened: the deepest backend exception of the chain that is not a mere
    re-labelling (httpx-aiohttp reports a server disconnect as ``ConnectTimeout`` caused by the real one)."""
    if not _is_backend_failure(chain[0]):
        return None
    for link in reversed(chain):
        if _is_backend_failure(link):
            return link
    return chain[0]


def _mapped_class(outer: BaseException, root: BaseException) -> type[httpx.TransportError]:
    name = type(root).__name__
    timeout = isinstance(root, TimeoutError) or "Timeout" in name
    if isinstance(outer, httpx.TimeoutException) and timeout:
        return type(outer)
    if isinstance(root, httpx.TransportError):
        return type(root)
    if timeout:
        return httpx.ConnectTimeout if "Connect" in name or "Connection" in name else httpx.ReadTimeout
    if isinstance(root, httpx.DecodingError | zlib.error):
        return httpx.RemoteProtocolError
    if "Connector" in name or isinstance(root, ConnectionRefusedError):
        return httpx.ConnectError
    if _is_protocol_failure(root):
        return httpx.RemoteProtocolError
    if isinstance(outer, httpx.TransportError):
        return type(outer)
    return httpx.ReadError if isinstance(root, OSError | EOFError) else httpx.RemoteProtocolError


def _is_header_overflow(exc: BaseException) -> bool:
    """The backend refused a header line (or block) as too long: aiohttp's ``LineTooLong``, h11's receive-buffer
    limit while reading the head, hyper's (pyqwest's) head limit."""
    for link in _chain(exc):
        if type(link).__name__ == "LineTooLong":
            return True
        # httpcore re-raises h11's error without its cause, so the message is what is left to recognize it by.
        library = type(link).__module__.split(".")[0]
        if library in ("h11", "httpcore", "httpx") and "Receive buffer too long" in str(link):
            return True
        if library in ("pyqwest", "httpx") and "message head is too large" in str(link):
            return True
    return False


def _is_protocol_failure(exc: BaseException) -> bool:
    """A malformed or cut-short reply: the backend parsed something that is not a valid HTTP response."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "ClientResponseError",  # aiohttp: bad status line, conflicting Content-Length, header too long ...
            "HttpProcessingError",
            "ClientPayloadError",
            "ServerDisconnectedError",
            "ProtocolError",  # h2, h11
            "RemoteProtocolError",
            "LocalProtocolError",
            "HPACKError",
            "FrameDataMissingError",
        }
    )


async def _close_quietly(response: httpx.Response) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await response.aclose()
        except Exception:  # noqa: BLE001 - the response is refused anyway; its close must not hide why
            pass


def _refuse_reuse_after_trailing_bytes(stream: Any) -> None:
    """After the body ended, if the server sent more bytes on the connection than the response said, make the
    connection unusable: httpcore's HTTP/1.1 connection would otherwise parse them as the next request's response
    (response smuggling). Reaches into httpcore 1.x: the pool stream, its connection, its h11 state machine.
    aiohttp closes such a connection by itself."""
    pool_stream = getattr(stream, "_httpcore_stream", None)
    pool_request = getattr(pool_stream, "_pool_request", None)
    connection = getattr(getattr(pool_request, "connection", None), "_connection", None)
    h11_state = getattr(connection, "_h11_state", None)
    trailing = getattr(h11_state, "trailing_data", None)
    if trailing is None:
        return
    data, _closed = trailing
    if data:
        # h11's public way to poison a connection: our state becomes ERROR, so httpcore closes it instead of
        # returning it to the pool when the response closes.
        h11_state.send_failed()
