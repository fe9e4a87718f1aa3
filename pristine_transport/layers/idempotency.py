"""IdempotencyLayer: one idempotency key per logical request.

It sits outside the retry layer, so the key is assigned once and every re-send of the request carries it.
Which endpoints get the layer (by default every method but GET/HEAD/OPTIONS) is the stack builder's decision.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx

from .. import extensions

__all__ = ["IdempotencyLayer"]


def _uuid4() -> str:
    return str(uuid.uuid4())


class IdempotencyLayer(httpx.AsyncBaseTransport):
    """Key precedence: the header already on the request, then ``request.extensions[IDEMPOTENCY_KEY]`` (used
    as is), then ``prefix + key_factory()`` (``key_factory`` defaults to a uuid4 string)."""

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
        self._key_factory = key_factory if key_factory is not None else _uuid4

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._header not in request.headers:
            request.headers[self._header] = self._key_for(request)
        return await self._inner.handle_async_request(request)

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
