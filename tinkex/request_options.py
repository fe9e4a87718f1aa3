"""``RequestOptions``: the per-request options mapping the official SDK exports (0.38, ``tinker.RequestOptions``).

tinkex's clients take no ``options=`` argument (per-endpoint behaviour lives in ``manifest.json``); the type is
exported so code that annotates with it keeps importing and type-checking.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

import httpx

__all__ = ["RequestOptions", "Timeout"]

Timeout = httpx.Timeout
"""The official SDK's ``Timeout`` is httpx's."""


class RequestOptions(TypedDict, total=False):
    headers: Mapping[str, str]
    max_retries: int
    timeout: float | httpx.Timeout | None
    params: Mapping[str, object]
    extra_json: Mapping[str, object]
    idempotency_key: str
    follow_redirects: bool
