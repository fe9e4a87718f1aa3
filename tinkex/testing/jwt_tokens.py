"""The local server's JWT exchange (``POST /api/v1/auth/token``), switched on by ``ServerConfig.client_config``'s
``pjwt_auth_enabled`` (what ``client/config`` then tells clients), as the hosted service does (``docs/wire.md``
§1.7, §12.1):

- ``auth/token`` takes the API key (``X-API-Key``, checked like any key) and answers ``{"jwt": ...}``: an HS256 JWT
  signed with a per-server secret, with ``iat``/``exp`` ``ServerConfig.jwt_lifetime`` apart (short lifetimes make
  renewal testable in seconds; times are fractional seconds);
- every other authenticated endpoint then takes only a JWT this server issued and that has not expired; anything
  else is refused with ``401`` and ``WWW-Authenticate: Bearer error="invalid_token"`` (RFC 6750), which is what makes
  a client replace its token and replay the request once;
- ``client/config`` still takes the API key (the client cannot know about JWTs before asking);
- :meth:`JwtIssuer.revoke_issued` refuses every token issued so far, as a server that rotated its signing key would,
  and ``issued`` counts exchanges.

A JWT acts as the key it was exchanged for: handlers see that key (the principal of ``auth/apikey/me`` and of session
ownership), never the token. Tokens are never logged; the ledger masks ``x-api-key``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .calls import Call, Result
from .replies import Reply, error_reply, json_reply

__all__ = ["INVALID_TOKEN_CHALLENGE", "JwtIssuer", "TokenCheck", "authenticate", "jwt_exempt"]

INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'
_RAW_KEY_ENDPOINTS = frozenset({"client_config", "auth_token"})


def jwt_exempt(endpoint: str) -> bool:
    """Endpoints that take the API key itself even when JWTs are on."""
    return endpoint in _RAW_KEY_ENDPOINTS


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenCheck:
    """A checked token: the key it stands for, or what is wrong with it (never quoting it)."""

    api_key: str | None
    problem: str | None


class JwtIssuer:
    """Issues and checks this server's JWTs. Thread-safe (the server loop issues; tests read the counters)."""

    def __init__(self, lifetime_s: float, *, clock: Callable[[], float] = time.time) -> None:
        if lifetime_s <= 0:
            raise ValueError(f"jwt_lifetime must be positive, got {lifetime_s}")
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._keys: dict[str, str] = {}
        """jti -> the API key the token was exchanged for (held server-side: the token itself carries no key)."""
        self._revoked: set[str] = set()
        self.issued = 0
        self.refused = 0
        self.tokens: list[str] = []
        """Every token issued, for tests that prove the tokens leak nowhere (this is a test server)."""

    def __repr__(self) -> str:
        return f"JwtIssuer(lifetime_s={self.lifetime_s}, issued={self.issued}, refused={self.refused})"

    def issue(self, api_key: str) -> str:
        now = self._clock()
        jti = secrets.token_hex(8)
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        subject = hashlib.sha256(api_key.encode()).hexdigest()[:12]
        claims = {"iss": "tinkex-local", "sub": f"key-{subject}", "iat": now, "exp": now + self.lifetime_s, "jti": jti}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = _b64(hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        token = f"{header}.{payload}.{signature}"
        with self._lock:
            self._keys[jti] = api_key
            self.issued += 1
            self.tokens.append(token)
        return token

    def check(self, token: str) -> TokenCheck:
        problem, api_key = self._problem(token)
        if problem is not None:
            with self._lock:
                self.refused += 1
        return TokenCheck(api_key, problem)

    def auth_token(self, call: Call) -> Result:
        """``POST /api/v1/auth/token``: a JWT for the caller's API key (already checked by :func:`authenticate`)."""
        return Result(json_reply({"jwt": self.issue(call.headers.get("x-api-key", ""))}))

    def revoke_issued(self) -> int:
        """Refuse every token issued so far (before its expiry); returns how many."""
        with self._lock:
            self._revoked.update(self._keys)
            return len(self._keys)

    def _problem(self, token: str) -> tuple[str | None, str | None]:
        parts = token.split(".")
        if len(parts) != 3:
            return "X-API-Key must be a JWT from /api/v1/auth/token on this server", None
        header, payload, signature = parts
        expected = _b64(hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            return "the JWT was not issued by this server", None
        claims = json.loads(_unb64(payload))
        jti = claims.get("jti")
        with self._lock:
            api_key = self._keys.get(jti)
            revoked = jti in self._revoked
        if api_key is None or revoked:
            return "the JWT was revoked", None
        if float(claims["exp"]) <= self._clock():
            return "the JWT has expired", None
        return None, api_key


def authenticate(
    call: Call, *, jwt_enabled: bool, issuer: JwtIssuer, check_api_key: Callable[[str | None], str | None]
) -> Reply | None:
    """The 401 refusing ``call``'s credential, or ``None`` to go on. With JWTs on, a non-exempt endpoint needs a
    live JWT of this server (else 401 ``invalid_token``), and ``call.headers["x-api-key"]`` becomes the key the
    token stands for, so handlers see the same principal either way."""
    key = call.headers.get("x-api-key")
    if jwt_enabled and not jwt_exempt(call.endpoint):
        checked = issuer.check(key or "")
        if checked.problem is not None:
            return error_reply(401, checked.problem, {"WWW-Authenticate": INVALID_TOKEN_CHALLENGE})
        call.headers = {**call.headers, "x-api-key": checked.api_key or ""}
        return None
    problem = check_api_key(key)
    return error_reply(401, problem) if problem is not None else None

