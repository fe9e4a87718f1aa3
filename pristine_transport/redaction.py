"""Redactor: the one place that knows which headers and values are secret, and masks them.

Everything that may print a request (logs, header dumps, span attributes, exception messages) passes headers,
URLs and free text through a :class:`Redactor` first. Secrets are registered once, where they enter the stack
(the headers layer; a token source for credentials obtained at run time), and are masked everywhere after that.
Short-lived credentials that were replaced can be removed again (``remove_secret_value``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

__all__ = ["BUILTIN_SECRET_HEADERS", "Redactor"]

BUILTIN_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "cf-access-client-secret", "cookie", "set-cookie"}
)

_SECRET_QUERY_NAME = re.compile(r"key|token|secret|sig|passw|pwd|auth|credential", re.IGNORECASE)
_AUTH_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
_MIN_REVEALING_LENGTH = 16
"""Shorter secrets are masked completely: showing 8 of fewer than 16 characters would give too much away."""
_MIN_TEXT_SECRET_LENGTH = 4
"""Shorter values are not searched for in free text: masking every "abc" in a log line would destroy it."""
_FULL_MASK = "***"


class Redactor:
    """Masks secret headers, secret URL parts and registered secret values.

    Thread-safe: registration swaps immutable snapshots under a lock, so reads never lock.
    """

    def __init__(self, secret_headers: Iterable[str] = (), secret_values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secret_headers: frozenset[str] = BUILTIN_SECRET_HEADERS | {h.lower() for h in secret_headers}
        self._registered_count = 0
        self._secret_values: frozenset[str] = frozenset()
        self._value_pattern: re.Pattern[str] | None = None
        self._pattern_stale = False
        self._secret_bytes: tuple[tuple[bytes, bytes], ...] = ()
        for value in secret_values:
            self.add_secret_value(value)

    def add_secret_header(self, name: str) -> None:
        with self._lock:
            self._secret_headers = self._secret_headers | {name.lower()}

    def add_secret_value(self, value: str) -> None:
        if len(value) < _MIN_TEXT_SECRET_LENGTH:
            return
        # A secret can also travel percent-encoded (in a query string, a form body).
        forms = {value, quote(value, safe="")}
        with self._lock:
            if value in self._secret_values:
                return
            self._registered_count += 1
            self._secret_values = self._secret_values | forms
            self._pattern_stale = True
            longest_first = sorted(self._secret_values, key=len, reverse=True)
            self._secret_bytes = tuple((v.encode(), self.mask(v).encode()) for v in longest_first)

    def remove_secret_value(self, value: str) -> None:
        """Stop masking ``value`` (and its percent-encoded form): for short-lived credentials a client replaces at
        run time (renewed tokens), so masking work does not grow with every renewal. Unknown values are ignored."""
        forms = {value, quote(value, safe="")}
        with self._lock:
            if value not in self._secret_values:
                return
            self._registered_count -= 1
            self._secret_values = self._secret_values - forms
            self._pattern_stale = True
            longest_first = sorted(self._secret_values, key=len, reverse=True)
            self._secret_bytes = tuple((v.encode(), self.mask(v).encode()) for v in longest_first)

    def secret_bytes(self) -> tuple[tuple[bytes, bytes], ...]:
        """Every registered secret value as UTF-8 bytes with the bytes of its mask, longest first (for masking
        response bodies as they stream, see ``pristine_transport.boundary``)."""
        return self._secret_bytes

    def is_secret_header(self, name: str) -> bool:
        return name.lower() in self._secret_headers

    def mask(self, value: str) -> str:
        """``tml-…wxyz``: at most a 4-character prefix and the last 4 characters; short values fully masked."""
        if not value:
            return ""
        if len(value) < _MIN_REVEALING_LENGTH:
            return _FULL_MASK
        return f"{value[:4]}…{value[-4:]}"

    def headers(self, headers: Mapping[str, str] | httpx.Headers | Iterable[tuple[str, str]]) -> dict[str, str]:
        """A masked copy: secret headers masked (an auth scheme such as ``Bearer`` stays readable); secret
        values that leaked into other headers replaced."""
        if isinstance(headers, httpx.Headers):
            items: Iterable[tuple[str, str]] = (
                (name.decode(headers.encoding), value.decode(headers.encoding)) for name, value in headers.raw
            )
        else:
            items = headers.items() if isinstance(headers, Mapping) else headers
        masked: dict[str, str] = {}
        for name, value in items:
            shown = self._mask_credential(value) if self.is_secret_header(name) else self.text(value)
            masked[name] = f"{masked[name]}, {shown}" if name in masked else shown
        return masked

    def url(self, url: str | httpx.URL) -> str:
        """The URL with its userinfo password and the values of secret-looking query parameters masked."""
        parts = urlsplit(str(url))
        netloc = parts.netloc
        userinfo, at, hostport = netloc.rpartition("@")
        if at:
            user, colon, password = userinfo.partition(":")
            netloc = f"{user}:{_FULL_MASK}@{hostport}" if colon and password else netloc
        query = "&".join(self._mask_query_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
        return self.text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))

    def text(self, text: str) -> str:
        """``text`` with every registered secret value replaced by its mask."""
        pattern = self._current_pattern()
        if pattern is None:
            return text
        return pattern.sub(lambda m: self.mask(m.group(0)), text)

    def __repr__(self) -> str:
        return f"Redactor(secret_headers={sorted(self._secret_headers)}, secret_values=<{self._registered_count}>)"

    def _current_pattern(self) -> re.Pattern[str] | None:
        # Compiled lazily: registering many values in a row costs one compile, at the next use.
        if self._pattern_stale:
            with self._lock:
                if self._pattern_stale:
                    longest_first = sorted(self._secret_values, key=len, reverse=True)
                    pattern = "|".join(re.escape(v) for v in longest_first)
                    self._value_pattern = re.compile(pattern) if pattern else None
                    self._pattern_stale = False
        return self._value_pattern

    def _mask_credential(self, value: str) -> str:
        scheme, space, credential = value.partition(" ")
        if space and credential and _AUTH_SCHEME.match(scheme):
            return f"{scheme} {self.mask(credential.strip())}"
        return self.mask(value)

    def _mask_query_pair(self, pair: str) -> str:
        name, eq, value = pair.partition("=")
        if eq and value and _SECRET_QUERY_NAME.search(name):
            return f"{name}={_FULL_MASK}"
        return pair
