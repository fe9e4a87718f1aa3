"""IdempotencyLayer: one idempotency key per logical request.

It sits outside the retry layer, so the key is assigned once and every re-send of the request carries it.
Which endpoints get the layer (by default every method but GET/HEAD/OPTIONS) is the stack builder's decision.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable

import httpx

from .. import extensions
from .header_list import add_header, has_header

__all__ = ["IdempotencyLayer", "uuid4_string"]

_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)


class _KeyRandom:
    """A Mersenne Twister seeded from ``os.urandom``, re-seeded in a forked child so that parent and child never
    draw the same keys. ``uuid.uuid4()`` reads ``os.urandom`` (a syscall) on every call, which costs several times
    more; an idempotency key needs uniqueness, not secrecy."""

    def __init__(self) -> None:
        self.random = random.Random(os.urandom(32))
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.random.seed(os.urandom(32))


_KEYS = _KeyRandom()


def uuid4_string() -> str:
    """A random RFC 4122 version-4 UUID in its canonical 36-character form."""
    digits = "%032x" % ((_KEYS.random.getrandbits(128) & _VERSION_MASK) | _VERSION_BITS)
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class IdempotencyLayer(httpx.AsyncBaseTransport):
    """Key precedence: the header already on the request, then ``request.extensions[IDEMPOTENCY_KEY]`` (used
    as is), then ``prefix + key_factory()`` (``key_factory`` defaults to :func:`uuid4_string`)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        header: str = "X-Idempotency-Key",
        prefix: str = "",
        key_factory: Callable[[], str] | None = None,
    ) -> None:
        self._inner = inner
        self._header = header
        self._prefix = prefix
        self._key_factory = key_factory if key_factory is not None else uuid4_string

    def handle_async_request(self, request: httpx.Request) -> Awaitable[httpx.Response]:  # type: ignore[override]
        # Not a coroutine function: it only edits the request, then hands back the inner layer's coroutine, so the
        # layer adds no frame to the request's path (httpx awaits whatever this returns).
        headers = request.headers
        if has_header(headers, self._header):
            return self._inner.handle_async_request(request)
        if extensions.IDEMPOTENCY_KEY in request.extensions:
            key = self._key_for(request)
        else:
            key = self._prefix + self._key_factory()
        add_header(headers, self._header, key.encode("utf-8"))
        return self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def _key_for(self, request: httpx.Request) -> str:
        caller_key = request.extensions.get(extensions.IDEMPOTENCY_KEY)
        if caller_key is None:
            return self._prefix + self._key_factory()
        if not isinstance(caller_key, str) or not caller_key:
            raise TypeError(
                f"request.extensions[{extensions.IDEMPOTENCY_KEY!r}] must be a non-empty str, "
                f"got {type(caller_key).__name__}"
            )
        return caller_key
