"""Headers: resolve the manifest's header sources once, then add them to every request of an endpoint.

``resolve_headers`` runs at client start (precedence config > env > value, platform facts computed, secrets
registered with the Redactor, missing or malformed values reported as ConfigurationError). ``HeadersLayer``
adds the resolved headers to each request that does not already carry them.

``async_library`` is resolved when ``resolve_headers`` runs: ``async:trio`` inside a running trio task,
otherwise ``async:asyncio`` (also when no loop runs yet, since the stack is built for an asyncio-compatible loop).
The value cannot change for the life of a client, so computing it per request would buy nothing.

``context_headers(...)`` scopes headers to a context (a ``contextvars`` scope: the task and the tasks it starts):
every request sent inside it carries them, unless the request sets them itself. An SDK names the public call that
sends a request this way; background loops run outside any such scope (or under ``context_headers(None)``).
"""

from __future__ import annotations

import logging
import platform
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpx

from ..errors import ConfigurationError
from ..manifest import HeaderSource, PlatformValue
from ..redaction import Redactor
from .header_list import EncodedHeaders, add_missing

__all__ = ["HeadersLayer", "context_headers", "platform_value", "resolve_headers"]

logger = logging.getLogger("pristine_transport.headers")

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HTTPX_DEFAULT_USER_AGENT = f"python-httpx/{httpx.__version__}"
_NO_HEADERS = EncodedHeaders()
_CONTEXT_HEADERS: ContextVar[EncodedHeaders] = ContextVar("pristine_transport.context_headers", default=_NO_HEADERS)


@contextmanager
def context_headers(headers: Mapping[str, str] | None) -> Iterator[None]:
    """Requests sent in this context (and in tasks started from it) carry ``headers`` (encoded once, here);
    ``None`` or an empty mapping sends none, also inside an outer scope."""
    token = _CONTEXT_HEADERS.set(_encoded_once(headers) if headers else _NO_HEADERS)
    try:
        yield
    finally:
        _CONTEXT_HEADERS.reset(token)


def _encoded_once(headers: Mapping[str, str]) -> EncodedHeaders:
    """``headers`` encoded, once per distinct set: an SDK enters a scope per public call, nearly always with one of a
    few sets (its version and the call's name), and an encoded set keeps what it learnt about requests."""
    key = tuple(headers.items())
    encoded = _ENCODED_CONTEXTS.get(key)
    if encoded is None:
        encoded = EncodedHeaders(headers)
        if len(_ENCODED_CONTEXTS) < _ENCODED_CONTEXTS_KEPT:
            _ENCODED_CONTEXTS[key] = encoded
    return encoded


_ENCODED_CONTEXTS: dict[tuple[tuple[str, str], ...], EncodedHeaders] = {}
_ENCODED_CONTEXTS_KEPT = 1024  # an SDK's public calls; the bound only guards scopes built from unbounded values


def resolve_headers(
    sources: Mapping[str, HeaderSource],
    *,
    config: Mapping[str, Any],
    env: Mapping[str, str],
    redactor: Redactor,
) -> dict[str, str]:
    """Resolve every header source to its value; headers without a value (and not required) are left out.

    Empty strings in ``config`` or ``env`` count as unset.
    """
    resolved: dict[str, str] = {}
    for name, source in sources.items():
        value, origin = _resolve_one(source, config, env)
        if value is None:
            if source.required:
                raise ConfigurationError(f"header {name!r} is required but not set: {_how_to_set(source)}")
            continue
        if source.secret:
            redactor.add_secret_header(name)
            redactor.add_secret_value(value)
        if source.must_start_with is not None and not value.startswith(source.must_start_with):
            raise ConfigurationError(
                f"header {name!r} must start with {source.must_start_with!r}; the value from {origin} does not"
            )
        resolved[name] = value
    return resolved


def platform_value(fact: PlatformValue) -> str:
    """A runtime fact in the spelling of the Stainless SDK headers (``X-Stainless-OS`` etc.)."""
    if fact == "os":
        return _os_name()
    if fact == "arch":
        return _arch_name()
    if fact == "runtime":
        return platform.python_implementation()
    if fact == "runtime_version":
        return platform.python_version()
    return f"async:{_async_library()}"


