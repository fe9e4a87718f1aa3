"""Client configuration: explicit arguments > environment > defaults, validated once at construction."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from pristine_transport.errors import ConfigurationError
from pristine_transport.manifest import Manifest, load_manifest
from pristine_transport.policy import DEFAULT_DEADLINES, Deadlines

from . import env_names
from .credentials import resolve_credentials
from .wire.dialect import DIALECT_ENV, WireDialect, dialect_setting

__all__ = ["ClientConfig", "TINKEX_VERSION", "WIRE_SDK_VERSION", "load_tinker_manifest", "resolve_config"]

try:
    TINKEX_VERSION = metadata.version("tinkex")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    TINKEX_VERSION = "0.0.0"

WIRE_SDK_VERSION = "0.16.1"
"""The official SDK version whose JSON dialect tinkex speaks; sent as ``sdk_version`` (the backend gates on it)."""

_TRUTHY = {"1", "true", "yes", "on"}
_FALSY = {"0", "false", "no", "off"}
_MANIFEST_PATHS = (Path(__file__).with_name("manifest.json"), Path(__file__).parent.parent / "manifest.json")


def load_tinker_manifest() -> Manifest:
    """The Tinker API manifest shipped with tinkex (``manifest.json`` at the repo root)."""
    for path in _MANIFEST_PATHS:
        if path.exists():
            return load_manifest(path)
    raise ConfigurationError(f"tinkex's manifest.json is missing (looked in {', '.join(map(str, _MANIFEST_PATHS))})")


@dataclass(frozen=True, repr=False)
class ClientConfig:
    api_key: str | None
    """The key from the api_key argument, ``TINKER_API_KEY`` or ``~/.tinker/credentials.json``; ``None`` when
    ``TINKER_CREDENTIAL_CMD`` is the only credential (see :mod:`tinkex.credentials`)."""
    base_url: str
    tags: tuple[str, ...] = ()
    user_metadata: Mapping[str, Any] | None = None
    project_id: str | None = None
    telemetry: bool = True
    sdk_version: str = WIRE_SDK_VERSION
    default_headers: Mapping[str, str] = field(default_factory=dict)
    cloudflare_client_id: str | None = None
    cloudflare_client_secret: str | None = None
    deadlines: Deadlines = DEFAULT_DEADLINES
    """The client's default deadlines (docs/deadlines.md): every request of its clients carries them unless a
    ``with deadlines(...)`` scope or the request itself says otherwise. Default: the official 300 s budget."""
    dialect: WireDialect | None = None
    """The wire dialect forced for this client (``"0.16"``: JSON bodies; ``"0.38"``: protobuf forward_backward
    bodies), or ``None`` to ask the server with the ``client/config`` handshake (see :mod:`tinkex.wire.dialect`)."""
    credential_command: str | None = None
    """``TINKER_CREDENTIAL_CMD``: run for each JWT exchange when the server asks for one (:mod:`tinkex.credentials`)."""
    credential_source: str = "the api_key argument"
    """Where ``api_key`` came from (named in errors; never the value)."""

    def transport_config(self) -> dict[str, Any]:
        """The ``config`` mapping the manifest's header sources read."""
        return {
            "api_key": self.api_key,
            "sdk_version": self.sdk_version,
            "tinkex_version": TINKEX_VERSION,  # the manifest's X-Tinkex-Version header
            "cloudflare_client_id": self.cloudflare_client_id,
            "cloudflare_client_secret": self.cloudflare_client_secret,
        }

    def __repr__(self) -> str:
        key = self.api_key or ""
        shown = "none" if not key else f"{key[:4]}…{key[-4:]}" if len(key) > 12 else "****"
        return f"ClientConfig(base_url={self.base_url!r}, api_key={shown!r}, tags={list(self.tags)!r})"


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUTHY:
        return True
    if raw in _FALSY:
        return False
    return default


def resolve_config(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    tags: list[str] | tuple[str, ...] | None = None,
    user_metadata: Mapping[str, Any] | None = None,
    project_id: str | None = None,
    telemetry: bool | None = None,
    default_headers: Mapping[str, str] | None = None,
    manifest: Manifest | None = None,
    env: Mapping[str, str] | None = None,
    deadlines: Deadlines | None = None,
    dialect: str | None = None,
) -> ClientConfig:
    """``dialect`` (else ``$TINKEX_WIRE_DIALECT``): ``"0.16"``, ``"0.38"`` or ``"auto"`` (ask the server)."""
    env = os.environ if env is None else env
    manifest = manifest or load_tinker_manifest()
    credentials = resolve_credentials(api_key, env)  # the official order of sources; the error names each tried
    url = base_url or env.get(manifest.base_url.env or "", "") or manifest.base_url.default
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"Bad Tinker base URL {url!r}: {exc}. Pass base_url= or set TINKER_BASE_URL.") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(
            f"Bad Tinker base URL {url!r}: expected http(s)://host[:port][/prefix]. Pass base_url= or set TINKER_BASE_URL."
        )
    if tags is None:
        # The official SDK passes TINKER_TAGS through a set (losing order); keep the user's order, drop repeats.
        tags = list(dict.fromkeys(t.strip() for t in env.get(env_names.TAGS, "").split(",") if t.strip()))
    return ClientConfig(
        api_key=credentials.api_key,
        credential_command=credentials.command,
        credential_source=credentials.source,
        base_url=url.rstrip("/"),
        tags=tuple(tags),
        user_metadata=user_metadata,
        project_id=project_id if project_id is not None else env.get(env_names.PROJECT_ID) or None,
        telemetry=env_flag(env, env_names.TELEMETRY, True) if telemetry is None else telemetry,
        default_headers=dict(default_headers or {}),
        cloudflare_client_id=env.get(env_names.CLOUDFLARE_ACCESS_CLIENT_ID) or None,
        cloudflare_client_secret=env.get(env_names.CLOUDFLARE_ACCESS_CLIENT_SECRET) or None,
        deadlines=_checked_deadlines(deadlines),
        dialect=_checked_dialect(dialect, env),
    )


def _checked_dialect(dialect: str | None, env: Mapping[str, str]) -> WireDialect | None:
    try:
        return dialect_setting(dialect, env)
    except ValueError as exc:
        raise ConfigurationError(f"{exc} (the dialect argument or {DIALECT_ENV})") from None


def _checked_deadlines(deadlines: Deadlines | None) -> Deadlines:
    if deadlines is None:
        return DEFAULT_DEADLINES
    if not isinstance(deadlines, Deadlines):
        raise ConfigurationError(
            f"deadlines must be a pristine_transport.policy.Deadlines, got {type(deadlines).__name__} "
            "(e.g. Deadlines(no_progress_s=60))"
        )
    return deadlines
