"""Limits a 0.38 server sets in its ``client/config`` flags, over the defaults tinkex holds.

Pure decisions, plus the per-loop concurrency cap they feed; :mod:`tinkex.holder`, the training and the sampling
clients apply them. Applied today:

- the response-bytes budget held by metadata-only results (``inflight_response_bytes_semaphore_size``, the
  official 0.38 holder's ``_inflight_response_bytes_semaphore``; default: the manifest's);
- the chunk limits of forward / forward_backward batches (``fwdbwd_max_chunk_len``,
  ``fwdbwd_max_chunk_bytes_count``; default: :mod:`tinkex.chunking`'s, the official values);
- the cap on samples in flight per sampling client (``sample_max_concurrent_requests``, the official sampling
  client's ``max_connections``; without flags: no cap beyond the manifest's ``sample`` pool);
- the dispatch byte budgets (``sample_dispatch_bytes_semaphore_size``, ``fwdbwd_dispatch_bytes_semaphore_size``)
  as the ``max_bytes`` of the manifest's ``sample`` and ``train`` pools (the official holder's
  ``_sample_dispatch_bytes_semaphore`` / ``_fwdbwd_dispatch_bytes_semaphore``): pristine_transport enforces pools
  and knows nothing of Tinker's flags, so the flags become a manifest;
- the billing pause (``billing_exception_max_pause_duration_sec``, the official ``_should_pause_on_billing``): a
  402 answer is sent again every :data:`BILLING_PAUSE_INTERVAL_S` while the pause lasts, logged at most once a
  minute; past the configured duration the 402 raises ``BillingError`` as before. Without flags (a 0.16 server, a
  forced dialect) a 402 raises at once, as the official 0.16 SDK does.

A flag that is not positive is nonsense from a server and is ignored (the default stays).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec

from pristine_transport.client import ManifestClient
from pristine_transport.errors import error_for_response
from pristine_transport.manifest import Manifest

from ..chunking import MAX_CHUNK_BYTES_COUNT, MAX_CHUNK_LEN
from ..types import ClientConfigResponse

__all__ = [
    "BILLING_PAUSE_INTERVAL_S",
    "DISPATCH_BUDGET_POOLS",
    "BillingPause",
    "BillingPauseState",
    "BillingPausingClient",
    "billing_pause_decision",
    "pauses_on_billing",
    "ChunkLimits",
    "ConcurrencyCap",
    "chunk_limits",
    "manifest_with_dispatch_budgets",
    "response_budget_bytes",
    "sample_concurrency_cap",
]

DISPATCH_BUDGET_POOLS: dict[str, str] = {
    "sample": "sample_dispatch_bytes_semaphore_size",
    "train": "fwdbwd_dispatch_bytes_semaphore_size",
}
"""The manifest pool whose byte budget each flag sets. The official fwd/bwd budget holds forward_backward submits
only; the ``train`` pool holds every training request, whose other bodies are small and one at a time per model."""


def _positive(value: int) -> int | None:
    return value if value > 0 else None


def response_budget_bytes(flags: ClientConfigResponse | None, manifest: Manifest) -> int | None:
    """The bytes that metadata-only results may hold at once: the server's flag when it sent its flags, else the
    manifest's ``futures.metadata_only.budget_bytes`` (None: the manifest has no metadata-only replies)."""
    if flags is not None and (size := _positive(flags.inflight_response_bytes_semaphore_size)) is not None:
        return size
    metadata_only = manifest.futures.metadata_only if manifest.futures is not None else None
    return metadata_only.budget_bytes if metadata_only is not None else None


def manifest_with_dispatch_budgets(flags: ClientConfigResponse | None, manifest: Manifest) -> Manifest:
    """``manifest`` with the server's dispatch byte budgets as its pools' ``max_bytes`` (each flag that is positive
    and names a pool the manifest has); ``manifest`` itself when there are no flags or nothing changes."""
    if flags is None:
        return manifest
    pools = dict(manifest.pools)
    for pool, flag in DISPATCH_BUDGET_POOLS.items():
        size = _positive(getattr(flags, flag))
        if pool in pools and size is not None and pools[pool].max_bytes != size:
            pools[pool] = msgspec.structs.replace(pools[pool], max_bytes=size)
    if pools == manifest.pools:
        return manifest
    return msgspec.structs.replace(manifest, pools=pools)


class ChunkLimits(msgspec.Struct, frozen=True):
    """How a forward / forward_backward batch is split: at most ``max_len`` data and ``max_bytes`` estimated bytes
    per chunk (a single larger datum still goes alone)."""

    max_len: int = MAX_CHUNK_LEN
    max_bytes: int = MAX_CHUNK_BYTES_COUNT


def chunk_limits(flags: ClientConfigResponse | None) -> ChunkLimits:
    """The server's ``fwdbwd_max_chunk_len`` / ``fwdbwd_max_chunk_bytes_count`` when it sent its flags, each
    falling back to the official default on its own."""
    if flags is None:
        return ChunkLimits()
    return ChunkLimits(
        max_len=_positive(flags.fwdbwd_max_chunk_len) or MAX_CHUNK_LEN,
        max_bytes=_positive(flags.fwdbwd_max_chunk_bytes_count) or MAX_CHUNK_BYTES_COUNT,
    )


def sample_concurrency_cap(flags: ClientConfigResponse | None) -> int | None:
    """Samples one sampling client may have in flight (submitted and not yet answered): the server's
    ``sample_max_concurrent_requests``; None (no cap of its own) without flags."""
    return _positive(flags.sample_max_concurrent_requests) if flags is not None else None


