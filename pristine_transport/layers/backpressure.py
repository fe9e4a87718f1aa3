"""BackpressureLayer: the server's "slow down" status opens the pool's shared backoff window, and the request is
sent again once the window has passed.

A backpressure response is flow control, not a failure: it is not counted as a retry and the loop ends only with
another status. The layer sits inside the pool limiter, so a request keeps its pool permits while it waits, as the
official SDK does; the burst after a window is then bounded by the pool.

Under a ``RetryLayer`` the waits are bounded by the request's no-progress deadline (a 429 is not progress): the
layer tells the request's :class:`~pristine_transport.deadlines.OperationClock` when it waits and when it sends
again, so each exchange gets its own whole-attempt deadline and a window wait only the no-progress one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import httpx
from opentelemetry import trace

from pristine_transport import extensions
from pristine_transport.deadlines import CLOCK, OperationClock
from pristine_transport.layers.backoff_window import BackoffWindow
from pristine_transport.layers.header_list import set_header
from pristine_transport.layers.pool_limiter import SizeOf, request_size
from pristine_transport.layers.response_io import discard
from pristine_transport.manifest import BackpressureSpec

__all__ = ["BackpressureLayer"]

logger = logging.getLogger("pristine_transport.backpressure")


class BackpressureLayer(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        spec: BackpressureSpec,
        window: BackoffWindow,
        *,
        size_of: SizeOf | None = None,
        sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
    ) -> None:
        self._inner = inner
        self._spec = spec
        self._window = window
        self._size_of = size_of
        self._sleep = sleep
        self._header_name = spec.header
        self._header_value = spec.value.encode("utf-8")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        spec = self._spec
        set_header(request.headers, self._header_name, self._header_value)
        clock: OperationClock | None = request.extensions.get(CLOCK)
        while True:
            window = self._window
            if window.opened and window.is_open():  # ``opened`` first: no clock read while it never opened
                if clock is not None:
                    clock.waiting()
                _count_wait(request)
                await self._window.wait(sleep=self._sleep)
                if clock is not None:
                    clock.sending()
            response = await self._inner.handle_async_request(request)
            if response.status_code != spec.status:
                return response
            await discard(response)
            if clock is not None:
                clock.last_seen = f"HTTP {spec.status} (backpressure)"
            size = request_size(request, self._size_of)
            delay = spec.small_backoff_s if size <= spec.small_request_bytes else spec.large_backoff_s
            self._window.open(delay)
            trace.get_current_span().add_event("backpressure.backoff", {"delay_s": delay, "size_bytes": size})
            logger.info(
                "%s %s answered %d: backing off %.1fs (request of about %d bytes)",
                request.method,
                request.url.path,
                spec.status,
                delay,
                size,
            )

    async def aclose(self) -> None:
        await self._inner.aclose()


def _count_wait(request: httpx.Request) -> None:
    """One ``pristine.http.client.backpressure.waits`` when metrics are on (nothing is looked up otherwise)."""
    telemetry = request.extensions.get(extensions.TELEMETRY)
    if telemetry is not None and telemetry.instruments is not None:
        telemetry.instruments.backpressure_waits.add(1, {"pristine.endpoint": telemetry.endpoint})
