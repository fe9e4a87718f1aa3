"""header_list: httpx still stores headers the way the list implementation relies on (this module fails loudly when
it does not, so the fallback is noticed); a changed layout is detected and named; the list and the public-API
implementations answer one table alike, and alike as httpx's public API would; on a real loopback server, both send
the same headers, the fallback warning once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pristine_transport.layers import header_list
from pristine_transport.layers.header_list import (
    LAYOUT_PROBLEM,
    EncodedHeaders,
    ListHeaders,
    PublicHeaders,
    list_layout_problem,
)

REPO = Path(__file__).resolve().parents[3]
URL = "https://api.test/v1/things?n=1"
IMPLEMENTATIONS = [pytest.param(ListHeaders, id="list"), pytest.param(PublicHeaders, id="public")]
Impl = type[PublicHeaders]


def built_request(**kwargs: object) -> httpx.Request:
    return httpx.AsyncClient().build_request("POST", URL, **kwargs)  # type: ignore[arg-type]


# the layout --------------------------------------------------------------------------------------------------
def test_httpx_stores_headers_as_the_list_implementation_expects() -> None:
    assert LAYOUT_PROBLEM is None, (
        f"httpx {httpx.__version__} changed what pristine_transport.layers.header_list relies on: {LAYOUT_PROBLEM}. "
        "Every request now goes through the slower public-API fallback: update ListHeaders (and its layout check) "
        "to the new layout, or drop the fast path if it no longer pays (bench/bench_headers.py measures it)."
    )
    assert header_list.IMPLEMENTATION == "list"
    assert header_list.find_header is ListHeaders.find_header and header_list.copy_request is ListHeaders.copy_request


class PairHeaders(httpx.Headers):
    """A layout httpx might move to: (name, value) pairs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._list = [(raw, value) for raw, _, value in self._list]  # type: ignore[misc]


class CachingHeaders(httpx.Headers):
    """One more attribute: a copy built attribute by attribute would go without it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lookup: dict[bytes, bytes] = {}


class SnapshotHeaders(httpx.Headers):
    """The public API reads another store than ``_list``: entries appended there are never seen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        return [(raw, value) for raw, _, value in self._list[:1]]


class TracedRequest(httpx.Request):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace_id = None


@pytest.mark.parametrize(
    ("headers_type", "request_type", "named"),
    [
        (PairHeaders, httpx.Request, "_list holds"),
        (CachingHeaders, httpx.Request, "httpx.Headers has the attributes ['_list', '_encoding', '_lookup']"),
        (SnapshotHeaders, httpx.Request, "does not read back through the public API"),
        (httpx.Headers, TracedRequest, "httpx.Request has the attributes"),
    ],
)
def test_a_changed_layout_is_detected_and_named(
    headers_type: type[httpx.Headers], request_type: type[httpx.Request], named: str
) -> None:
    assert list_layout_problem() is None
    problem = list_layout_problem(headers_type, request_type)
    assert problem is not None and named in problem, problem


# one table, both implementations -----------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "start",
    [[], [("x-a", "1")], [("X-A", "1"), ("b", "2"), ("x-a", "3")], [("b", "2"), ("X-a", "1")], [(b"b", "ä".encode())]],
)
def test_set_header_does_what_setitem_does(impl: Impl, start: list[tuple[str | bytes, str | bytes]]) -> None:
    edited, public = httpx.Headers(start), httpx.Headers(start)
    impl.set_header(edited, "X-A", "nëw".encode())
    public["X-A"] = "nëw"  # encoded as UTF-8: these headers' encoding was never read
    assert edited.raw == public.raw
    assert [value for name, value in edited.raw if name.lower() == b"x-a"] == ["nëw".encode()]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("start", "added", "expected"),
    [
        ([], [("X-Key", b"v")], [(b"X-Key", b"v")]),
        (
            [("A", "1")],
            [("X-Key", "välue".encode()), ("n", b"0")],
            [(b"A", b"1"), (b"X-Key", "välue".encode()), (b"n", b"0")],
        ),
        ([("x-key", "1"), ("b", "2")], [("X-Key", b"2")], [(b"x-key", b"1"), (b"b", b"2"), (b"X-Key", b"2")]),
    ],
)
def test_add_header_appends_after_everything(
    impl: Impl, start: list[tuple[str, str]], added: list[tuple[str, bytes]], expected: list[tuple[bytes, bytes]]
) -> None:
    headers = httpx.Headers(start)
    for name, value in added:
        impl.add_header(headers, name, value)
    assert headers.raw == expected
    assert impl.find_header(headers, "X-KEY") == next((v for n, v in expected if n.lower() == b"x-key"), None)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ([], [(b"x-count", b"0"), (b"x-timeout", b"5")]),
        ([("X-Count", "7")], [(b"X-Count", b"7"), (b"x-timeout", b"5")]),  # the caller's own is kept
        ([("x-timeout", "1"), ("x-count", "2")], [(b"x-timeout", b"1"), (b"x-count", b"2")]),
    ],
)
def test_add_absent_adds_only_what_the_headers_lack(
    impl: Impl, start: list[tuple[str, str]], expected: list[tuple[bytes, bytes]]
) -> None:
    headers = httpx.Headers(start)
    impl.add_absent(headers, [("x-count", b"0"), ("x-timeout", b"5")])
    assert headers.raw == expected


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("name", "found"),
    [("x-a", b"1"), ("X-A", b"1"), ("Content-Type", "tëxt".encode()), ("x-b", None)],
)
def test_find_and_has_header_take_any_case_and_answer_the_first(impl: Impl, name: str, found: bytes | None) -> None:
    headers = httpx.Headers([(b"X-A", b"1"), (b"content-type", "tëxt".encode()), (b"x-a", b"2")])
    assert impl.find_header(headers, name) == found
    assert impl.has_header(headers, name) is (found is not None)