class ConcurrencyCap:
    """At most ``limit`` holders at once on each event loop (an asyncio semaphore belongs to one loop; a client's
    samples run on its runtime's loop, or on a caller's own loop for ``*_async`` calls). ``limit`` None: no cap."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        # A plain dict, pruned of closed loops: some loop types (uvloop's) take no weak references.
        self._per_loop: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self.limit is None:
            yield
            return
        loop = asyncio.get_running_loop()
        semaphore = self._per_loop.get(loop)
        if semaphore is None:
            for closed in [other for other in self._per_loop if other.is_closed()]:
                del self._per_loop[closed]
            semaphore = self._per_loop[loop] = asyncio.Semaphore(self.limit)
        async with semaphore:
            yield

    def __repr__(self) -> str:
        return f"ConcurrencyCap(limit={self.limit})"


logger = logging.getLogger(__name__)

BILLING_PAUSE_INTERVAL_S = 5.0
"""How long a paused request waits before it is sent again (the official 5 s)."""
BILLING_LOG_INTERVAL_S = 60.0
"""At most one warning per this many seconds while paused."""
BILLING_INCIDENT_RESET_S = 300.0
"""A 402 this long after the last warning starts a new incident (its pause counted from zero again)."""


class BillingPauseState(msgspec.Struct, frozen=True):
    """The current billing incident: when its first 402 came, and when it was last logged (monotonic seconds)."""

    first_at: float | None = None
    logged_at: float | None = None


class BillingDecision(msgspec.Struct, frozen=True):
    pause: bool
    """Wait and send again (False: the 402 raises)."""
    log: bool
    """Warn now (at most once a minute)."""
    state: BillingPauseState


def billing_pause_decision(state: BillingPauseState, now: float, max_pause_s: float | None) -> BillingDecision:
    """What to do with a 402 at ``now``. ``max_pause_s`` None (no server flags): never pause. An incident whose last
    warning is older than :data:`BILLING_INCIDENT_RESET_S` is over: the pause is counted afresh. Past
    ``max_pause_s`` since the incident's first 402, the 402 raises."""
    if max_pause_s is None:
        return BillingDecision(pause=False, log=False, state=state)
    if state.logged_at is not None and now - state.logged_at > BILLING_INCIDENT_RESET_S:
        state = BillingPauseState()
    if state.first_at is not None and now - state.first_at > max_pause_s:
        return BillingDecision(pause=False, log=False, state=state)
    log = state.logged_at is None or now - state.logged_at > BILLING_LOG_INTERVAL_S
    return BillingDecision(
        pause=True,
        log=log,
        state=BillingPauseState(
            first_at=state.first_at if state.first_at is not None else now,
            logged_at=now if log else state.logged_at,
        ),
    )


class BillingPause:
    """One client's billing incident, shared by every request it sends (the official holder's). ``flags`` gives
    the server's flags when a 402 comes (None: no flags, no pause)."""

    def __init__(
        self, flags: Callable[[], ClientConfigResponse | None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._flags = flags
        self._clock = clock
        self._state = BillingPauseState()

    def should_pause(self, detail: str) -> bool:
        """Whether a 402 (``detail``: its message, secrets masked) waits and is sent again; warns at most once a
        minute while paused and once, as an error, when the pause has lasted too long."""
        decision = billing_pause_decision(self._state, self._clock(), max_pause_of(self._flags()))
        if not decision.pause and self._state.first_at is not None and decision.state.first_at is not None:
            paused = self._clock() - decision.state.first_at
            logger.error("paused for billing for %.0f s, longer than the server allows; giving up: %s", paused, detail)
        self._state = decision.state
        if decision.log:
            logger.warning("requests are paused: the server answered 402 (billing). %s", detail)
        return decision.pause


def max_pause_of(flags: ClientConfigResponse | None) -> float | None:
    """The server's ``billing_exception_max_pause_duration_sec``; None without flags (no pause)."""
    return float(max(flags.billing_exception_max_pause_duration_sec, 0)) if flags is not None else None


def pauses_on_billing(manifest: Manifest, endpoint: str) -> bool:
    """Whether a 402 from ``endpoint`` pauses: only requests that are re-sent at all (a retry policy allowing
    re-sends), as officially only those sent through ``execute_with_retries`` and samples pause. The access check,
    the heartbeat, telemetry and future polls (policy ``none``) raise their 402 at once."""
    policy = manifest.retry_policy_for(endpoint)
    return policy is not None and (policy.max_retries is None or policy.max_retries > 0)


class BillingPausingClient(ManifestClient):
    """A :class:`ManifestClient` whose requests (``send``; ``call`` and the future resolver go through it) wait out a
    402 while ``billing`` says the pause lasts, then are sent again unchanged (a 402 ran nothing); see
    :func:`pauses_on_billing` for which."""

    def __init__(self, *args: Any, billing: BillingPause, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.billing = billing
        self._pausing = {name: pauses_on_billing(self.manifest, name) for name in self.manifest.endpoints}

    async def send(self, endpoint: str, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        while True:
            response = await super().send(endpoint, **kwargs)
            if response.status_code != 402 or not self._pausing.get(endpoint, False):
                return response
            await response.aread()
            detail = self.redactor.text(error_for_response(response).message)
            if not self.billing.should_pause(detail):
                return response
            await response.aclose()
            await asyncio.sleep(BILLING_PAUSE_INTERVAL_S)
