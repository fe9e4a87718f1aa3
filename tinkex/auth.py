"""Is tinkex set up to reach Tinker? The official ``tinker.auth`` helpers, on tinkex's own credential resolution
(:mod:`tinkex.credentials`: the ``api_key`` argument, ``TINKER_API_KEY``, ``TINKER_CREDENTIAL_CMD``,
``~/.tinker/credentials.json``, in that order).

As in the official SDK, :func:`get_tinker_token` is a local lookup of a static key (``TINKER_API_KEY`` or the stored
default; it never runs the command), and :func:`tinker_has_credentials` counts a configured command without running
it. No function here puts a credential in a message.
"""

from __future__ import annotations

import os

from .api_future import in_background
from .config import ClientConfig, load_tinker_manifest, resolve_config
from .credentials import API_KEY_ENV, resolve_credentials
from .errors import TinkerError
from .rest_client import rest_holder
from .types import GetServerCapabilitiesResponse

__all__ = ["get_tinker_token", "raise_if_tinker_not_accessible", "tinker_has_credentials"]

_ACCESS_CHECK_ENDPOINT = "check_accessible"
"""``get_server_capabilities`` under the manifest's ``none`` retry policy: one request, so a failure surfaces as an
error at once rather than as minutes of re-sends."""


def _configured_credentials() -> ClientConfig:
    """tinkex's resolution of the key alone: the base URL is pinned to the manifest's default so that a bad
    ``TINKER_BASE_URL`` does not hide a configured key (the official lookup does not read the URL either)."""
    manifest = load_tinker_manifest()
    return resolve_config(base_url=manifest.base_url.default, manifest=manifest)


def get_tinker_token() -> str | None:
    """The static key tinkex would send (``TINKER_API_KEY``, else the stored default key), or ``None`` when there
    is none or it is malformed. A local lookup: nothing is sent and ``TINKER_CREDENTIAL_CMD`` is not run."""
    try:
        key = os.environ.get(API_KEY_ENV) or None
        return resolve_credentials(key, {}).api_key  # the environment's key, else the stored default
    except (OSError, ValueError, TinkerError):
        return None


def tinker_has_credentials() -> bool:
    """Whether tinkex can resolve a Tinker credential (a local check: nothing is sent; a configured
    ``TINKER_CREDENTIAL_CMD`` counts without being run)."""
    try:
        _configured_credentials()
    except (OSError, ValueError, TinkerError):
        return False
    return True


def raise_if_tinker_not_accessible() -> None:
    """Return if the server accepts the configured credential, else raise a :class:`~tinkex.TinkerError`.

    Blocking: one request to ``get_server_capabilities`` (which needs billing set up), not retried. Raises
    ``ConfigurationError`` (a ``TinkerError``) when no usable key or base URL is configured,
    ``AuthenticationError`` when the key is rejected, ``BillingError`` when the account is not fully set up (402),
    ``APIConnectionError`` when the server cannot be reached, and the matching ``APIStatusError`` otherwise.
    """
    try:
        holder = rest_holder("raise_if_tinker_not_accessible", None, base_url=None, api_key=None)

        async def check() -> GetServerCapabilitiesResponse:
            return await holder.clients().http.call(_ACCESS_CHECK_ENDPOINT, result_type=GetServerCapabilitiesResponse)

        in_background(check()).result()
    except TinkerError:
        raise
    except Exception as exc:  # noqa: BLE001 - the documented contract is a TinkerError subclass, whatever failed
        raise TinkerError(f"Tinker is not accessible: {type(exc).__name__}: {exc}") from exc