HTTPX_UA = f"python-httpx/{httpx.__version__}"
CONFIGURED = EncodedHeaders(
    {"User-Agent": "Ours/1.0", "Accept": "application/json", "X-Key": "k", "x-key": "second spelling"},
    replaceable={"User-Agent": HTTPX_UA, "Accept": "*/*"},
)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("start", "context", "expected"),
    [
        # absent: added, in order; of two spellings the first
        ([], {}, [("User-Agent", "Ours/1.0"), ("Accept", "application/json"), ("X-Key", "k")]),
        # httpx's client defaults count as unset and are replaced where they stand
        (
            [("accept", "*/*"), ("user-agent", HTTPX_UA), ("host", "h")],
            {},
            [("Accept", "application/json"), ("User-Agent", "Ours/1.0"), ("host", "h"), ("X-Key", "k")],
        ),
        # the caller's own values win, and so does a default the caller repeated
        (
            [("user-agent", "Theirs/2"), ("accept", "*/*"), ("accept", "*/*"), ("x-key", "mine")],
            {},
            [("user-agent", "Theirs/2"), ("accept", "*/*"), ("accept", "*/*"), ("x-key", "mine")],
        ),
        # the context's headers come first and win over configured ones of the same name
        (
            [("user-agent", HTTPX_UA)],
            {"X-Call": "sample", "X-Key": "from context"},
            [
                ("User-Agent", "Ours/1.0"),
                ("X-Call", "sample"),
                ("X-Key", "from context"),
                ("Accept", "application/json"),
            ],
        ),
    ],
)
def test_add_missing_adds_what_the_request_lacks(
    impl: Impl, start: list[tuple[str, str]], context: dict[str, str], expected: list[tuple[str, str]]
) -> None:
    headers = httpx.Headers(start)
    impl.add_missing(headers, EncodedHeaders(context), CONFIGURED)
    assert headers.multi_items() == [(name.lower(), value) for name, value in expected]
    assert [name.decode() for name, _ in headers.raw] == [name for name, _ in expected]


def test_one_encoded_set_serves_requests_that_differ_in_what_they_carry() -> None:
    encoded = EncodedHeaders({"User-Agent": "Ours/1.0", "X-Key": "k"}, replaceable={"User-Agent": HTTPX_UA})
    starts = [[("user-agent", HTTPX_UA)], [], [("x-key", "mine")], [("user-agent", HTTPX_UA)], [("User-Agent", "T")]]
    for start in starts * 2:  # the second round meets what the first planned
        listed, public = httpx.Headers(start), httpx.Headers(start)
        ListHeaders.add_missing(listed, encoded)
        PublicHeaders.add_missing(public, encoded)
        assert listed.raw == public.raw
        assert listed.get("user-agent") in ("Ours/1.0", "T") and listed.get("x-key") in ("k", "mine")


