import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest

from pristine_transport import extensions
from pristine_transport.client import EventStream, ManifestClient
from pristine_transport.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    InternalServerError,
    NotFoundError,
)
from pristine_transport.request import omit

pytestmark = pytest.mark.anyio

API_KEY = "tml-client-secret-0123456789abcdef"
DEFAULT_BASE = "https://api.example.test/services/prod"

MANIFEST: dict[str, Any] = {
    "name": "demo",
    "base_url": {"default": DEFAULT_BASE, "env": "DEMO_BASE_URL"},
    "headers": {
        "X-API-Key": {"env": "DEMO_API_KEY", "secret": True, "required": True},
        "Accept": {"value": "application/json"},
    },
    "retry_policies": {"quick": {"max_retries": 1, "initial_delay_s": 0.001, "max_delay_s": 0.001}},
    "logging": {"logger": "demo_sdk", "env": "DEMO_LOG"},
    "endpoints": {
        "create": {"method": "POST", "path": "/api/v1/create", "retry": "quick", "timeout_s": 12, "connect_timeout_s": 2},
        "get_run": {"method": "GET", "path": "/api/v1/training_runs/{run_id}", "headers": {"X-Endpoint": "run"}},
        "list_runs": {"method": "GET", "path": "/api/v1/training_runs", "query_array_format": "repeat"},
        "list_sessions": {"method": "GET", "path": "/api/v1/sessions"},
        "archive": {
            "method": "GET",
            "path": "/api/v1/training_runs/{run_id}/checkpoints/{checkpoint_id}/archive",
            "response": "raw",
        },
        "follow": {"method": "GET", "path": "/api/v1/follow", "follow_redirects": True},
        "stream": {"method": "POST", "path": "/api/v1/stream", "response": "stream"},
        "delete": {"method": "DELETE", "path": "/api/v1/things/{id}"},
    },
}

Handler = Callable[[httpx.Request], Any]
TOUCHED_LOGGERS = ("demo_sdk", "pristine_transport", "httpx", "httpcore")


@pytest.fixture(autouse=True)
def restore_logger_levels() -> Iterator[None]:
    # Every ManifestClient applies the manifest's logging block; keep that from leaking into other tests.
    levels = {name: logging.getLogger(name).level for name in TOUCHED_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


class Run(msgspec.Struct):
    training_run_id: str
    base_model: str
    is_lora: bool = False


class Page(msgspec.Struct):
    items: list[str] = []


@asynccontextmanager
async def client_for(handler: Handler, **kwargs: Any) -> AsyncIterator[ManifestClient]:
    kwargs.setdefault("env", {"DEMO_API_KEY": API_KEY})
    async with ManifestClient(MANIFEST, base_transport=httpx.MockTransport(handler), **kwargs) as client:
        yield client


def answering(*responses: httpx.Response) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler, seen


# --- base URL ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "env", "expected"),
    [
        (None, {}, DEFAULT_BASE),
        (None, {"DEMO_BASE_URL": ""}, DEFAULT_BASE),
        (None, {"DEMO_BASE_URL": "http://127.0.0.1:9000/"}, "http://127.0.0.1:9000"),
        ("https://other.test/p/", {"DEMO_BASE_URL": "http://ignored.test"}, "https://other.test/p"),
    ],
)
async def test_base_url_precedence_argument_then_env_then_default(
    base_url: str | None, env: dict[str, str], expected: str
) -> None:
    handler, _ = answering(httpx.Response(200))
    async with client_for(handler, base_url=base_url, env={"DEMO_API_KEY": API_KEY, **env}) as client:
        assert client.base_url == expected
        assert str(client.http.base_url).rstrip("/") == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("ftp://files.test", "must start with http:// or https://"),
        ("not a url", "must start with http:// or https://"),
        ("https://", "has no host"),
        ("https://h.test/p?x=1", "must not carry a query or fragment"),
    ],
)
def test_a_bad_base_url_says_how_to_fix_it(value: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ManifestClient(MANIFEST, env={"DEMO_API_KEY": API_KEY, "DEMO_BASE_URL": value})
    message = str(caught.value)
    assert problem in message
    assert "from environment variable DEMO_BASE_URL" in message
    assert "pass base_url='https://host[/path/prefix]' or set DEMO_BASE_URL" in message


def test_reserved_http_client_kwargs_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match=r"http_client_kwargs\['transport'\]"):
        ManifestClient(MANIFEST, env={"DEMO_API_KEY": API_KEY}, http_client_kwargs={"transport": None})


