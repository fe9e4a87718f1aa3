"""ManifestClient: an ``httpx.AsyncClient`` over :func:`~pristine_transport.stack.build_transport`, plus helpers
that call an endpoint by its manifest name.

``send`` builds the request from the manifest (method, path, timeouts, query array format, redirects) and maps
transport failures to ``APIConnectionError`` / ``APITimeoutError``; it returns every status as is. ``call`` also
turns non-2xx responses into the error taxonomy and interprets the body by the endpoint's ``response`` mode.

Header merge order, lowest first: manifest default headers (added by the stack), the client's own headers
(``http_client_kwargs["headers"]``), the endpoint's headers, the call's headers. Query: the client's params, then
the call's. ``omit`` as a call value removes a client-level header or param (httpx's ``Accept`` /
``User-Agent`` defaults included); manifest headers are the stack's and are always sent.
"""

from __future__ import annotations

import asyncio
import os
import re
import warnings
import weakref
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TypeVar, cast, overload
from urllib.parse import unquote

import httpx
import msgspec
from opentelemetry import trace

from pristine_transport import extensions as ext
from pristine_transport.boundary import scrub_exception
from pristine_transport.errors import (
    APIError,
    APIResponseValidationError,
    ConfigurationError,
    error_for_closed_client,
    error_for_response,
    error_for_transport_exception,
)
from pristine_transport.layers.notices import ResponseNotices
from pristine_transport.layers.retry import RetryHook, RuleEpisodes
from pristine_transport.layers.token_auth import TokenAuth
from pristine_transport.logs import configure_logging
from pristine_transport.manifest import EndpointSpec, Manifest, load_manifest
from pristine_transport.policy import CALL_DEADLINES, Deadlines
from pristine_transport.redaction import Redactor
from pristine_transport.request import (
    NOT_GIVEN,
    NotGiven,
    Omit,
    encode_query,
    json_body,
    merge_body,
    merge_headers,
    merge_query,
)
from pristine_transport.sse import ServerSentEvent, aiter_sse
from pristine_transport.stack import RouterTransport, SizeEstimator, build_transport

__all__ = ["EventStream", "ManifestClient"]

T = TypeVar("T")

_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FORBIDDEN_IN_PARAM = ("?", "#")
_DOT_SEGMENTS = frozenset({".", ".."})
_INVALID_SCHEMA = "Data returned by API invalid for expected schema"