def test_encoded_headers_never_show_a_value() -> None:
    encoded = EncodedHeaders({"X-API-Key": "tml-secret-value"})
    assert repr(encoded) == "EncodedHeaders(['X-API-Key'])" and len(encoded) == 1 and encoded.names() == ["X-API-Key"]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_encoded_size_counts_the_header_lines_as_sent(impl: Impl) -> None:
    headers = httpx.Headers([(b"Content-Type", b"application/json"), (b"X-V", "välue".encode())])
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers.raw)
    assert impl.encoded_size(headers) == len(lines) == 32 + 13


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_a_copy_of_headers_is_independent(impl: Impl) -> None:
    original = httpx.Headers({"A": "1"})
    copy = impl.copy_headers(original)
    impl.set_header(copy, "A", b"2")
    impl.add_header(copy, "B", b"3")
    assert original.raw == [(b"A", b"1")] and copy.raw == [(b"A", b"2"), (b"B", b"3")]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_a_copied_request_shares_the_body_but_not_the_headers_or_extensions(impl: Impl) -> None:
    original = built_request(json={"a": 1}, extensions={"k": "v"})
    copy = impl.copy_request(original)
    impl.add_header(copy.headers, "X-Added", b"1")
    copy.extensions["other"] = 1
    assert "x-added" not in original.headers and copy.headers["x-added"] == "1"
    assert copy.headers.raw[:-1] == original.headers.raw
    assert original.extensions == {"k": "v", "timeout": original.extensions["timeout"]}
    assert (copy.method, copy.url, copy.content) == (original.method, original.url, original.content)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_a_request_copied_with_given_headers_has_exactly_those(impl: Impl) -> None:
    original = built_request(content=b"x")
    given = httpx.Headers({"Only": "1"})
    copy = impl.copy_request(original, given)
    assert copy.headers is given and copy.headers.raw == [(b"Only", b"1")] and copy.content == b"x"
    assert original.headers["content-length"] == "1"


@pytest.mark.anyio
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
async def test_a_copy_of_an_unread_streamed_request_reads_its_stream(impl: Impl) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"part"

    original = built_request(content=body())
    copy = impl.copy_request(original)
    with pytest.raises(httpx.RequestNotRead):
        copy.content  # noqa: B018
    assert await copy.aread() == b"part"


# both implementations on a real path -------------------------------------------------------------------------
SCENARIO = r"""
import asyncio, json, sys, threading, warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

if sys.argv[1] == "changed":  # an httpx whose Request has one more attribute: copies must not be built by hand
    original_init = httpx.Request.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.trace_id = None

    httpx.Request.__init__ = init

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from pristine_transport.client import ManifestClient
    from pristine_transport.layers import header_list
    from pristine_transport.layers.headers import context_headers
    import pristine_transport.layers.header_list  # a second import warns no second time

seen = []
MASKED = {"X-Idempotency-Key": "<random>", "Host": "<the server's port>"}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        seen.append(self.headers.items())
        status, body = (503, b"{}") if len(seen) == 1 else (200, b'{"ok": true}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
manifest = {
    "name": "probe",
    "base_url": {"default": f"http://127.0.0.1:{server.server_address[1]}"},
    "headers": {"X-API-Key": {"env": "PROBE_KEY", "secret": True}, "User-Agent": {"value": "Probe/1.0"}},
    "idempotency": {"header": "X-Idempotency-Key", "prefix": "probe-"},
    "retry_policies": {"standard": {"max_retries": 2, "initial_delay_s": 0.01, "max_delay_s": 0.01}},
    "endpoints": {"make": {"method": "POST", "path": "/make", "retry": "standard",
                           "backpressure": {"header": "X-Backpressure"}}},
}


async def main():
    async with ManifestClient(manifest, env={"PROBE_KEY": "key-1"}) as client:
        with context_headers({"X-Call": "make"}):
            response = await client.send("make", json={"a": 1}, headers={"X-Caller": "mine"})
    return response.status_code


status = asyncio.run(main())
server.shutdown()
print(json.dumps({
    "implementation": header_list.IMPLEMENTATION,
    "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
    "status": status,
    "requests": [[[name, MASKED.get(name, value)] for name, value in items] for items in seen],
    "keys": [dict(items)["X-Idempotency-Key"] for items in seen],
}))
"""


def run_scenario(layout: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO, layout], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_both_implementations_send_the_same_headers_over_real_http_and_the_fallback_warns_once() -> None:
    current, changed = run_scenario("current"), run_scenario("changed")
    assert (current["implementation"], current["warnings"]) == ("list", [])
    assert changed["implementation"] == "public"
    assert len(changed["warnings"]) == 1 and "httpx.Request has the attributes" in changed["warnings"][0]
    assert current["status"] == changed["status"] == 200
    assert current["requests"] == changed["requests"]
    first, resent = current["requests"]
    assert [name for name, _ in first] == [
        "Host", "Accept", "Accept-Encoding", "Connection", "User-Agent", "Content-Type", "X-Caller",
        "Content-Length", "X-Idempotency-Key", "x-stainless-retry-count", "x-stainless-read-timeout",
        "X-Backpressure", "X-Call", "X-API-Key",
    ]  # fmt: skip
    assert dict(first)["User-Agent"] == "Probe/1.0" and dict(first)["x-stainless-retry-count"] == "0"
    assert resent == [[name, "1" if name == "x-stainless-retry-count" else value] for name, value in first]
    for run in (current, changed):  # one key per logical request, the same on the re-send
        assert run["keys"][0] == run["keys"][1] and run["keys"][0].startswith("probe-")