# --- url_for ----------------------------------------------------------------------------------------------------


async def test_url_for_joins_raw_paths_and_leaves_params_unencoded() -> None:
    async with client_for(answering(httpx.Response(200))[0]) as client:
        url = client.url_for("archive", {"run_id": "sess-1:train:0", "checkpoint_id": "weights/ckpt-1"})
        assert url == DEFAULT_BASE + "/api/v1/training_runs/sess-1:train:0/checkpoints/weights/ckpt-1/archive"
        assert client.url_for("get_run", {"run_id": 7}) == DEFAULT_BASE + "/api/v1/training_runs/7"
        assert client.url_for("list_runs") == DEFAULT_BASE + "/api/v1/training_runs"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "missing path parameter 'run_id'"),
        ({"run_id": None}, "missing path parameter 'run_id'"),
        ({"run_id": "r", "extra": 1}, "has no path parameter(s) 'extra'"),
        ({"run_id": ""}, "'run_id' is empty"),
        ({"run_id": "../admin"}, "path traversal"),
        ({"run_id": "a/./b"}, "path traversal"),
        ({"run_id": "%2e%2e"}, "path traversal"),
        ({"run_id": "a/%2E%2e/b"}, "path traversal"),
        ({"run_id": "a?b=1"}, "would end the path"),
        ({"run_id": "a#frag"}, "would end the path"),
    ],
)
async def test_url_for_rejects_bad_path_params(params: dict[str, Any], message: str) -> None:
    async with client_for(answering(httpx.Response(200))[0]) as client:
        with pytest.raises(ValueError, match=r"endpoint 'get_run'.*" + message.replace("(", r"\(").replace(")", r"\)")):
            client.url_for("get_run", params)


async def test_unknown_endpoint_names_the_known_ones() -> None:
    async with client_for(answering(httpx.Response(200))[0]) as client:
        with pytest.raises(ConfigurationError, match=r"no endpoint 'nope' \(known: archive, create, delete, "):
            await client.send("nope")


# --- send -------------------------------------------------------------------------------------------------------


async def test_send_takes_method_path_timeout_and_endpoint_from_the_manifest() -> None:
    handler, seen = answering(httpx.Response(201, json={"ok": True}))
    async with client_for(handler) as client:
        response = await client.send("create", json=Run(training_run_id="r", base_model="m"))
    assert response.status_code == 201 and response.json() == {"ok": True}
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == DEFAULT_BASE + "/api/v1/create"
    assert request.content == b'{"training_run_id":"r","base_model":"m","is_lora":false}'
    assert request.headers["Content-Type"] == "application/json"
    assert request.extensions[extensions.ENDPOINT] == "create"
    assert request.extensions["timeout"] == {"connect": 2.0, "read": 12.0, "write": 12.0, "pool": 12.0}
    assert request.headers["x-stainless-read-timeout"] == "12.0"
    assert request.headers["X-API-Key"] == API_KEY and "X-Idempotency-Key" in request.headers


async def test_a_per_call_timeout_and_json_null_body() -> None:
    handler, seen = answering(httpx.Response(200))
    async with client_for(handler) as client:
        await client.send("create", json=None, timeout=3.0)
    assert seen[0].content == b"null"
    assert seen[0].extensions["timeout"]["read"] == 3.0


async def test_json_and_content_are_exclusive() -> None:
    async with client_for(answering(httpx.Response(200))[0]) as client:
        with pytest.raises(ValueError, match="either json or content"):
            await client.send("create", json={}, content=b"x")


async def test_send_returns_error_statuses_without_raising() -> None:
    handler, seen = answering(httpx.Response(500, json={"error": "boom"}))
    async with client_for(handler) as client:
        response = await client.send("create", json={})
    assert response.status_code == 500 and len(seen) == 2  # one retry by the "quick" policy


async def test_query_strings_follow_each_endpoints_array_format() -> None:
    handler, seen = answering(httpx.Response(200, json={}))
    async with client_for(handler) as client:
        await client.send("list_sessions", params={"ids": ["a", "b"], "public": True, "cursor": None})
        await client.send("list_runs", params={"ids": ["a", "b"], "limit": 20})
    assert seen[0].url.params.multi_items() == [("ids", "a,b"), ("public", "true")]
    assert seen[1].url.params.multi_items() == [("ids", "a"), ("ids", "b"), ("limit", "20")]


