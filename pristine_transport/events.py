"""Batched event reporting to one endpoint, driven by a manifest's ``events`` block.

``enqueue`` never blocks and may be called from any thread. A task on the loop where :meth:`EventReporter.start`
was called sends batches every ``flush_interval_s`` and as soon as ``batch_size`` events wait. A batch that fails
is re-sent ``failed_batch_retries`` times (1 s, 2 s, 4 s ... apart) and then dropped with a warning, so a server
that rejects events can neither block the caller nor keep the reporter busy forever. That is the batch's whole
budget: a manifest should give the events endpoint a policy without re-sends (e.g. ``"retry": "none"``),
so HTTP re-sends do not multiply it. To run the reporter off the
caller's thread, start it on a background loop (``loop.call_soon_threadsafe(reporter.start)``) and close it there
(``asyncio.run_coroutine_threadsafe(reporter.aclose(), loop)``); ``enqueue`` stays usable from every thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from typing import Any

from pristine_transport.client import ManifestClient
from pristine_transport.logs import get_logger
from pristine_transport.manifest import EventsSpec
from pristine_transport.policy import backoff_delay

__all__ = ["EventReporter", "toggle_enabled"]

_TRUTHY = frozenset({"1", "true", "yes", "on"})


def toggle_enabled(env: Mapping[str, str], name: str | None) -> bool:
    """Unset: enabled. Set: enabled iff its lowercase value is one of 1, true, yes, on."""
    if name is None or name not in env:
        return True
    return env[name].strip().lower() in _TRUTHY


class EventReporter:
    """Queue events; send them in batches of ``envelope(batch)`` to the manifest's events endpoint."""

    def __init__(
        self,
        client: ManifestClient,
        spec: EventsSpec | None = None,
        *,
        envelope: Callable[[list[Any]], Any],
        env: Mapping[str, str] = os.environ,
        enabled: bool | None = None,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``enabled``: the caller's decision, which wins over the manifest's ``env_toggle`` (None: the toggle
        in ``env`` decides)."""
        spec = spec if spec is not None else client.manifest.events
        if spec is None:
            raise ValueError(f"manifest {client.manifest.name!r} has no events block")
        self.client = client
        self.spec = spec
        self.enabled = toggle_enabled(env, spec.env_toggle) if enabled is None else enabled
        self._envelope = envelope
        self._logger = logger if logger is not None else get_logger("events")
        self._sleep = sleep
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()  # guards the queue and the flags below; enqueue may come from any thread
        self._dropping = False
        self._wakeup_requested = False
        self._closed = False
        self.dropped = 0
        """Events lost: refused because the queue was full, in batches that kept failing, or left at close."""
        self.sent = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._drain_lock: asyncio.Lock | None = None

    @property
    def pending(self) -> int:
        return len(self._queue)

    def enqueue(self, event: Any) -> bool:
        """Queue one event without blocking. False if it was not queued (disabled, closed, or queue full)."""
        if not self.enabled or self._closed:
            return False
        with self._lock:
            full = len(self._queue) >= self.spec.queue_size
            if full:
                self.dropped += 1
                first_drop, self._dropping = not self._dropping, True
            else:
                self._queue.append(event)
                self._dropping = False
                wake = (
                    len(self._queue) >= self.spec.batch_size
                    and self._loop is not None
                    and not self._wakeup_requested
                )
                if wake:
                    self._wakeup_requested = True
        if full:
            if first_drop:
                # One warning per overflow episode: a flood of refused events must not become a flood of log lines.
                self._logger.warning(
                    "Event queue full (%d events), dropping events until it drains", self.spec.queue_size
                )
            return False
        if wake:
            self._request_wakeup()
        return True

    def start(self) -> None:
        """Run the flush loop as a task on the current event loop."""
        if not self.enabled or self._task is not None:
            return
        self._bind_loop()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pristine event reporter")
        with self._lock:
            self._wakeup_requested = False
            wake = len(self._queue) >= self.spec.batch_size
        if wake:
            self._request_wakeup()

    async def flush(self) -> None:
        """Send everything queued now (in batches), and wait until it is sent or dropped."""
        if self.enabled:
            await self._drain()

    async def aclose(self, timeout: float | None = None) -> bool:
        """Stop accepting events and send what is queued within ``timeout`` (default ``flush_timeout_s``).
        True if nothing was left unsent when time was up; what is left is dropped with a warning. (Batches dropped
        after failing are counted in ``dropped`` and warned about when they fail.)"""
        self._closed = True
        timeout = self.spec.flush_timeout_s if timeout is None else timeout
        try:
            async with asyncio.timeout(timeout):
                if self._task is not None:
                    self._request_wakeup()
                    await asyncio.shield(self._task)
                await self.flush()
        except TimeoutError:
            pass
        finally:
            if self._task is not None:
                self._task.cancel()
                with suppress(asyncio.CancelledError):
                    await self._task
        with self._lock:
            left = len(self._queue)
            self._queue.clear()
            self.dropped += left
        if left:
            self._logger.warning("Event reporter closed with %d events unsent after %.1f s; dropped", left, timeout)
        return left == 0

    def _count_dropped(self, n: int) -> None:
        with self._lock:
            self.dropped += n

    def _bind_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._wakeup = asyncio.Event()
            self._drain_lock = asyncio.Lock()

    def _request_wakeup(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None or loop.is_closed():
            return  # not started: the events wait for start(), flush() or aclose()
        try:
            if asyncio.get_running_loop() is loop:
                wakeup.set()
                return
        except RuntimeError:
            pass
        with suppress(RuntimeError):  # the loop closed meanwhile: nothing left to wake
            loop.call_soon_threadsafe(wakeup.set)

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(self.spec.flush_interval_s):
                    await self._wakeup.wait()
            self._wakeup.clear()
            with self._lock:
                self._wakeup_requested = False
            await self._drain()
            if self._closed:
                return

    async def _drain(self) -> None:
        self._bind_loop()
        assert self._drain_lock is not None
        # One drain at a time, so flush() waits for a batch the loop is sending rather than racing past it.
        async with self._drain_lock:
            while True:
                with self._lock:
                    batch = [self._queue.popleft() for _ in range(min(self.spec.batch_size, len(self._queue)))]
                if not batch:
                    return
                try:
                    await self._send(batch)
                except asyncio.CancelledError:
                    self._count_dropped(len(batch))
                    raise

    async def _send(self, batch: list[Any]) -> None:
        attempts = self.spec.failed_batch_retries + 1
        for attempt in range(attempts):
            try:
                await self.client.call(self.spec.endpoint, json=self._envelope(batch))
            except Exception as exc:  # noqa: BLE001 - reporting must never take the caller down
                if attempt + 1 < attempts:
                    await self._sleep(backoff_delay(attempt, initial_s=1.0, max_s=math.inf))
                    continue
                self._count_dropped(len(batch))
                self._logger.warning(
                    "Dropping a batch of %d events after %d failed attempts: %s",
                    len(batch),
                    attempts,
                    self.client.redactor.text(str(exc) or type(exc).__name__),
                )
                return
            self.sent += len(batch)
            return
