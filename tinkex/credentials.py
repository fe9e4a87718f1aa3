"""Where a client's Tinker credential comes from, and which credential each request carries.

Sources, in the official 0.38 order (``docs/wire.md`` §8.2, §12.1):

1. the ``api_key`` argument, else ``TINKER_API_KEY`` (a ``tml-`` key, or a JWT starting ``eyJ`` that has not
   expired; a malformed one gives way to the command when one is set, else it is an error);
2. ``TINKER_CREDENTIAL_CMD``: a shell command whose standard output is the credential, run for every token
   exchange (so it can print short-lived credentials);
3. ``~/.tinker/credentials.json``: the default key ``tinker auth login`` stored (``{"version": 1, "default":
   name, "keys": {name: {"key": ...}}}``); read only when no command is set, so a stored key never shadows it.

When none gives a credential, :class:`~tinkex.ConfigurationError` lists every source tried and what was found there
(never a value).

Which credential a request carries (:func:`credential_plan`, decided once the server's flags are known):

- servers without JWT exchange (no ``client/config``, or ``pjwt_auth_enabled`` false) take the API key itself; a
  command alone cannot serve them (as in the official SDK);
- with ``pjwt_auth_enabled``, the API key (or, when the server's ``credential_default_source`` is
  ``credential_cmd`` or there is no key, the command's output) is exchanged at ``auth/token`` for a JWT, which every
  other request carries and which is renewed in the background (``pristine_transport.layers.token_auth``).

``client/config`` and ``auth/token`` always carry the credential itself. Every credential, command output and JWT
is registered with the client's Redactor before it is sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from pristine_transport.client import ManifestClient
from pristine_transport.deadlines import deadlines
from pristine_transport.errors import ConfigurationError
from pristine_transport.layers.token_auth import (
    RefreshingToken,
    Runner,
    TokenAuth,
    TokenSource,
    jwt_validity,
)
from pristine_transport.policy import RetryBudget
from pristine_transport.redaction import Redactor

from . import env_names
from .runtime import loop_is_usable, running_loop
from .sdk_method import detached
from .types import AuthTokenResponse, ClientConfigResponse

if TYPE_CHECKING:
    from .holder import Holder

__all__ = [
    "API_KEY_ENV",
    "CREDENTIAL_CMD_ENV",
    "CredentialPlan",
    "Credentials",
    "TinkerAuth",
    "credential_plan",
    "default_credentials_path",
    "holder_auth",
    "resolve_credentials",
    "stored_default_key",
]

API_KEY_ENV = env_names.API_KEY
CREDENTIAL_CMD_ENV = env_names.CREDENTIAL_CMD
API_KEY_HEADER = "X-API-Key"
AUTH_TOKEN_ENDPOINT = "auth_token"
RAW_CREDENTIAL_ENDPOINTS = frozenset({"client_config", AUTH_TOKEN_ENDPOINT})
"""Endpoints that carry the credential itself, never the JWT: the handshake that says whether JWTs are used, and
the exchange that makes them."""
COMMAND_TIMEOUT_S = 60.0
EXCHANGE_NO_PROGRESS_S = 30.0
CLOSE_TIMEOUT_S = 5.0
_KEY_PREFIXES = ("tml-", "eyJ")
_MISSING = "No Tinker API key: pass tinkex.Client(api_key='tml-…') or set the TINKER_API_KEY environment variable"


def default_credentials_path() -> Path:
    """Where ``tinker auth login`` stores keys."""
    return Path("~/.tinker/credentials.json").expanduser()


class _StoredKey(msgspec.Struct):
    key: str
    name: str = ""
    type: str = "manual"


class _StoredCredentials(msgspec.Struct):
    version: int = 1
    default: str | None = None
    keys: dict[str, _StoredKey] = msgspec.field(default_factory=dict)


def stored_default_key(path: Path | None = None) -> tuple[str | None, str]:
    """The stored default key (or ``None``) and what was found, for the error that lists the sources tried."""
    path = path if path is not None else default_credentials_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, f"{path} (no such file)"
    except OSError as exc:
        return None, f"{path} (unreadable: {type(exc).__name__})"
    try:
        stored = msgspec.json.decode(raw, type=_StoredCredentials)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        # msgspec names the field and the expected type; it never quotes the value.
        raise ConfigurationError(f"{path} is not a Tinker credentials file: {exc}") from None
    if stored.version != 1:
        raise ConfigurationError(f"{path} has version {stored.version}; this tinkex reads version 1")
    if stored.default is None:
        return None, f"{path} (no default key)"
    record = stored.keys.get(stored.default)
    if record is None:
        return None, f"{path} (its default names no stored key)"
    return record.key, f"{path} (default key {stored.default!r})"


@dataclass(frozen=True, repr=False)
class Credentials:
    """What the sources gave: a key (``api_key``) and/or a command; ``source`` names where the key came from."""

    api_key: str | None
    command: str | None
    source: str

    def __repr__(self) -> str:
        return f"Credentials(source={self.source!r}, key={'set' if self.api_key else 'none'}, command={self.command is not None})"


def _key_problem(key: str) -> str | None:
    if not key.startswith(_KEY_PREFIXES):
        return "must start with 'tml-' (or be a JWT starting 'eyJ')"
    if key.startswith("eyJ"):
        try:
            _, expires_at = jwt_validity(key)
        except ValueError as exc:
            return f"is not a readable JWT ({exc})"
        if expires_at <= time.time():
            return "is a JWT that has expired"
    return None


def resolve_credentials(
    api_key: str | None = None, env: Mapping[str, str] | None = None, *, credentials_path: Path | None = None
) -> Credentials:
    """The client's credentials from the sources, in order; ``ConfigurationError`` names every source tried."""
    env = os.environ if env is None else env
    command = env.get(CREDENTIAL_CMD_ENV, "").strip() or None
    given, source = (api_key, "the api_key argument") if api_key else (env.get(API_KEY_ENV) or None, API_KEY_ENV)
    if given is not None:
        problem = _key_problem(given)
        if problem is None:
            return Credentials(given, command, source)
        if command is None:
            raise ConfigurationError(
                f"The Tinker API key from {source} {problem} (check TINKER_API_KEY or the api_key argument)."
            )
        return Credentials(None, command, CREDENTIAL_CMD_ENV)  # the official fallback for a malformed key
    if command is not None:
        return Credentials(None, command, CREDENTIAL_CMD_ENV)
    stored, found = stored_default_key(credentials_path)
    if stored is not None:
        problem = _key_problem(stored)
        if problem is not None:
            raise ConfigurationError(f"The default key in {found} {problem}.")
        return Credentials(stored, None, found)
    tried = [
        "the api_key argument (not given)",
        f"{API_KEY_ENV} (not set)",
        f"{CREDENTIAL_CMD_ENV} (not set)",
        found,
    ]
    raise ConfigurationError(f"{_MISSING}. Tried: {'; '.join(tried)}.")


