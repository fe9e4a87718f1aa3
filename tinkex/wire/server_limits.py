"""Limits a 0.38 server sets in its ``client/config`` flags, over the defaults the manifest holds.

Pure decisions; :mod:`tinkex.holder` applies them. Today: the response-bytes budget held by metadata-only results
(``inflight_response_bytes_semaphore_size``, the official 0.38 holder's ``_inflight_response_bytes_semaphore``).
"""

from __future__ import annotations

from pristine_transport.manifest import Manifest

from ..types import ClientConfigResponse

__all__ = ["response_budget_bytes"]


def response_budget_bytes(flags: ClientConfigResponse | None, manifest: Manifest) -> int | None:
    """The bytes that metadata-only results may hold at once: the server's flag when it sent its flags, else the
    manifest's ``futures.metadata_only.budget_bytes`` (None: the manifest has no metadata-only replies)."""
    if flags is not None and flags.inflight_response_bytes_semaphore_size > 0:
        return flags.inflight_response_bytes_semaphore_size
    metadata_only = manifest.futures.metadata_only if manifest.futures is not None else None
    return metadata_only.budget_bytes if metadata_only is not None else None
