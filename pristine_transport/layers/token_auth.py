"""Short-lived credentials: a :class:`TokenSource` gives the token each request carries, :class:`TokenAuthLayer`
puts it in a header and replays a request once when the server rejects the token itself, and
:class:`RefreshingToken` is a source that exchanges for tokens and renews them before they expire.

Nothing here knows which service issues the tokens: the caller passes the exchange (a coroutine function), where it
runs (``run``: one event loop owns the background refresh, requests on any loop read the token), and which
endpoints carry which source (:class:`TokenAuth`).

Renewal, as pure decisions (tested by tables):

- a fresh token is renewed in the background after 45-55 % of its lifetime (``exp - iat``, both from the issuer, so
  local clock skew cannot shorten the delay);
- a request that finds the token within ``renew_margin`` of its expiry (the smaller of 60 s and a tenth of the
  lifetime) renews it first;
- a failed renewal keeps the current token while it lives and is retried with :func:`policy.backoff_delay` (capped
  at half the time the token has left, so several retries happen before it expires);
- once the token has expired and renewing still fails, requests raise :class:`TokenUnavailableError`, an
  ``AuthenticationError`` naming why (never the token).

Every token is registered with the :class:`~pristine_transport.redaction.Redactor` before anything can send or
print it.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx

from .. import extensions
from ..errors import TokenUnavailableError
from ..policy import backoff_delay
from ..redaction import Redactor
from .header_list import set_header
from .response_io import discard

__all__ = [
    "DEFAULT_RENEWAL",
    "RefreshingToken",
    "Renewal",
    "TokenAuth",
    "TokenAuthLayer",
    "TokenSource",
    "TokenUnavailableError",
    "is_invalid_token",
    "jwt_claims",
    "jwt_validity",
    "refresh_delay",
    "renew_margin",
    "retry_delay",
]

logger = logging.getLogger("pristine_transport.token_auth")

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, T]], "concurrent.futures.Future[T]"]
"""Runs a coroutine on the event loop that owns the token (``BackgroundLoop.submit``, say); the returned future is
thread-safe and cancelling it cancels the coroutine."""


class TokenSource(Protocol):
    """Where a request's credential comes from."""

    async def token(self) -> str:
        """The token to send now (obtaining or renewing one if needed)."""
        ...

    async def replacement(self, rejected: str) -> str:
        """A token other than ``rejected``, which the server refused before it expired."""
        ...


@dataclass(frozen=True)
class TokenAuth:
    """Which requests carry a token and how. ``source_for(endpoint)`` is asked per request (so a source can be
    switched on at run time, after a handshake): a source sets ``header``; ``None`` leaves the request's headers
    as the headers layer resolved them. ``is_rejection`` says when a response refuses the token itself (then the
    request is replayed once with :meth:`TokenSource.replacement`)."""

    source_for: Callable[[str], TokenSource | None]
    header: str = "Authorization"
    is_rejection: Callable[[httpx.Response], bool] = lambda response: is_invalid_token(response)


def is_invalid_token(response: httpx.Response) -> bool:
    """RFC 6750: a 401 whose ``WWW-Authenticate`` says ``error="invalid_token"`` refuses the token, not the caller."""
    return response.status_code == 401 and 'error="invalid_token"' in response.headers.get("www-authenticate", "")


class TokenAuthLayer(httpx.AsyncBaseTransport):
    """Sets the endpoint's token (when its :class:`TokenAuth` gives it a source) and replays the request once
    if the server refuses that token. A request whose streamed body was already consumed is not replayed: its
    refusal is returned as is."""

    def __init__(self, inner: httpx.AsyncBaseTransport, auth: TokenAuth, *, endpoint: str) -> None:
        self._inner = inner
        self._auth = auth
        self._endpoint = endpoint
        self._header = auth.header

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        source = self._auth.source_for(request.extensions.get(extensions.ENDPOINT, self._endpoint))
        if source is None:
            return await self._inner.handle_async_request(request)
        sent = await _obtain(source.token(), request)
        set_header(request.headers, self._header, sent.encode("utf-8"))
        response = await self._inner.handle_async_request(request)
        if not self._auth.is_rejection(response) or not _replayable(request):
            return response
        await discard(response)  # its connection goes back to the pool while a new token is obtained
        replacement = await _obtain(source.replacement(sent), request)
        set_header(request.headers, self._header, replacement.encode("utf-8"))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _obtain(pending: Awaitable[str], request: httpx.Request) -> str:
    try:
        return await pending
    except TokenUnavailableError as exc:
        # Raised for this request: its own request and a 401 of its own, so it reads like the refusal it stands for.
        raise TokenUnavailableError(str(exc), response=httpx.Response(401, request=request), body=None) from (
            exc.__cause__
        )


def _replayable(request: httpx.Request) -> bool:
    try:
        request.content  # noqa: B018 - raises for a streamed body that was not read into memory
    except httpx.RequestNotRead:
        return False
    return True