class ManifestClient:
    """Calls the endpoints of one manifest. ``http`` is a plain ``httpx.AsyncClient`` whose transport is the
    manifest's router, so requests sent through it directly get every layer too."""

    def __init__(
        self,
        manifest: Manifest | str | Path | Mapping[str, Any],
        *,
        base_url: str | None = None,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] = os.environ,
        redactor: Redactor | None = None,
        base_transport: httpx.AsyncBaseTransport | None = None,
        tracer: trace.Tracer | None = None,
        size_estimators: Mapping[str, SizeEstimator] | None = None,
        http_client_kwargs: Mapping[str, Any] | None = None,
        default_body: Mapping[str, Any] | None = None,
        on_retry: RetryHook | None = None,
        deadlines: Deadlines = CALL_DEADLINES,
        token_auth: TokenAuth | None = None,
        notices: ResponseNotices | None = None,
        json_encoder: Callable[[Any], bytes] | None = None,
        rule_episodes: RuleEpisodes | None = None,
    ) -> None:
        self.manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        self._json_encoder = json_encoder if json_encoder is not None else json_body
        """Turns a ``json=`` body into bytes (default: compact JSON, unset Struct fields left out); an SDK whose API
        has several dialects picks the shape per request here."""
        self.redactor = redactor if redactor is not None else Redactor()
        self.base_url = _resolve_base_url(self.manifest, base_url, env, self.redactor)
        self.transport: RouterTransport = build_transport(
            self.manifest,
            base=base_transport,
            config=config,
            env=env,
            redactor=self.redactor,
            tracer=tracer,
            size_estimators=size_estimators,
            on_retry=on_retry,
            deadlines=deadlines,
            token_auth=token_auth,
            notices=notices,
            rule_episodes=rule_episodes,
        )
        configure_logging(self.manifest.logging, env=env, redactor=self.redactor)
        kwargs = dict(http_client_kwargs or {})
        # Kept here rather than in httpx so that the endpoint's headers rank above them and ``omit`` can remove them.
        self._default_headers = merge_headers(kwargs.pop("headers", None))
        self._default_query: dict[str, Any] = dict(kwargs.pop("params", None) or {})
        self._default_body = dict(default_body or {})
        for reserved in ("transport", "base_url"):
            if reserved in kwargs:
                raise ConfigurationError(f"http_client_kwargs[{reserved!r}] is set by ManifestClient; remove it")
        self.http = httpx.AsyncClient(transport=self.transport, base_url=self.base_url, **kwargs)
        self._paths = {name: _split_template(spec.path) for name, spec in self.manifest.endpoints.items()}
        self._timeouts = {
            name: httpx.Timeout(spec.timeout_s, connect=spec.connect_timeout_s)
            for name, spec in self.manifest.endpoints.items()
        }
        self._decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
        # Dropped without aclose(): warn as an unclosed file does, and close the connections on the loop that
        # opened them. The finalizer holds the base transport and that loop only, never this client.
        self._used_on: list[asyncio.AbstractEventLoop] = []
        self._finalizer = weakref.finalize(self, _close_abandoned, self.transport.base, self._used_on, repr(self))

    def url_for(self, endpoint: str, path_params: Mapping[str, object] | None = None) -> str:
        """The endpoint's full URL: the base URL (path prefix kept) + the path with parameters filled in as is."""
        spec = self._endpoint(endpoint)
        literals, names = self._paths[endpoint]
        params = path_params or {}
        unexpected = set(params) - set(names)
        if unexpected:
            raise ValueError(
                f"endpoint {endpoint!r} ({spec.path}) has no path parameter(s) "
                + ", ".join(repr(n) for n in sorted(unexpected))
            )
        parts = [literals[0]]
        for name, literal in zip(names, literals[1:], strict=True):
            parts.append(_checked_param(endpoint, name, params))
            parts.append(literal)
        return self.base_url + "".join(parts)

    async def send(
        self,
        endpoint: str,
        *,
        path_params: Mapping[str, object] | None = None,
        json: Any = NOT_GIVEN,
        content: bytes | str | AsyncIterable[bytes] | None = None,
        files: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        data: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str | Omit] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extensions: Mapping[str, Any] | None = None,
        timeout: float | httpx.Timeout | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send one request to ``endpoint``; every status is returned as is. With ``stream`` the body is unread
        and the caller must close the response. Headers, query and JSON body keys merge as client defaults <
        endpoint < this call (``headers``, ``params``, ``extra_body``); an ``omit`` value removes one."""
        spec = self._endpoint(endpoint)
        if self._default_body or extra_body:
            json = merge_body(json, self._default_body, extra_body)
        if not isinstance(json, NotGiven):
            if content is not None:
                raise ValueError("pass either json or content, not both")
            content = self._json_encoder(json)
            headers = {"Content-Type": "application/json", **(headers or {})}
        request_headers = merge_headers(self._default_headers, spec.headers, headers)
        query = encode_query(merge_query(self._default_query, params), spec.query_array_format)
        request = self.http.build_request(
            spec.method,
            self.url_for(endpoint, path_params),
            content=content,
            files=files,
            data=data,
            params=cast(Any, query) or None,  # an empty list still costs httpx a URL rebuild (~14 µs)
            headers=request_headers,
            extensions={**(extensions or {}), ext.ENDPOINT: endpoint},
            timeout=timeout if timeout is not None else self._timeouts[endpoint],
        )
        for name, value in (headers or {}).items():
            if isinstance(value, Omit):
                request.headers.pop(name, None)
        if not self._used_on:
            self._note_loop()
        try:
            return await self.http.send(request, stream=stream, follow_redirects=spec.follow_redirects)
        except httpx.RequestError as exc:
            self._raise_transport_error(exc, request)
        except RuntimeError:
            if not self.is_closed:  # a bug, not the close: as it is
                raise
            error = error_for_closed_client(request)
            self._mask_secrets(error)
            raise error from None

    @overload
    async def call(self, endpoint: str, *, result_type: type[T], **send_kwargs: Any) -> T: ...
    @overload
    async def call(self, endpoint: str, *, result_type: None = None, **send_kwargs: Any) -> Any: ...

    async def call(self, endpoint: str, *, result_type: Any = None, **send_kwargs: Any) -> Any:
        """Send and interpret the response by the endpoint's ``response`` mode.

        Non-2xx raises the taxonomy error (3xx included, unless the endpoint follows redirects). ``parsed``:
        the JSON body decoded into ``result_type`` (plain data when None; an empty body is ``{}`` or the type's
        default); ``raw``: the read ``httpx.Response``; ``stream``: an :class:`EventStream` of server-sent events.
        """
        spec = self._endpoint(endpoint)
        streaming = spec.response == "stream"
        response = await self.send(endpoint, stream=streaming, **send_kwargs)
        if not 200 <= response.status_code < 300:
            if streaming:
                await self._read_and_close(response)
            error = error_for_response(response)
            self._mask_secrets(error)
            raise error from None
        if spec.response == "raw":
            return response
        if streaming:
            return EventStream(response)
        return self._parse(response, result_type)

    async def aclose(self) -> None:
        self._finalizer.detach()
        await self.http.aclose()

    @property
    def is_closed(self) -> bool:
        return self.http.is_closed

    def _note_loop(self) -> None:
        try:
            self._used_on.append(asyncio.get_running_loop())
        except RuntimeError:  # not asyncio (trio): nothing the finalizer could schedule on
            pass

    async def __aenter__(self) -> ManifestClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"ManifestClient(manifest={self.manifest.name!r}, base_url={self.redactor.url(self.base_url)!r})"

    def _endpoint(self, name: str) -> EndpointSpec:
        spec = self.manifest.endpoints.get(name)
        if spec is None:
            known = ", ".join(sorted(self.manifest.endpoints)) or "none"
            raise ConfigurationError(f"manifest {self.manifest.name!r} has no endpoint {name!r} (known: {known})")
        return spec

    def _parse(self, response: httpx.Response, result_type: Any) -> Any:
        if result_type is type(None):
            return None
        content = response.content
        try:
            if not content.strip():
                return {} if result_type is None else msgspec.convert({}, result_type)
            return self._decoder(result_type).decode(content)
        except msgspec.ValidationError as exc:
            message = f"{_INVALID_SCHEMA}: {exc}"
            raise APIResponseValidationError(response, _plain_body(content), message=message) from None
        except msgspec.DecodeError as exc:
            raise APIResponseValidationError(
                response, response.text, message=f"Response body is not valid JSON: {exc}"
            ) from None

    def _decoder(self, result_type: Any) -> msgspec.json.Decoder[Any]:
        decoder = self._decoders.get(result_type)
        if decoder is None:
            decoder = self._decoders[result_type] = msgspec.json.Decoder(Any if result_type is None else result_type)
        return decoder

    async def _read_and_close(self, response: httpx.Response) -> None:
        try:
            await response.aread()
        except httpx.RequestError as exc:
            self._raise_transport_error(exc, response.request)
        finally:
            await response.aclose()

    def _raise_transport_error(self, exc: httpx.RequestError, request: httpx.Request) -> NoReturn:
        error = error_for_transport_exception(exc, request)
        self._mask_secrets(error)
        # The cause stays for debugging, scrubbed: its message, its request copy, and every link behind it.
        raise error from scrub_exception(exc, self.redactor)

    def _mask_secrets(self, error: APIError) -> bool:
        """Mask secret values in the error's message (a server may echo a key back in a body) and replace the
        requests it carries with masked copies; True if the message had to be masked."""
        scrub_exception(error, self.redactor)
        masked = self.redactor.text(error.message)
        if masked == error.message:
            return False
        error.message = masked
        error.args = (masked,)
        return True


_ABANDONED_CLOSES: set[asyncio.Task[None]] = set()
"""Close tasks of abandoned clients, kept until done (the loop only holds tasks weakly)."""


def _close_abandoned(base: httpx.AsyncBaseTransport, used_on: list[asyncio.AbstractEventLoop], name: str) -> None:
    if not used_on:
        return  # never sent a request: no connection to close
    warnings.warn(f"{name} was garbage-collected without aclose(); closing its connections", ResourceWarning, 2)
    loop = used_on[0]
    if loop.is_closed():
        return  # the loop closed its sockets' transports when it ended
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    try:
        if running is loop:
            task = loop.create_task(base.aclose())
            _ABANDONED_CLOSES.add(task)
            task.add_done_callback(_ABANDONED_CLOSES.discard)
        else:
            asyncio.run_coroutine_threadsafe(base.aclose(), loop)
    except RuntimeError:  # the loop closed meanwhile
        pass


class EventStream:
    """Server-sent events of a streamed response. Closes the response when iteration ends, fails, or the
    caller stops early: use ``async with`` (or ``aclose()``) to close at once; an abandoned stream is closed when
    its iterator is finalized."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._events = aiter_sse(response)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ServerSentEvent:
        try:
            return await self._events.__anext__()
        except httpx.RequestError as exc:  # the connection failed mid-stream
            raise error_for_transport_exception(exc, self.response.request) from exc

    async def aclose(self) -> None:
        await self._events.aclose()  # type: ignore[attr-defined]
        await self.response.aclose()  # a generator never started runs no cleanup of its own

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _resolve_base_url(manifest: Manifest, explicit: str | None, env: Mapping[str, str], redactor: Redactor) -> str:
    spec = manifest.base_url
    if explicit:
        value, source = explicit, "the base_url argument"
    elif spec.env and env.get(spec.env):
        value, source = env[spec.env], f"environment variable {spec.env}"
    else:
        value, source = spec.default, "the manifest's base_url.default"
    problem = _base_url_problem(value)
    if problem is not None:
        how = "pass base_url='https://host[/path/prefix]'"
        if spec.env:
            how += f" or set {spec.env} to such a URL (empty counts as unset)"
        raise ConfigurationError(f"base URL {redactor.url(value)!r} from {source} {problem}; {how}")
    return value.rstrip("/")