# ---- which credential each request carries --------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialPlan:
    """``jwt``: exchange for JWTs; ``exchange_with``: what ``auth/token`` carries; ``problem``: why this client
    cannot talk to the server (raised at its first request that needs a credential)."""

    jwt: bool
    exchange_with: Literal["api_key", "command"] | None = None
    problem: str | None = None


def credential_plan(
    *, has_key: bool, key_is_jwt: bool, has_command: bool, flags: ClientConfigResponse | None
) -> CredentialPlan:
    """What the official 0.38 ``InternalClientHolder`` decides from the credentials and the server's flags."""
    if flags is None or not flags.pjwt_auth_enabled:
        if has_key:
            return CredentialPlan(jwt=False)
        return CredentialPlan(
            jwt=False,
            problem=f"{_MISSING}: {CREDENTIAL_CMD_ENV} is used only to obtain tokens from servers that exchange them "
            "(pjwt_auth_enabled), and this server does not",
        )
    if flags.credential_default_source == "credential_cmd" and not key_is_jwt:
        if has_command:
            return CredentialPlan(jwt=True, exchange_with="command")
        return CredentialPlan(
            jwt=True,
            problem=f"This Tinker server requires dynamic credentials: set {CREDENTIAL_CMD_ENV} to a command that "
            "prints a valid credential",
        )
    if has_key:
        return CredentialPlan(jwt=True, exchange_with="api_key")
    return CredentialPlan(jwt=True, exchange_with="command")