async def test_header_and_query_merge_order_and_omit() -> None:
    handler, seen = answering(httpx.Response(200, json={}))
    kwargs = {"headers": {"X-Endpoint": "client", "X-Client": "c", "X-Gone": "g"}, "params": {"limit": 5, "offset": 0}}
    async with client_for(handler, http_client_kwargs=kwargs) as client:
        await client.send("get_run", path_params={"run_id": "r"})
        await client.send(
            "get_run",
            path_params={"run_id": "r"},
            headers={"x-endpoint": "call", "X-Gone": omit, "Accept-Encoding": omit},
            params={"offset": omit, "limit": 9},
        )
    plain, custom = seen
    assert plain.headers["X-Endpoint"] == "run"  # the endpoint outranks client headers
    assert plain.headers["X-Client"] == "c" and plain.headers["X-Gone"] == "g"
    assert plain.url.params.multi_items() == [("limit", "5"), ("offset", "0")]
    assert custom.headers["X-Endpoint"] == "call"  # the call outranks the endpoint
    assert "X-Gone" not in custom.headers and "Accept-Encoding" not in custom.headers
    assert custom.headers["X-API-Key"] == API_KEY and custom.headers["Accept"] == "application/json"
    assert custom.url.params.multi_items() == [("limit", "9")]


class Thing(msgspec.Struct, omit_defaults=True):
    name: str
    size: int = 0


async def test_body_keys_merge_client_defaults_then_the_call_and_omit_removes_one() -> None:
    handler, seen = answering(httpx.Response(200, json={}))
    async with client_for(handler, default_body={"project": "p1", "trace": True}) as client:
        await client.send("create", json=Thing(name="a", size=3), extra_body={"trace": omit, "size": 4})
        await client.send("create", extra_body={"name": "b"})
    first, second = (msgspec.json.decode(r.content) for r in seen)
    assert first == {"name": "a", "size": 4, "project": "p1"}
    assert second == {"project": "p1", "trace": True, "name": "b"}
    with pytest.raises(TypeError, match="JSON object"):
        async with client_for(handler) as client:
            await client.send("create", json=[1, 2], extra_body={"x": 1})


async def test_a_body_without_extra_keys_is_sent_as_given() -> None:
    handler, seen = answering(httpx.Response(200, json={}))
    async with client_for(handler) as client:
        await client.send("create", json=Thing(name="a"))
    assert seen[0].content == b'{"name":"a"}'


async def test_transport_failures_map_to_the_error_taxonomy() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with client_for(refuse) as client:
        with pytest.raises(APIConnectionError, match=r"Connection error: \[Errno 111\] Connection refused") as caught:
            await client.send("get_run", path_params={"run_id": "r"})
        assert isinstance(caught.value.__cause__, httpx.ConnectError)
        assert caught.value.request.url.path.endswith("/training_runs/r")
    async with client_for(stall) as client:
        with pytest.raises(APITimeoutError, match="Request timed out."):
            await client.send("get_run", path_params={"run_id": "r"})


async def test_a_request_its_client_closed_on_is_a_typed_error_that_says_whether_it_may_have_run() -> None:
    handler, _ = answering(httpx.Response(200, json={}))
    async with client_for(handler) as client:
        pass
    with pytest.raises(ClientClosedError, match=r"client was closed before .*; POST \S+/create may have run") as write:
        await client.send("create", json={})
    assert write.value.outcome == "may_have_run" and isinstance(write.value, APIConnectionError)
    with pytest.raises(ClientClosedError, match=r"client was closed before this request got its answer$") as read:
        await client.send("get_run", path_params={"run_id": "r"})
    assert read.value.outcome is None


async def test_redirects_are_followed_only_where_the_manifest_says() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/follow"):
            return httpx.Response(302, headers={"Location": DEFAULT_BASE + "/api/v1/training_runs/landed"})
        if request.url.path.endswith("/archive"):
            return httpx.Response(302, headers={"Location": "https://storage.test/blob"})
        return httpx.Response(200, json={"training_run_id": "landed", "base_model": "m"})

    async with client_for(handler) as client:
        assert (await client.call("follow", result_type=Run)).training_run_id == "landed"
        response = await client.send("archive", path_params={"run_id": "r", "checkpoint_id": "c"})
        assert response.status_code == 302 and response.headers["Location"] == "https://storage.test/blob"
        with pytest.raises(APIStatusError, match="Error code: 302") as caught:
            await client.call("archive", path_params={"run_id": "r", "checkpoint_id": "c"})
        assert type(caught.value) is APIStatusError


# --- call -------------------------------------------------------------------------------------------------------