_KEEP_REGISTERED = 4
"""Tokens kept registered with the Redactor: the current one and the last few (a request sent with one may still be
logged or fail after it was replaced); older ones have expired and are removed."""


# ---- decisions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Renewal:
    """When tokens are renewed (module docstring)."""

    early_fraction: tuple[float, float] = (0.45, 0.55)
    """Renew after this fraction of the lifetime, uniformly drawn (spreads many clients' renewals)."""
    margin_s: float = 60.0
    margin_fraction: float = 0.1
    """A request renews first when the token has at most min(margin_s, margin_fraction * lifetime) left."""
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    retry_jitter: float = 0.25
    retry_min_s: float = 0.05


DEFAULT_RENEWAL = Renewal()


def refresh_delay(lifetime_s: float, renewal: Renewal = DEFAULT_RENEWAL, *, random: float = 0.5) -> float:
    """Seconds after receiving a token of ``lifetime_s`` to renew it (``random`` in [0, 1] picks in the range)."""
    low, high = renewal.early_fraction
    return max(lifetime_s, 0.0) * (low + (high - low) * random)


def renew_margin(lifetime_s: float, renewal: Renewal = DEFAULT_RENEWAL) -> float:
    """A token with at most this many seconds left is renewed before it is sent."""
    return min(renewal.margin_s, renewal.margin_fraction * max(lifetime_s, 0.0))


def retry_delay(failures: int, remaining_s: float, renewal: Renewal = DEFAULT_RENEWAL, *, random: float = 0.5) -> float:
    """Seconds before retrying a renewal that failed ``failures`` times in a row (from 1) while the current token
    has ``remaining_s`` left (negative once expired): the one backoff of ``policy``, capped at half the time left."""
    delay = backoff_delay(
        max(failures - 1, 0),
        initial_s=renewal.retry_initial_s,
        max_s=renewal.retry_max_s,
        jitter=renewal.retry_jitter,
        mode="down",
        random=random,
    )
    if remaining_s > 0:
        delay = min(delay, remaining_s / 2)
    return max(delay, renewal.retry_min_s)


# ---- JWT claims ---------------------------------------------------------------------------------------------


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload claims of a JWT, decoded without checking the signature (the issuer sent it over the connection
    it authenticated; the client only reads its times). ``ValueError`` names what is wrong, never the token."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError(f"a JWT has 3 dot-separated parts, this token has {len(parts)}")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the JWT payload is not base64url JSON ({type(exc).__name__})") from None
    if not isinstance(claims, dict):
        raise ValueError("the JWT payload is not a JSON object")
    return claims