class CommandCredential:
    """A :class:`TokenSource` running ``TINKER_CREDENTIAL_CMD`` for every credential asked of it."""

    def __init__(self, command: str, redactor: Redactor, *, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self._command = command
        self._redactor = redactor
        self._timeout_s = timeout_s
        self.runs = 0

    def __repr__(self) -> str:
        return f"CommandCredential(runs={self.runs})"

    async def token(self) -> str:
        self.runs += 1
        process = await asyncio.create_subprocess_shell(
            self._command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            stdout, _ = await asyncio.wait_for(process.communicate(), self._timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ConfigurationError(f"{CREDENTIAL_CMD_ENV} did not finish within {self._timeout_s:.0f} s") from None
        credential = stdout.decode("utf-8", "replace").strip()
        if credential:
            self._redactor.add_secret_value(credential)  # before it can be sent or printed
        if process.returncode != 0:
            raise ConfigurationError(f"{CREDENTIAL_CMD_ENV} exited with status {process.returncode}")
        if not credential:
            raise ConfigurationError(f"{CREDENTIAL_CMD_ENV} printed no credential")
        problem = _key_problem(credential) if credential.startswith("eyJ") else None
        if problem is not None:  # a JWT past its expiry (or unreadable): the server would only refuse it
            raise ConfigurationError(f"{CREDENTIAL_CMD_ENV} printed a credential that {problem}")
        return credential

    async def replacement(self, rejected: str) -> str:
        return await self.token()


class _StaticCredential:
    def __init__(self, key: str) -> None:
        self._key = key

    async def token(self) -> str:
        return self._key

    async def replacement(self, rejected: str) -> str:
        return self._key


class TinkerAuth:
    """The credential of one client's requests (module docstring): a :class:`TokenAuth` for the transport, plus the
    JWT source once the server's flags ask for it.

    ``server_flags`` gives the handshake's flags (``None``: no handshake, so no JWT); ``exchange`` sends
    ``auth/token`` and returns the JWT; ``run`` runs exchanges and the background renewal on the client's own loop.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        redactor: Redactor,
        server_flags: Callable[[], Awaitable[ClientConfigResponse | None]],
        exchange: Callable[[], Awaitable[str]],
        run: Runner[Any],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._credentials = credentials
        self._on_close = on_close
        self._redactor = redactor
        self._server_flags = server_flags
        self._command = (
            CommandCredential(credentials.command, redactor) if credentials.command is not None else None
        )
        key = credentials.api_key
        self._raw: TokenSource | None = None if key is not None else self._command
        """What the raw-credential endpoints carry when the headers layer has no key to send."""
        self._plan: CredentialPlan | None = None
        self._exchange_source: TokenSource | None = None
        self.jwt = RefreshingToken(exchange, run=run, redactor=redactor, name="Tinker JWT")
        self.token_auth = TokenAuth(source_for=self._source_for, header=API_KEY_HEADER)

    def __repr__(self) -> str:
        return f"TinkerAuth({self._credentials!r}, plan={self._plan!r})"

    @property
    def command(self) -> CommandCredential | None:
        return self._command

    def close(self) -> None:
        """Stop renewing (the last token is still served) and close the exchanges' connections."""
        self.jwt.close()
        if self._on_close is not None:
            self._on_close()

    def _source_for(self, endpoint: str) -> TokenSource | None:
        if endpoint == AUTH_TOKEN_ENDPOINT:
            return self._exchange_source if self._exchange_source is not None else self._raw
        if endpoint in RAW_CREDENTIAL_ENDPOINTS:
            return self._raw
        plan = self._plan
        if plan is not None and not plan.jwt and plan.problem is None:
            return None  # the API key the headers layer already sends: nothing to do per request
        return self

    async def token(self) -> str:
        plan = await self._settled()
        if plan.problem is not None:
            raise ConfigurationError(plan.problem)
        if plan.jwt:
            return await self.jwt.token()
        assert self._credentials.api_key is not None  # a plan without JWT and without a problem has a key
        return self._credentials.api_key

    async def replacement(self, rejected: str) -> str:
        plan = await self._settled()
        if plan.jwt and plan.problem is None:
            return await self.jwt.replacement(rejected)
        return await self.token()

    async def _settled(self) -> CredentialPlan:
        plan = self._plan
        if plan is not None:
            return plan
        flags = await self._server_flags()
        key = self._credentials.api_key
        plan = credential_plan(
            has_key=key is not None,
            key_is_jwt=key is not None and key.startswith("eyJ"),
            has_command=self._command is not None,
            flags=flags,
        )
        if plan.exchange_with == "command":
            self._exchange_source = self._command
        elif plan.exchange_with == "api_key" and key is not None:
            self._exchange_source = _StaticCredential(key)
        self._plan = plan
        return plan


def holder_auth(holder: Holder) -> TinkerAuth:
    """The credential wiring of one client (``tinkex.holder.Holder``): its server flags come from the handshake,
    exchanges go through its own clients on its background loop, outside any public call's ``x-sdk-method``.

    The holder is held weakly: every stack of the client (the heartbeat's included, in a thread of its own) holds
    this wiring, and a strong reference would keep a dropped client, and its heartbeat, alive forever. A dropped
    client's wiring is closed by a finalizer (renewal stopped, connections closed)."""
    holder_ref = weakref.ref(holder)
    runtime = holder.runtime

    def live() -> Holder:
        found = holder_ref()
        if found is None:
            raise RuntimeError("the tinkex client was dropped")
        return found

    async def flags() -> ClientConfigResponse | None:
        return (await live().server_wire()).config

    # The exchanges' own client (the official SDK's auth pool), made on the runtime loop at the first exchange: it
    # outlives the per-loop clients while the holder closes, so the last telemetry batch can still get a token.
    # Keyed by loop: a forked child runs a new runtime loop, where the parent's connections cannot be used.
    own: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ManifestClient] = weakref.WeakKeyDictionary()

    async def exchange() -> str:
        loop = asyncio.get_running_loop()
        client = own.get(loop)
        if client is None:
            client = own[loop] = live().new_manifest_client()
        # One exchange is the endpoint's own re-sends only (manifest), not an operation's rounds for minutes: the
        # renewal schedule retries, and a request waiting for its token fails over to it.
        with deadlines(no_progress_s=EXCHANGE_NO_PROGRESS_S, budget=RetryBudget(rounds=False)):
            answer = await client.call(AUTH_TOKEN_ENDPOINT, json={}, result_type=AuthTokenResponse)
        return answer.jwt

    def run(coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return detached(runtime.submit, coroutine)

    def close_client() -> None:
        for loop, client in list(own.items()):
            del own[loop]
            if loop_is_usable(loop):  # not a parent's loop in a forked child
                closing = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                if loop is not running_loop():
                    closing.result(CLOSE_TIMEOUT_S)

    config = holder.config
    credentials = Credentials(config.api_key, config.credential_command, config.credential_source)
    auth = TinkerAuth(
        credentials, redactor=holder.redactor, server_flags=flags, exchange=exchange, run=run, on_close=close_client
    )
    weakref.finalize(holder, auth.close)
    return auth