async def test_parsed_mode_decodes_into_the_result_type_ignoring_unknown_fields() -> None:
    body = {"training_run_id": "r1", "base_model": "llama", "new_field": [1]}
    async with client_for(answering(httpx.Response(200, json=body))[0]) as client:
        run = await client.call("get_run", path_params={"run_id": "r1"}, result_type=Run)
        plain = await client.call("get_run", path_params={"run_id": "r1"})
    assert run == Run(training_run_id="r1", base_model="llama")
    assert plain == body


async def test_an_empty_2xx_body_is_an_empty_object_or_the_types_defaults() -> None:
    async with client_for(answering(httpx.Response(200, content=b""))[0]) as client:
        assert await client.call("delete", path_params={"id": "x"}) == {}
        assert await client.call("delete", path_params={"id": "x"}, result_type=Page) == Page()
        assert await client.call("delete", path_params={"id": "x"}, result_type=type(None)) is None


async def test_a_response_missing_a_field_raises_a_validation_error_naming_it() -> None:
    async with client_for(answering(httpx.Response(200, json={"training_run_id": "r1"}))[0]) as client:
        with pytest.raises(APIResponseValidationError) as caught:
            await client.call("get_run", path_params={"run_id": "r1"}, result_type=Run)
    error = caught.value
    assert "invalid for expected schema" in error.message
    assert "`base_model`" in error.message
    assert error.body == {"training_run_id": "r1"} and error.status_code == 200


async def test_a_wrongly_typed_nested_field_is_named_by_its_path() -> None:
    async with client_for(answering(httpx.Response(200, json={"items": ["a", 3]}))[0]) as client:
        with pytest.raises(APIResponseValidationError, match=r"Expected `str`, got `int` - at `\$.items\[1\]`"):
            await client.call("list_sessions", result_type=Page)


async def test_a_non_json_body_is_a_validation_error() -> None:
    async with client_for(answering(httpx.Response(200, content=b"<html>"))[0]) as client:
        with pytest.raises(APIResponseValidationError, match="not valid JSON") as caught:
            await client.call("list_sessions")
    assert caught.value.body == "<html>"


async def test_raw_mode_returns_the_read_response() -> None:
    async with client_for(answering(httpx.Response(200, content=b"tarball"))[0]) as client:
        response = await client.call("archive", path_params={"run_id": "r", "checkpoint_id": "c"})
    assert isinstance(response, httpx.Response) and response.content == b"tarball" and response.is_closed


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(404, NotFoundError), (401, AuthenticationError), (503, InternalServerError), (418, APIStatusError)],
)
async def test_non_2xx_raises_the_taxonomy_error_with_the_body(status: int, error_type: type[APIStatusError]) -> None:
    handler, _ = answering(httpx.Response(status, json={"detail": "no such run"}))
    async with client_for(handler) as client:
        with pytest.raises(error_type) as caught:
            await client.call("get_run", path_params={"run_id": "r"})
    error = caught.value
    assert type(error) is error_type
    assert error.message == f'Error code: {status} - {{"detail":"no such run"}}'
    assert error.status_code == status and error.body == {"detail": "no such run"}


SSE_BODY = b'event: token\ndata: {"t": 1}\n\n: comment\ndata: two\ndata: lines\nid: 7\n\n'


class TrackedStream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


async def test_stream_mode_yields_server_sent_events_and_closes_the_response() -> None:
    body = TrackedStream([SSE_BODY[:10], SSE_BODY[10:]])
    handler, _ = answering(httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=body))
    async with client_for(handler) as client:
        events = await client.call("stream", json={"prompt": "hi"})
        assert isinstance(events, EventStream) and not events.response.is_closed
        received = [event async for event in events]
    assert [(e.event, e.data, e.id) for e in received] == [("token", '{"t": 1}', ""), ("message", "two\nlines", "7")]
    assert received[0].json() == {"t": 1}
    assert body.closed and events.response.is_closed


async def test_a_stream_left_early_is_closed_by_aclose_or_when_abandoned() -> None:
    streams: list[TrackedStream] = []

    def handler(request: httpx.Request) -> httpx.Response:
        streams.append(TrackedStream([SSE_BODY, SSE_BODY]))
        return httpx.Response(200, stream=streams[-1])

    async with client_for(handler) as client:
        async with await client.call("stream") as events:
            async for _ in events:
                break
        assert streams[0].closed

        never_started = await client.call("stream")
        await never_started.aclose()
        assert streams[1].closed

        abandoned = await client.call("stream")
        async for _ in abandoned:
            break
        assert not streams[2].closed
        del abandoned, _
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)
        assert streams[2].closed