class HeadersLayer(httpx.AsyncBaseTransport):
    """Adds each header the request does not carry yet. A caller's explicit header wins; httpx's own client
    defaults (``User-Agent: python-httpx/…``, ``Accept: */*``) count as not set.

    With the ``pristine_transport.headers`` logger at DEBUG, every outgoing request's headers are logged,
    masked by ``redactor`` (the builtin secret headers when none is given).
    """

    def __init__(
        self, inner: httpx.AsyncBaseTransport, headers: Mapping[str, str], *, redactor: Redactor | None = None
    ) -> None:
        self._inner = inner
        self._redactor = redactor if redactor is not None else Redactor()
        # Encoded once: per request the layer only compares and appends bytes. Of two spellings of one name, the
        # first is added and the second then finds it present.
        self._headers = EncodedHeaders(headers, replaceable=_HTTPX_DEFAULTS)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        add_missing(request.headers, _CONTEXT_HEADERS.get(), self._headers)  # the context's first: its names win
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s headers=%s",
                request.method,
                self._redactor.url(request.url),
                self._redactor.headers(request.headers),
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


_HTTPX_DEFAULTS = {"User-Agent": _HTTPX_DEFAULT_USER_AGENT, "Accept": "*/*"}
"""Values httpx's client sets on every request unless told otherwise: they are defaults, not the caller's choice."""


def _resolve_one(
    source: HeaderSource, config: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[str | None, str]:
    if source.config is not None:
        configured = config.get(source.config)
        if configured is not None and configured != "":
            return str(configured), f"config key {source.config!r}"
    if source.env is not None and env.get(source.env):
        return env[source.env], f"environment variable {source.env}"
    if source.platform is not None:
        return platform_value(source.platform), f"platform fact {source.platform!r}"
    if source.value is not None:
        return _fill_placeholders(source.value, config), "the manifest default"
    return None, ""


def _fill_placeholders(template: str, config: Mapping[str, Any]) -> str | None:
    """``template`` with each ``{key}`` replaced from ``config``; None when a key is missing."""
    missing = [key for key in _PLACEHOLDER.findall(template) if config.get(key) in (None, "")]
    if missing:
        return None
    return _PLACEHOLDER.sub(lambda m: str(config[m.group(1)]), template)


def _how_to_set(source: HeaderSource) -> str:
    ways = []
    if source.env is not None:
        ways.append(f"set the environment variable {source.env}")
    if source.config is not None:
        ways.append(f"pass the config key {source.config!r}")
    if source.value is not None:
        keys = _PLACEHOLDER.findall(source.value)
        if keys:
            ways.append("pass the config key(s) " + ", ".join(repr(k) for k in keys))
    return " or ".join(ways) if ways else "the manifest gives it no source"


def _os_name() -> str:
    try:
        system = platform.system().lower()
        platform_name = platform.platform().lower()
    except Exception:
        return "Unknown"
    if "iphone" in platform_name or "ipad" in platform_name:
        return "iOS"
    if system == "darwin":
        return "MacOS"
    if system == "windows":
        return "Windows"
    if "android" in platform_name:
        return "Android"
    if system == "freebsd":
        return "FreeBSD"
    if system == "openbsd":
        return "OpenBSD"
    if system == "linux":
        return "Linux"
    if platform_name:
        return f"Other:{platform_name}"
    return "Unknown"


def _arch_name() -> str:
    try:
        machine = platform.machine().lower()
    except Exception:
        return "unknown"
    if machine in ("arm64", "aarch64"):
        return "arm64"
    if machine.startswith("arm"):
        return "arm"
    if machine in ("x86_64", "amd64"):
        return "x64"
    if sys.maxsize <= 2**32:
        return "x32"
    if machine:
        return f"other:{machine}"
    return "unknown"


def _async_library() -> str:
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
            return "trio"
        except RuntimeError:
            pass
    return "asyncio"
