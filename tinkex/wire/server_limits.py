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
- the billing pause (``billing_exception_max_pause_duration_sec``, the official ``_should_pause_on_billing``): the
  manifest's retry rule :data:`BILLING_RULE` (a 402 sent again every 5 s, warned about at most once a minute,
  applied by pristine_transport's retry layer to every request whose policy re-sends) bounded by the server's
  duration; past it the 402 raises ``BillingError`` as before. Without flags (a 0.16 server, forced 0.16) the
  rule is dropped and a 402 raises at once, as the official 0.16 SDK does (:func:`manifest_with_billing_pause`).

A flag that is not positive is nonsense from a server and is ignored (the default stays).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec

from pristine_transport.manifest import Manifest, RetryRuleSpec

from ..chunking import MAX_CHUNK_BYTES_COUNT, MAX_CHUNK_LEN
from ..types import ClientConfigResponse

__all__ = [
    "BILLING_RULE",
    "DISPATCH_BUDGET_POOLS",
    "ChunkLimits",
    "ConcurrencyCap",
    "billing_rule",
    "chunk_limits",
    "manifest_with_billing_pause",
    "manifest_with_dispatch_budgets",
    "manifest_with_server_limits",
    "max_pause_of",
    "pauses_on_billing",
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


BILLING_RULE = "billing_pause"
"""The manifest's retry rule that waits out a 402 (billing); the server's flag sets its ``max_duration_s``."""


def billing_rule(manifest: Manifest) -> RetryRuleSpec | None:
    """The manifest's billing rule (one of its ``retry_rules``, shared by the policies and endpoints that pause), or
    None."""
    return manifest.retry_rules.get(BILLING_RULE)


def max_pause_of(flags: ClientConfigResponse | None) -> float | None:
    """The server's ``billing_exception_max_pause_duration_sec``; None without flags (no pause)."""
    return float(max(flags.billing_exception_max_pause_duration_sec, 0)) if flags is not None else None


def manifest_with_billing_pause(flags: ClientConfigResponse | None, manifest: Manifest) -> Manifest:
    """``manifest`` with its billing rule bounded by the server's pause (``max_duration_s``), or without the rule
    when there are no flags (a 0.16 server, forced 0.16: a 402 raises at once, as the official 0.16 SDK's)."""
    rule = billing_rule(manifest)
    if rule is None:
        return manifest
    max_pause = max_pause_of(flags)
    rules = {name: spec for name, spec in manifest.retry_rules.items() if name != BILLING_RULE}
    if max_pause is not None:
        rules[BILLING_RULE] = msgspec.structs.replace(rule, max_duration_s=max_pause)
    return msgspec.structs.replace(manifest, retry_rules=rules)


def manifest_with_server_limits(flags: ClientConfigResponse | None, manifest: Manifest) -> Manifest:
    """``manifest`` as the server's flags set it: the dispatch byte budgets and the billing pause."""
    return manifest_with_billing_pause(flags, manifest_with_dispatch_budgets(flags, manifest))


def pauses_on_billing(manifest: Manifest, endpoint: str) -> bool:
    """Whether a 402 from ``endpoint`` pauses: its policy has the billing rule. Officially requests sent through
    ``execute_with_retries``, samples and future polls (single and batched) pause; the access check, the heartbeat,
    telemetry and the JWT exchange raise their 402 at once."""
    policy = manifest.retry_policy_for(endpoint)
    return policy is not None and BILLING_RULE in policy.rules