async def test_a_failed_stream_request_raises_with_the_body_and_closes() -> None:
    body = TrackedStream([b'{"detail": "bad prompt"}'])
    async with client_for(answering(httpx.Response(400, stream=body))[0]) as client:
        with pytest.raises(APIStatusError, match='Error code: 400 - {"detail": "bad prompt"}'):
            await client.call("stream")
    assert body.closed


# --- secrets ----------------------------------------------------------------------------------------------------


async def test_secrets_never_reach_error_messages_or_log_records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/create"):
            return httpx.Response(503, json={"echo": request.headers["X-API-Key"]})
        if request.url.path.endswith("/sessions"):
            raise httpx.ConnectError(f"proxy rejected key {request.headers['X-API-Key']}", request=request)
        return httpx.Response(401, text=f"bad key {request.headers['X-API-Key']}")

    async with client_for(handler, env={"DEMO_API_KEY": API_KEY, "DEMO_LOG": "debug"}) as client:
        assert API_KEY not in repr(client) and API_KEY not in repr(client.transport)
        errors: list[BaseException] = []
        for endpoint, kwargs in [("create", {"json": {}}), ("get_run", {"path_params": {"run_id": "r"}}), ("list_sessions", {})]:
            with pytest.raises((InternalServerError, AuthenticationError, APIConnectionError)) as caught:
                await client.call(endpoint, **kwargs)
            errors.append(caught.value)
            logging.getLogger("demo_sdk").warning("call failed: %s", caught.value)
    assert [type(e) for e in errors] == [InternalServerError, AuthenticationError, APIConnectionError]
    for error in errors:
        assert API_KEY not in str(error) and API_KEY not in repr(error)
        assert error.__cause__ is None or API_KEY not in str(error.__cause__)
    assert "tml-…cdef" in str(errors[0])
    assert any("x-api-key" in record.getMessage().lower() for record in caplog.records)  # header dumps were logged
    assert API_KEY not in caplog.text
    assert all(API_KEY not in record.getMessage() for record in caplog.records)


# --- a real server ----------------------------------------------------------------------------------------------


async def _serve_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            # The key is echoed as a flag: an echoed secret would come back masked (pristine_transport.boundary).
            sent_key = headers.get("x-api-key") == API_KEY
            payload = msgspec.json.encode({"method": method, "target": target, "key": sent_key, "body": body.decode()})
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def test_against_a_real_loopback_server_with_the_default_base_transport() -> None:
    server = await asyncio.start_server(_serve_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        env = {"DEMO_API_KEY": API_KEY, "DEMO_BASE_URL": f"http://127.0.0.1:{port}/prefix"}
        async with ManifestClient(MANIFEST, env=env) as client:
            assert isinstance(client.transport.base, httpx.AsyncHTTPTransport)
            echoed = await client.call("create", json={"n": 1})
            listed = await client.call("list_runs", params={"ids": ["a", "b"]})
            raw = await client.http.get("/api/v1/training_runs/r:1/checkpoints/weights/c/archive")
    finally:
        server.close()
        await server.wait_closed()
    assert echoed == {"method": "POST", "target": "/prefix/api/v1/create", "key": True, "body": '{"n":1}'}
    assert listed["target"] == "/prefix/api/v1/training_runs?ids=a&ids=b"
    assert raw.json()["target"] == "/prefix/api/v1/training_runs/r:1/checkpoints/weights/c/archive"
    assert raw.request.extensions.get(extensions.ENDPOINT) is None  # routed by template, not by name


def test_a_disconnect_reported_as_a_timeout_by_the_base_transport_is_a_connection_error() -> None:
    from pristine_transport.errors import APIConnectionError, APITimeoutError, error_for_transport_exception

    request = httpx.Request("POST", "http://svc.test/x")

    class ServerDisconnectedError(Exception):
        pass

    try:
        raise httpx.ConnectTimeout("Server disconnected") from ServerDisconnectedError("Server disconnected")
    except httpx.ConnectTimeout as exc:
        mapped = error_for_transport_exception(exc, request)
    assert type(mapped) is APIConnectionError and "Server disconnected" in mapped.message

    try:
        raise httpx.ReadTimeout("timed out") from TimeoutError()
    except httpx.ReadTimeout as exc:
        assert type(error_for_transport_exception(exc, request)) is APITimeoutError
    assert type(error_for_transport_exception(httpx.ReadTimeout("timed out"), request)) is APITimeoutError
