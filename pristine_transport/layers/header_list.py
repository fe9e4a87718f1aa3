"""Header reads and edits on the layers' per-request path: the one module that knows how httpx stores headers.

Every function here takes and returns httpx's public types (``httpx.Headers``, ``httpx.Request``), ``str`` names
(matched without regard to case), ``bytes`` values, and :class:`EncodedHeaders` (headers encoded once, to add to
many requests): no other module sees how httpx stores headers. Two implementations answer them alike
(tests/pristine_transport/layers/test_header_list.py runs one table against both):

- :class:`ListHeaders` works on the list behind ``httpx.Headers`` (``_list``: ``(raw name, lowercase name, value)``
  byte triples, the layout of every httpx release since 0.18) and builds request copies attribute by attribute.
- :class:`PublicHeaders` uses httpx's public API only (``raw``, ``update``, ``del``, ``httpx.Request(...)``), which
  re-encodes the name and rescans every header on each call, and re-parses the URL and every header on a copy.

The list pays: a tinkex-like request's header work costs 5.6 µs through the list and 102 µs through the public API
(``bench/bench_headers.py``), and a request through ``bench/bench_stack.py``'s full stack 132 µs against 212 µs
(bare httpx: 97 µs), measured on the shared 2-core machine.

At import, :func:`list_layout_problem` sends a real ``httpx.Headers`` and ``httpx.Request`` through the list
implementation; when httpx changed its layout, the public implementation is used and a ``RuntimeWarning`` says so
once. The test module fails while the fallback is in use, so an httpx release that changes the layout is noticed.

Why the router hands each stack a copy rather than the caller's request: httpx's client passes the request it
built to its cookie jar after every response, which copies its headers through ``dict(request.headers)``, a cost
quadratic in the number of headers. Headers the layers add to the copy never reach that path.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Iterable, Mapping
from typing import Final

import httpx

__all__ = [
    "IMPLEMENTATION",
    "LAYOUT_PROBLEM",
    "EncodedHeaders",
    "ListHeaders",
    "PublicHeaders",
    "add_absent",
    "add_header",
    "add_missing",
    "copy_headers",
    "copy_request",
    "encoded_size",
    "find_header",
    "has_header",
    "list_layout_problem",
    "set_header",
]


_NAMES_KEPT = 4096  # names come from manifests and propagators, a small set; the bound only guards a misuse


class _EncodedNames(dict[str, tuple[bytes, bytes]]):
    """Header name -> (name as sent, lowercase name). ``_NAMES[name]`` encodes a name on its first lookup (in
    ``__missing__``) and keeps it: a dict subscript per call afterwards, with no ``try`` at each caller."""

    def __missing__(self, name: str) -> tuple[bytes, bytes]:
        raw = name.encode("utf-8")
        encoded = raw, raw.lower()
        if len(self) < _NAMES_KEPT:
            self[name] = encoded
        return encoded


_NAMES = _EncodedNames()


_Entry = tuple[bytes, bytes, bytes]
_Plan = tuple[tuple[_Entry, ...], tuple[tuple[_Entry, bytes], ...]]
_PLANS_KEPT = 64


class EncodedHeaders:
    """Headers encoded once (UTF-8, as ``httpx.Headers.__setitem__`` does), to add to many requests with
    :func:`add_missing`. Of two spellings of one name, the first is kept.

    ``replaceable`` maps a name to a value that counts as "not set": a request carrying that header once, with that
    value (httpx's client defaults ``User-Agent: python-httpx/…`` and ``Accept: */*``), gets this one instead.
    The repr names the headers but never shows a value (one may be an API key).
    """

    __slots__ = ("_entries", "_lower_names", "_plans")

    def __init__(self, headers: Mapping[str, str] | None = None, *, replaceable: Mapping[str, str] | None = None):
        defaults = {_NAMES[name][1]: value.encode("utf-8") for name, value in (replaceable or {}).items()}
        entries: dict[bytes, tuple[_Entry, bytes | None]] = {}
        for name, value in (headers or {}).items():
            raw, lower = _NAMES[name]
            entries.setdefault(lower, ((raw, lower, value.encode("utf-8")), defaults.get(lower)))
        self._entries = tuple(entries.values())
        self._lower_names = frozenset(entries)
        self._plans: dict[frozenset[bytes], _Plan] = {}

    def _plan(self, present: frozenset[bytes]) -> _Plan:
        """For a request that has the names ``present`` (of this set's): the entries to append, and the entries
        that replace a header present with its ``replaceable`` value. Requests of one endpoint nearly always carry
        the same of these names, so the plan is kept per such set (a few at most; the bound guards a misuse)."""
        appended = tuple(entry for entry, _ in self._entries if entry[1] not in present)
        replacing = tuple((entry, value) for entry, value in self._entries if entry[1] in present and value is not None)
        plan = appended, replacing
        if len(self._plans) < _PLANS_KEPT:
            self._plans[present] = plan
        return plan

    def names(self) -> list[str]:
        return [entry[0].decode("utf-8") for entry, _ in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"EncodedHeaders({self.names()!r})"


class PublicHeaders:
    """The header functions on httpx's public API only: the reference the list implementation is held to, and the
    fallback when httpx's layout changed. Names are matched without regard to case, as httpx does; values are the
    bytes sent."""

    @staticmethod
    def has_header(headers: httpx.Headers, name: str) -> bool:
        return PublicHeaders.find_header(headers, name) is not None

    @staticmethod
    def find_header(headers: httpx.Headers, name: str) -> bytes | None:
        """The value of the first occurrence of the header, or None."""
        lower = _NAMES[name][1]
        for item_name, value in headers.raw:
            if item_name.lower() == lower:
                return value
        return None

    @staticmethod
    def add_header(headers: httpx.Headers, name: str, value: bytes) -> None:
        """Append the header, after any the headers already have (of any name)."""
        raw = _NAMES[name][0]
        if PublicHeaders.has_header(headers, name):
            _replace_all(headers, [*headers.raw, (raw, value)])
        else:
            headers.update([(raw, value)])  # bytes are kept as given; update removes only names already there

    @staticmethod
    def add_absent(headers: httpx.Headers, pairs: Iterable[tuple[str, bytes]]) -> None:
        """Append each header whose name the headers lack (``pairs`` name distinct headers)."""
        present = {name.lower() for name, _ in headers.raw}
        appended = []
        for name, value in pairs:
            raw, lower = _NAMES[name]
            if lower not in present:
                appended.append((raw, value))
        if appended:
            headers.update(appended)  # names the headers lack: update removes nothing, appends in this order

    @staticmethod
    def set_header(headers: httpx.Headers, name: str, value: bytes) -> None:
        """Replace every occurrence of the header (keeping the position of the first), or append it: the semantics
        of ``headers[name] = value``, with the value's bytes kept as given."""
        raw, lower = _NAMES[name]
        pairs = headers.raw
        first = next((index for index, (item, _) in enumerate(pairs) if item.lower() == lower), None)
        if first is None:
            headers.update([(raw, value)])
            return
        kept = [pair for index, pair in enumerate(pairs) if index <= first or pair[0].lower() != lower]
        kept[first] = (raw, value)
        _replace_all(headers, kept)

    @staticmethod
    def add_missing(headers: httpx.Headers, *additions: EncodedHeaders) -> None:
        """Add each header of ``additions`` that ``headers`` lacks (earlier additions first); a header present once
        with its ``replaceable`` value counts as lacking and is replaced where it stands."""
        present: dict[bytes, list[bytes]] = {}
        for item_name, item_value in headers.raw:
            present.setdefault(item_name.lower(), []).append(item_value)
        appended: list[tuple[bytes, bytes]] = []
        for addition in additions:
            for (raw, lower, value), replaceable in addition._entries:
                values = present.get(lower)
                if values is None:
                    appended.append((raw, value))
                    present[lower] = [value]
                elif replaceable is not None and values == [replaceable]:
                    PublicHeaders.set_header(headers, raw.decode("utf-8"), value)
                    present[lower] = [value]
        if appended:
            headers.update(appended)  # names the headers lack: update removes nothing, appends in this order

    @staticmethod
    def encoded_size(headers: httpx.Headers) -> int:
        """Bytes of the header lines as sent: each name, ``: ``, value and CRLF."""
        return sum(len(name) + len(value) + 4 for name, value in headers.raw)

    @staticmethod
    def copy_headers(headers: httpx.Headers) -> httpx.Headers:
        """An independent copy: editing one leaves the other as it was."""
        return httpx.Headers(headers)

    @staticmethod
    def copy_request(request: httpx.Request, headers: httpx.Headers | None = None) -> httpx.Request:
        """A request that shares ``request``'s method, URL and body (stream, and content once read) but has its own
        headers (``headers`` itself, else a copy of ``request``'s) and its own extensions dict."""
        own = httpx.Headers(request.headers) if headers is None else headers
        extensions = dict(request.extensions)
        try:
            content = request.content
        except httpx.RequestNotRead:
            copy = httpx.Request(request.method, request.url, stream=request.stream, extensions=extensions)
        else:
            copy = httpx.Request(request.method, request.url, content=content, extensions=extensions)
        copy.headers = own  # not through __init__, which would add Host and Content-Length to an exact header set
        return copy


def _replace_all(headers: httpx.Headers, pairs: list[tuple[bytes, bytes]]) -> None:
    """Make ``headers`` hold exactly ``pairs``, in place, through the public API."""
    for name in list(headers.keys()):
        del headers[name]
    headers.update(pairs)  # keeps duplicates: update only removes names ``headers`` already had


class ListHeaders(PublicHeaders):
    """The same functions on ``httpx.Headers._list``. Names are looked up in ``_NAMES`` by subscript (no call)."""

    @staticmethod
    def find_header(headers: httpx.Headers, name: str) -> bytes | None:
        lower = _NAMES[name][1]
        for entry in headers._list:
            if entry[1] == lower:
                return entry[2]
        return None

    @staticmethod
    def has_header(headers: httpx.Headers, name: str) -> bool:
        return ListHeaders.find_header(headers, name) is not None  # a value is bytes, never None, even when empty

    @staticmethod
    def add_header(headers: httpx.Headers, name: str, value: bytes) -> None:
        raw, lower = _NAMES[name]
        headers._list.append((raw, lower, value))

    @staticmethod
    def add_absent(headers: httpx.Headers, pairs: Iterable[tuple[str, bytes]]) -> None:
        items = headers._list
        names = set(map(_LOWER_NAME, items))
        for name, value in pairs:
            raw, lower = _NAMES[name]
            if lower not in names:
                items.append((raw, lower, value))

    @staticmethod
    def set_header(headers: httpx.Headers, name: str, value: bytes) -> None:
        raw, lower = _NAMES[name]
        items = headers._list
        first = None
        for index, item in enumerate(items):
            if item[1] == lower:
                first = index
                break
        if first is None:
            items.append((raw, lower, value))
            return
        items[first] = (raw, lower, value)
        for index in range(len(items) - 1, first, -1):
            if items[index][1] == lower:
                del items[index]

    @staticmethod
    def add_missing(headers: httpx.Headers, *additions: EncodedHeaders) -> None:
        items = headers._list
        for addition in additions:
            if not addition._entries:
                continue
            # Which of the addition's names the request has, found in C; what to do then is planned once per such
            # set: per request, one extend and a check per replaceable header present (no loop over the addition).
            listed = list(map(_LOWER_NAME, items))
            present = addition._lower_names.intersection(listed)
            try:
                appended, replacing = addition._plans[present]
            except KeyError:
                appended, replacing = addition._plan(present)
            for entry, replaceable in replacing:
                lower = entry[1]
                if listed.count(lower) == 1:
                    index = listed.index(lower)  # ``listed`` is ``items`` before the extend: indexes agree
                    if items[index][2] == replaceable:
                        items[index] = entry
            items.extend(appended)

    @staticmethod
    def encoded_size(headers: httpx.Headers) -> int:
        entries = headers._list
        # Summed in C (map over the entries), not by a generator: this runs for every response.
        return 4 * len(entries) + sum(map(len, map(_RAW_NAME, entries))) + sum(map(len, map(_VALUE, entries)))

    @staticmethod
    def copy_headers(headers: httpx.Headers) -> httpx.Headers:
        copy = _new_headers(_Headers)
        copy._list = list(headers._list)
        copy._encoding = headers._encoding
        return copy

    @staticmethod
    def copy_request(request: httpx.Request, headers: httpx.Headers | None = None) -> httpx.Request:
        """Built without ``httpx.Request.__init__``, which would re-parse the URL and re-normalise every header. The
        attributes are assigned in ``__init__``'s order, never through ``__dict__``: CPython keeps such instances in
        the compact layout its attribute caches specialise on, and a differently built instance deoptimises every
        ``request.x`` access in httpx for all requests (measured: +5 µs per request)."""
        if headers is None:
            headers = _new_headers(_Headers)
            headers._list = list(request.headers._list)
            headers._encoding = request.headers._encoding
        copy = _new_request(_Request)
        copy.method = request.method
        copy.url = request.url
        copy.headers = headers
        copy.extensions = dict(request.extensions)
        copy.stream = request.stream
        try:
            copy._content = request._content  # what the ``content`` property reads, without its call
        except AttributeError:  # a streamed body not read yet: the copy shares the stream
            pass
        return copy


_Headers, _Request = httpx.Headers, httpx.Request
_new_headers, _new_request = httpx.Headers.__new__, httpx.Request.__new__
_RAW_NAME = operator.itemgetter(0)
_LOWER_NAME = operator.itemgetter(1)
_VALUE = operator.itemgetter(2)

_REQUEST_ATTRIBUTES = ["method", "url", "headers", "extensions", "stream", "_content"]
_HEADERS_ATTRIBUTES = ["_list", "_encoding"]


def list_layout_problem(
    headers_type: type[httpx.Headers] = httpx.Headers, request_type: type[httpx.Request] = httpx.Request
) -> str | None:
    """None when httpx stores headers and requests the way :class:`ListHeaders` relies on, else what differs. Found by
    a real round trip: a header set through the public API reads back as the expected triple, a triple appended
    reads back through the public API, a request has exactly the attributes copies are built from (a new one would
    go missing from copies), and an edited copy reads back like its original but for the edit."""
    try:
        headers = headers_type({"X-Probe": "1"})
        if list(vars(headers)) != _HEADERS_ATTRIBUTES:
            return f"httpx.Headers has the attributes {list(vars(headers))}, not {_HEADERS_ATTRIBUTES}"
        if headers._list != [(b"X-Probe", b"x-probe", b"1")]:
            return f"httpx.Headers._list holds {headers._list!r}, not (raw name, lowercase name, value) triples"
        headers._list.append((b"X-Added", b"x-added", b"v\xc3\xa4"))
        if headers.raw != [(b"X-Probe", b"1"), (b"X-Added", b"v\xc3\xa4")] or headers.get_list("x-added") != ["vä"]:
            return "a triple appended to httpx.Headers._list does not read back through the public API"
        request = request_type("POST", "http://probe.invalid/path?q=1", headers=headers, content=b"body")
        if list(vars(request)) != _REQUEST_ATTRIBUTES:
            return f"httpx.Request has the attributes {list(vars(request))}, not {_REQUEST_ATTRIBUTES}"
        copy = ListHeaders.copy_request(request)
        ListHeaders.set_header(copy.headers, "X-Probe", b"2")
        edited = [(name, b"2" if name == b"X-Probe" else value) for name, value in request.headers.raw]
        if copy.headers.raw != edited or request.headers["x-probe"] != "1":
            return "a request copied and edited by the list implementation does not read back as edited"
        if (copy.method, copy.url, copy.content) != (request.method, request.url, b"body"):
            return "a request copied by the list implementation has another method, URL or body"
    except Exception as exc:  # any surprise in httpx's internals means: do not touch them
        return f"the round trip through httpx's internals raised {exc!r}"
    return None


LAYOUT_PROBLEM: Final[str | None] = list_layout_problem()
"""Why the list implementation is not used (None: it is)."""
_chosen: type[PublicHeaders] = ListHeaders if LAYOUT_PROBLEM is None else PublicHeaders
IMPLEMENTATION: Final[str] = "list" if LAYOUT_PROBLEM is None else "public"
if LAYOUT_PROBLEM is not None:
    warnings.warn(
        f"httpx {httpx.__version__} no longer stores headers as pristine_transport's fast header path expects "
        f"({LAYOUT_PROBLEM}); headers are read and edited through httpx's public API instead (same results, more "
        "CPU per request)",
        RuntimeWarning,
        stacklevel=2,
    )

has_header = _chosen.has_header
find_header = _chosen.find_header
add_header = _chosen.add_header
add_absent = _chosen.add_absent
set_header = _chosen.set_header
add_missing = _chosen.add_missing
encoded_size = _chosen.encoded_size
copy_headers = _chosen.copy_headers
copy_request = _chosen.copy_request
