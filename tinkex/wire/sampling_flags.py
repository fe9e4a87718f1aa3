"""What a 0.38 server's sampling flags (``client/config``) decide, as pure functions (docs/wire.md §3, §12.1).

- ``sample_use_retrieve_futures``: samples wait on one batched poller per sampling session
  (:mod:`tinkex.session_poller`) instead of each polling ``retrieve_future``; no cap on samples in flight then
  (the official client drops its semaphore: a waiting sample holds no connection).
- ``sample_no_retries``: a sample is not retried as a whole. tinkex's one whole-sample retry is the re-submission
  of a sample whose result expired (the manifest's ``resubmit_on_expiry``): none then. The official client also
  skips its retry handler's semaphore and stuck detection then, and so does tinkex. ``compute_logprobs`` keeps both
  (officially it always goes through the handler).
- ``sample_enable_stuck_detection``: whether the sampling retry policy's progress timeout (the official 7200 s
  "No progress made ... Requests appear to be stuck") applies; off, it is lifted from the manifest the client's
  stacks are built from (:func:`manifest_with_stuck_detection`), so samples may wait as long as the client's
  deadlines allow.
- ``sample_join_sampling_session``: a copy of a sampling client (unpickled, from a handle, forked) asks the server
  for its clone number (``join_sampling_session``) instead of drawing a random one.

Without flags (a 0.16 server, forced 0.16) every flag has its official default.
"""

from __future__ import annotations

import math

import msgspec

from pristine_transport.manifest import Manifest, ResubmitSpec, RetryOverride

from ..types import ClientConfigResponse
from . import server_limits

__all__ = ["SAMPLE_ENDPOINT", "SampleRules", "manifest_with_stuck_detection", "sample_rules", "stuck_detection"]

SAMPLE_ENDPOINT = "asample"


class SampleRules(msgspec.Struct, frozen=True):
    """How one sample is sent and awaited."""

    batched_polling: bool = False
    """Wait on the session's ``retrieve_futures`` poller, then fetch the result with one ``retrieve_future``."""
    join_session: bool = False
    """A copy of a client takes its clone number from ``join_sampling_session``."""
    max_resubmits: int = 0
    """Times a sample whose result expired is sent again as a new request."""
    resubmit_delay_s: float = 0.5
    """The first re-submission's delay (doubling after each)."""
    concurrency_cap: int | None = None
    """Samples of one client in flight at once on one loop (None: no cap of its own)."""


def sample_rules(
    flags: ClientConfigResponse | None,
    resubmit: ResubmitSpec | None,
    *,
    max_resubmits: int | None = None,
    resubmit_delay_s: float | None = None,
    always_retried: bool = False,
) -> SampleRules:
    """The rules of a sample under the server's ``flags`` and the manifest's ``resubmit`` rule of the sampling
    endpoint, with the caller's ``RetryConfig`` values (None: the manifest's) winning over the manifest.
    ``always_retried``: a ``compute_logprobs``, which ``sample_no_retries`` does not concern."""
    batched = flags is not None and flags.sample_use_retrieve_futures
    whole_sample_retried = always_retried or flags is None or not flags.sample_no_retries
    if resubmit is None:
        resubmits, delay = 0, 0.5
    else:
        resubmits, delay = resubmit.max_resubmits, resubmit.initial_delay_s
    if max_resubmits is not None:
        resubmits = max_resubmits
    if resubmit_delay_s is not None:
        delay = resubmit_delay_s
    capped = whole_sample_retried and not batched
    return SampleRules(
        batched_polling=batched,
        join_session=flags is not None and flags.sample_join_sampling_session,
        max_resubmits=resubmits if whole_sample_retried else 0,
        resubmit_delay_s=delay,
        concurrency_cap=server_limits.sample_concurrency_cap(flags) if capped else None,
    )


def stuck_detection(flags: ClientConfigResponse | None) -> bool:
    """Whether samples fail once none of them made progress for the sampling policy's progress timeout: the
    server's ``sample_enable_stuck_detection``, off under ``sample_no_retries`` (officially both live in the retry
    handler that flag skips); on without flags."""
    return flags is None or (flags.sample_enable_stuck_detection and not flags.sample_no_retries)


def manifest_with_stuck_detection(flags: ClientConfigResponse | None, manifest: Manifest) -> Manifest:
    """``manifest`` with the sampling endpoint's progress timeout lifted (infinite: its requests never count as
    stuck; their admission limit stays) when the server turned stuck detection off; ``manifest`` itself otherwise."""
    if stuck_detection(flags) or SAMPLE_ENDPOINT not in manifest.endpoints:
        return manifest
    endpoint = manifest.endpoints[SAMPLE_ENDPOINT]
    policy = manifest.retry_policy_for(SAMPLE_ENDPOINT)
    if policy is None or policy.progress_timeout_s is None:
        return manifest
    if isinstance(endpoint.retry, str):
        policies = {**manifest.retry_policies, endpoint.retry: msgspec.structs.replace(policy, progress_timeout_s=math.inf)}
        return msgspec.structs.replace(manifest, retry_policies=policies)
    if isinstance(endpoint.retry, RetryOverride):
        retry = msgspec.structs.replace(endpoint.retry, progress_timeout_s=math.inf)
        endpoints = {**manifest.endpoints, SAMPLE_ENDPOINT: msgspec.structs.replace(endpoint, retry=retry)}
        return msgspec.structs.replace(manifest, endpoints=endpoints)
    return manifest
