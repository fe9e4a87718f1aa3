"""header_list: the fast header edits behave like httpx's public API, and the httpx internals they use still exist."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from pristine_transport.layers.header_list import (
    copy_request,
    find_header,
    has_header,
    header_entry,
    live_entries,
    set_header,
)

URL = "https://api.test/v1/things?n=1"


def built_request(**kwargs: object) -> httpx.Request:
    return httpx.AsyncClient().build_request("POST", URL, **kwargs)  # type: ignore[arg-type]


def test_the_httpx_internals_relied_on_are_there() -> None:
    headers = httpx.Headers({"Content-Type": "application/json"})
    assert live_entries(headers) == [(b"Content-Type", b"content-type", b"application/json")]
    request = built_request(json={"a": 1})
    # copy_request rebuilds a request attribute by attribute, in __init__'s order: a new attribute in httpx must
    # show up here rather than go missing from copies.
    assert list(vars(request)) == ["method", "url", "headers", "extensions", "stream", "_content"]
    assert list(vars(request.headers)) == ["_list", "_encoding"]


def test_appending_an_entry_reads_back_like_a_public_set() -> None:
    fast, public = httpx.Headers({"A": "1"}), httpx.Headers({"A": "1"})
    live_entries(fast).append(header_entry("X-Key", "välue"))
    public["X-Key"] = "välue"
    assert fast.raw == public.raw and fast["x-key"] == public["x-key"] == "välue"


@pytest.mark.parametrize("start", [[], [("x-a", "1")], [("X-A", "1"), ("b", "2"), ("x-a", "3")]])
def test_set_header_matches_httpx_setitem(start: list[tuple[str, str]]) -> None:
    fast, public = httpx.Headers(start), httpx.Headers(start)
    set_header(fast, header_entry("X-A", "new"))
    public["X-A"] = "new"
    assert fast.raw == public.raw


def test_find_and_has_header_compare_lowercase_names() -> None:
    headers = httpx.Headers([("X-A", "1"), ("x-a", "2")])
    assert has_header(headers, b"x-a") and not has_header(headers, b"x-b")
    assert find_header(headers, b"x-a") == b"1" and find_header(headers, b"x-b") is None


def test_a_copy_shares_the_body_but_not_the_headers_or_extensions() -> None:
    original = built_request(json={"a": 1}, extensions={"k": "v"})
    copy = copy_request(original)
    live_entries(copy.headers).append(header_entry("X-Added", "1"))
    copy.extensions["other"] = 1
    assert "x-added" not in original.headers and copy.headers["x-added"] == "1"
    assert original.extensions == {"k": "v", "timeout": original.extensions["timeout"]}
    assert (copy.method, copy.url, copy.content, copy.stream) == (
        original.method,
        original.url,
        original.content,
        original.stream,
    )


def test_a_copy_with_given_entries_has_exactly_those_headers() -> None:
    original = built_request(content=b"x")
    copy = copy_request(original, [header_entry("Only", "1")])
    assert copy.headers.raw == [(b"Only", b"1")]
    assert original.headers["content-length"] == "1"


@pytest.mark.anyio
async def test_a_copy_of_an_unread_streamed_request_reads_its_stream() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"part"

    original = built_request(content=body())
    copy = copy_request(original)
    with pytest.raises(httpx.RequestNotRead):
        copy.content  # noqa: B018
    assert await copy.aread() == b"part"
