"""Header edits and request copies at list speed, for the layers' per-request path.

httpx's public ``Headers`` API re-encodes the name and rescans every header on each ``get`` / ``in`` / ``[]=``
(about 1 µs a call on a slow machine; the layers made a dozen such calls per request). These helpers work on the
list behind ``httpx.Headers`` (``_list``: ``(raw name, lowercase name, value)`` byte triples, the layout of every
httpx release since 0.18; tests/transport/test_header_list.py pins it), with entries encoded once up front.

Why the router hands each stack a copy rather than the caller's request: httpx's client passes the request it
built to its cookie jar after every response, which copies its headers through ``dict(request.headers)``, a cost
quadratic in the number of headers. Headers the layers add to the copy never reach that path.
"""

from __future__ import annotations

import httpx

__all__ = ["HeaderEntry", "copy_request", "find_header", "has_header", "header_entry", "live_entries", "set_header"]

HeaderEntry = tuple[bytes, bytes, bytes]
"""``(raw name, lowercase name, value)``, as httpx stores a header."""


def header_entry(name: str, value: str) -> HeaderEntry:
    """An entry encoded the way ``httpx.Headers.__setitem__`` encodes it (UTF-8)."""
    raw = name.encode("utf-8")
    return raw, raw.lower(), value.encode("utf-8")


def live_entries(headers: httpx.Headers) -> list[HeaderEntry]:
    """The list ``headers`` reads from: appending to it adds a header."""
    return headers._list


def has_header(headers: httpx.Headers, lower_name: bytes) -> bool:
    for entry in headers._list:
        if entry[1] == lower_name:
            return True
    return False


def find_header(headers: httpx.Headers, lower_name: bytes) -> bytes | None:
    """The value of the first occurrence of the header, or None."""
    for entry in headers._list:
        if entry[1] == lower_name:
            return entry[2]
    return None


def set_header(headers: httpx.Headers, entry: HeaderEntry) -> None:
    """Replace every occurrence of the header (keeping the position of the first), or append it: the semantics of
    ``headers[name] = value``."""
    items = headers._list
    lower_name = entry[1]
    first = None
    for index, item in enumerate(items):
        if item[1] == lower_name:
            first = index
            break
    if first is None:
        items.append(entry)
        return
    items[first] = entry
    for index in range(len(items) - 1, first, -1):
        if items[index][1] == lower_name:
            del items[index]


def copy_request(request: httpx.Request, entries: list[HeaderEntry] | None = None) -> httpx.Request:
    """A request that shares ``request``'s method, URL and body (stream, and content once read) but has its own
    headers (``entries``, else a copy of ``request``'s) and its own extensions dict.

    Built without ``httpx.Request.__init__``, which would re-parse the URL and re-normalise every header. The
    attributes are assigned in ``__init__``'s order, never through ``__dict__``: CPython keeps such instances in the
    compact layout its attribute caches specialise on, and a differently built instance deoptimises every
    ``request.x`` access in httpx for all requests (measured: +5 µs per request)."""
    headers = httpx.Headers.__new__(httpx.Headers)
    headers._list = list(request.headers._list) if entries is None else entries
    headers._encoding = request.headers._encoding
    copy = httpx.Request.__new__(httpx.Request)
    copy.method = request.method
    copy.url = request.url
    copy.headers = headers
    copy.extensions = dict(request.extensions)
    copy.stream = request.stream
    try:
        copy._content = request.content
    except httpx.RequestNotRead:
        pass
    return copy
