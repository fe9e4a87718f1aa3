"""Shared by the boundary tests: secrets, and ManifestClients over the Tinker manifest with fast retries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

API_KEY = "tml-boundary-secret-0123456789abcdef"
CF_SECRET = "cf-secret-fedcba9876543210-boundary"
MANIFEST_PATH = Path(__file__).parents[3] / "manifest.json"


def fast_manifest(**endpoint_overrides: dict[str, Any]) -> dict[str, Any]:
    """The Tinker manifest with retries that back off for milliseconds (two re-sends), and per-endpoint fields
    replaced (``healthz={"max_response_bytes": 1024}``)."""
    manifest = json.loads(MANIFEST_PATH.read_text())
    manifest["retry_policies"]["standard"].update(max_retries=2, initial_delay_s=0.01, max_delay_s=0.02)
    for endpoint in manifest["endpoints"].values():
        endpoint.pop("size_estimator", None)  # tinkex's estimators are not what these tests are about
    for name, fields in endpoint_overrides.items():
        manifest["endpoints"][name].update(fields)
    return manifest


def client_env(backend: str) -> dict[str, str]:
    return {
        "TINKER_API_KEY": API_KEY,
        "CLOUDFLARE_ACCESS_CLIENT_ID": "cf-id",
        "CLOUDFLARE_ACCESS_CLIENT_SECRET": CF_SECRET,
        "TINKEX_HTTP_BACKEND": backend,
    }