def _base_url_problem(value: str) -> str | None:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        return f"is not a valid URL ({exc})"
    if url.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not url.host:
        return "has no host"
    if url.query or url.fragment:
        return "must not carry a query or fragment"
    return None


def _split_template(path: str) -> tuple[list[str], list[str]]:
    """``/a/{x}/b`` -> (``['/a/', '/b']``, ``['x']``)."""
    pieces = _PATH_PARAM.split(path)
    return pieces[0::2], pieces[1::2]


def _checked_param(endpoint: str, name: str, params: Mapping[str, object]) -> str:
    if name not in params or params[name] is None:
        raise ValueError(f"endpoint {endpoint!r}: missing path parameter {name!r}")
    value = str(params[name])
    problem: str | None = None
    if not value:
        problem = "is empty"
    elif any(c in value for c in _FORBIDDEN_IN_PARAM):
        problem = "contains '?' or '#', which would end the path"
    elif any(segment in _DOT_SEGMENTS for segment in unquote(value).split("/")):
        problem = "contains a '.' or '..' path segment (path traversal)"
    if problem is not None:
        raise ValueError(f"endpoint {endpoint!r}: path parameter {name!r} {problem}: {value!r}")
    return value


def _plain_body(content: bytes) -> object | None:
    try:
        return msgspec.json.decode(content)
    except msgspec.DecodeError:
        return None

