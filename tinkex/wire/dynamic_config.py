"""The 0.38 dialect's ``client/dynamic_config``: server settings a client reads at start and re-reads while it runs.

Fetched once a client knows it speaks to a 0.38 server (before its session, as the official SDK does at start),
then refreshed every ``max(refresh_interval_sec, 10)`` seconds in the background. A 404 at start means a server
that predates the endpoint: the official defaults apply, silently. A failed refresh keeps the last values (the
official SDK's "last known good"). Readers take :attr:`DynamicConfig.current` when they act, so a flag changed by
a refresh applies to every request sent after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pristine_transport.errors import APIStatusError

from ..types import ClientDynamicConfigResponse

__all__ = ["MIN_REFRESH_INTERVAL_S", "DynamicConfig", "refresh_delay"]

logger = logging.getLogger("tinkex")

MIN_REFRESH_INTERVAL_S = 10.0
"""The shortest refresh period, whatever the server says (the official SDK's floor)."""

Fetch = Callable[[], Awaitable[ClientDynamicConfigResponse]]


def refresh_delay(config: ClientDynamicConfigResponse, floor_s: float = MIN_REFRESH_INTERVAL_S) -> float:
    """Seconds until the next refresh: the server's ``refresh_interval_sec``, never below ``floor_s``."""
    return max(float(config.refresh_interval_sec), floor_s)


class DynamicConfig:
    """The latest ``client/dynamic_config`` of one client (the official defaults until the first fetch).

    ``fetch`` sends the request; ``floor_s`` (default 10 s) bounds the refresh period from below; tests pass a
    smaller one to see several refreshes in a short run."""

    def __init__(self, fetch: Fetch, *, floor_s: float = MIN_REFRESH_INTERVAL_S) -> None:
        self._fetch = fetch
        self._floor_s = floor_s
        self.current = ClientDynamicConfigResponse()
        self._task: asyncio.Task[None] | None = None

    @property
    def refreshing(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """The first fetch (its request's own retries apply; a 404 means the defaults), then the refresh task on
        the running loop. Any other failure propagates, as a failed ``client/config`` does. Once it succeeded,
        later calls do nothing."""
        if self._task is not None:
            return
        try:
            self.current = await self._fetch()
        except APIStatusError as exc:
            if exc.status_code != 404:
                raise
            logger.debug("the server has no client/dynamic_config; its defaults apply")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._refresh_forever(), name="tinkex: refresh client/dynamic_config"
            )

    async def refresh_once(self) -> None:
        """One refresh; on any failure the current values stay."""
        try:
            fresh = await self._fetch()
        except Exception as exc:  # noqa: BLE001 - a refresh must never end the loop or the client
            logger.debug("client/dynamic_config refresh failed, keeping the current values: %s", type(exc).__name__)
            return
        if fresh != self.current:
            logger.debug("client/dynamic_config changed: %s", fresh)
        self.current = fresh

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(refresh_delay(self.current, self._floor_s))
            await self.refresh_once()

    def stop(self) -> None:
        """Stop refreshing; call it on the loop that started it (or through ``call_soon_threadsafe``)."""
        if self._task is not None:
            self._task.cancel()
