"""The holder a REST-only client (``RestClient``, ``AdminClient``) talks through.

Its own module so that both clients (and :mod:`tinkex.auth`) reach it without importing each other:
``RestClient``'s deprecated admin methods delegate to ``AdminClient``.
"""

from __future__ import annotations

import threading

from .config import load_tinker_manifest, resolve_config
from .holder import Holder

__all__ = ["rest_holder"]

_STANDALONE_HOLDERS: dict[tuple[str, str], Holder] = {}
_STANDALONE_LOCK = threading.Lock()


def rest_holder(client_name: str, holder: Holder | None, *, base_url: str | None, api_key: str | None) -> Holder:
    """The holder a REST-only client (``RestClient``, ``AdminClient``) talks through: the one it was handed (a
    ``Client``'s, sharing its connections), else the process-wide session-less one of its base URL and key."""
    if holder is None:
        return _standalone_holder(base_url, api_key)
    if base_url is not None or api_key is not None:
        raise ValueError(f"{client_name} takes a holder or base_url/api_key, not both")
    return holder


def _standalone_holder(base_url: str | None, api_key: str | None) -> Holder:
    """The session-less holder of ``RestClient()``: one per base URL and key in the process, as in the official
    SDK, so constructing many REST clients shares their connections (which stay open and need no closing)."""
    manifest = load_tinker_manifest()
    config = resolve_config(api_key=api_key, base_url=base_url, manifest=manifest)
    key = (config.base_url, config.api_key)
    with _STANDALONE_LOCK:
        holder = _STANDALONE_HOLDERS.get(key)
        if holder is None or holder.closed:
            holder = _STANDALONE_HOLDERS[key] = Holder(config, manifest)
        return holder