def jwt_validity(token: str) -> tuple[float, float]:
    """``(issued_at, expires_at)`` of a JWT from its ``iat`` and ``exp`` claims (Unix seconds)."""
    claims = jwt_claims(token)
    try:
        issued_at, expires_at = float(claims["iat"]), float(claims["exp"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("the JWT lacks numeric 'iat' and 'exp' claims") from None
    if expires_at <= issued_at:
        raise ValueError(f"the JWT expires {issued_at - expires_at:.0f} s before it was issued")
    return issued_at, expires_at


async def _joined(exchange: concurrent.futures.Future[T]) -> T:
    """Await an exchange others may be awaiting too: a cancelled waiter must not cancel it for the rest."""
    joined = asyncio.wrap_future(exchange)
    joined.add_done_callback(_read_failure)  # a waiter cancelled meanwhile leaves nobody else to read it
    return await asyncio.shield(joined)


def _read_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


# ---- the refreshing source ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Held:
    value: str
    expires_at: float
    lifetime_s: float
    received_at: float
    """Local time of receipt: renewal is scheduled from it, so a skewed clock cannot move it."""


class RefreshingToken:
    """A :class:`TokenSource` over an exchange (``fetch``: a coroutine function returning a new token), renewed in
    the background and on demand, one exchange at a time however many requests and loops ask (waiters on any
    asyncio loop join the exchange with ``asyncio.wrap_future``).

    ``run`` runs the exchanges and the background renewal on the loop that owns this source; requests on any loop
    await their outcome. ``validity(token) -> (issued_at, expires_at)`` reads a token's times (default: its JWT
    claims). ``close()`` stops the background renewal; the current token is still served afterwards (a last flush
    of buffered events may need it).
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[str]],
        *,
        run: Runner[Any],
        validity: Callable[[str], tuple[float, float]] = jwt_validity,
        redactor: Redactor | None = None,
        renewal: Renewal = DEFAULT_RENEWAL,
        clock: Callable[[], float] = time.time,
        name: str = "access token",
    ) -> None:
        self._fetch = fetch
        self._run = run
        self._validity = validity
        self._redactor = redactor
        self._renewal = renewal
        self._clock = clock
        self._name = name
        self._lock = threading.Lock()
        self._held: _Held | None = None
        self._pending: concurrent.futures.Future[_Held] | None = None
        self._background: concurrent.futures.Future[None] | None = None
        self._closed = False
        self._failures = 0
        self._last_failure: BaseException | None = None
        self._registered: list[str] = []
        self._pid = os.getpid()
        self.exchanges = 0
        """Exchanges started (successful or not)."""

    def __repr__(self) -> str:
        held = self._held
        state = "no token" if held is None else f"expires in {held.expires_at - self._clock():.0f} s"
        return f"RefreshingToken({self._name}: {state}, exchanges={self.exchanges})"

    async def token(self) -> str:
        held = self._held
        if held is not None and held.expires_at - self._clock() > renew_margin(held.lifetime_s, self._renewal):
            return held.value
        return await self._renew_or_keep(held)

    async def replacement(self, rejected: str) -> str:
        held = self._held
        if held is not None and held.value != rejected:
            return held.value  # another request already replaced it
        try:
            return (await _joined(self._exchange(force_after=held))).value
        except Exception as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            background, self._background = self._background, None
        if background is not None:
            background.cancel()

    async def _renew_or_keep(self, held: _Held | None) -> str:
        try:
            return (await _joined(self._exchange(force_after=held))).value
        except Exception as exc:
            current = self._held
            if current is not None and current.expires_at > self._clock():
                log = logger.warning if self._failures <= 1 else logger.debug  # once per outage, not per request
                log("%s renewal failed; the current one is used until it expires: %s", self._name, self._masked(exc))
                return current.value
            raise self._unavailable(exc) from exc

    def _exchange(self, *, force_after: _Held | None) -> concurrent.futures.Future[_Held]:
        """The exchange in flight, else a new one, unless the token changed since the caller looked (then that)."""
        if self._pid != os.getpid():
            self._forget_parent_work()
        with self._lock:
            if self._held is not force_after and self._held is not None:
                done: concurrent.futures.Future[_Held] = concurrent.futures.Future()
                done.set_result(self._held)
                return done
            if self._pending is None or self._pending.done():
                self.exchanges += 1
                self._pending = self._run(self._fetch_once())
            return self._pending

    def _forget_parent_work(self) -> None:
        """In a forked child: the parent's exchange and renewal ran on a loop this process does not run, so they
        would never finish here. Start afresh (the token itself is still good)."""
        self._lock = threading.Lock()  # the parent may have held it at the fork
        self._pid = os.getpid()
        self._pending = None
        self._background = None

    async def _fetch_once(self) -> _Held:
        try:
            value = await self._fetch()
            if self._redactor is not None:  # before anything can send or print it
                self._redactor.add_secret_value(value)
            issued_at, expires_at = self._validity(value)
        except Exception as exc:
            with self._lock:
                self._failures += 1
                self._last_failure = exc
            raise
        held = _Held(value, expires_at, expires_at - issued_at, self._clock())
        with self._lock:
            self._held = held
            self._registered.append(value)
            retired = self._registered[: -_KEEP_REGISTERED]
            del self._registered[: -_KEEP_REGISTERED]
            self._failures = 0
            self._last_failure = None
            start_background = self._background is None and not self._closed
            if start_background:
                self._background = self._run(self._renew_in_background())
        if self._redactor is not None:
            for old in retired:  # long expired: masking them forever would only grow the work per log line
                self._redactor.remove_secret_value(old)
        return held

    async def _renew_in_background(self) -> None:
        while True:
            held = self._held
            if held is None:
                return
            if self._failures:
                delay = retry_delay(self._failures, held.expires_at - self._clock(), self._renewal,
                                    random=random.random())
            else:
                renew_at = held.received_at + refresh_delay(held.lifetime_s, self._renewal, random=random.random())
                delay = max(renew_at - self._clock(), 0.0)
            await asyncio.sleep(delay)
            if self._closed:
                return
            if self._held is not held and self._failures == 0:
                continue  # renewed on demand meanwhile: schedule from the new token
            try:
                await _joined(self._exchange(force_after=self._held))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log = logger.warning if self._failures == 1 else logger.debug
                log("%s renewal failed (%d in a row), retrying: %s", self._name, self._failures, self._masked(exc))

    def _unavailable(self, exc: BaseException) -> TokenUnavailableError:
        held = self._held
        if held is None:
            why = f"no {self._name} could be obtained"
        else:
            why = f"the {self._name} expired {self._clock() - held.expires_at:.0f} s ago and could not be renewed"
        request = getattr(exc, "request", None)
        if not isinstance(request, httpx.Request):
            request = httpx.Request("POST", "http://token.invalid/")
        return TokenUnavailableError(
            f"{why}: {type(exc).__name__}: {self._masked(exc)}",
            response=httpx.Response(401, request=request),
            body=None,
        )

    def _masked(self, exc: BaseException) -> str:
        text = str(exc)
        return self._redactor.text(text) if self._redactor is not None else text
