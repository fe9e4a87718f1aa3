"""What one request's header work costs, through pristine_transport.layers.header_list's two implementations.

The work is what the layers do to a tinkex-like request (a request built by ``httpx.AsyncClient``, the manifest's
ten configured headers, two context headers, an idempotency key, the retry count and read-timeout headers, the
backpressure header) and the reads of its response (header block size, ``content-encoding``, a notice header,
``content-type``), each through the module's functions, as the layers call them:

    .venv/bin/python bench/bench_headers.py            # median µs per request, list vs public implementation

The two implementations alternate, round for round, in one process; each round times ``CALLS`` requests.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import httpx

from pristine_transport.layers.header_list import EncodedHeaders, ListHeaders, PublicHeaders

CALLS = 5000
ROUNDS = 15
CONFIGURED = {
    "Accept": "application/json",
    "User-Agent": "AsyncTinker/Python 0.38.0 (tinkex)",
    "X-Stainless-Package-Version": "0.38.0",
    "X-Tinkex-Version": "0.9.0",
    "X-Stainless-OS": "Linux",
    "X-Stainless-Arch": "x64",
    "X-Stainless-Runtime": "CPython",
    "X-Stainless-Runtime-Version": "3.11.9",
    "X-Stainless-Async": "async:asyncio",
    "X-API-Key": "tml-0123456789abcdef0123456789abcdef",
}
HTTPX_DEFAULTS = {"User-Agent": f"python-httpx/{httpx.__version__}", "Accept": "*/*"}
REQUEST = httpx.AsyncClient().build_request(
    "POST", "https://api.test/services/tinker-prod/api/v1/asample", json={"prompt": list(range(32))}
)
RESPONSE = httpx.Response(
    200,
    headers={"content-type": "application/json", "content-length": "58", "date": "Sun, 06 Dec 2026 17:00:00 GMT"},
    content=b"x" * 58,
)


def one_request(impl: type[PublicHeaders]) -> Callable[[], None]:
    configured = EncodedHeaders(CONFIGURED, replaceable=HTTPX_DEFAULTS)
    context = EncodedHeaders({"X-Tinker-SDK-Version": "0.38.0", "X-Tinker-SDK-Method": "sample"})

    # Bound once, as the layers bind the module's functions at import: a call costs what it costs in the layers.
    copy_request, copy_headers, has_header = impl.copy_request, impl.copy_headers, impl.has_header
    add_header, add_absent, add_missing = impl.add_header, impl.add_absent, impl.add_missing
    set_header = impl.set_header
    encoded_size, find_header = impl.encoded_size, impl.find_header

    def run() -> None:
        request = copy_request(REQUEST)  # the router
        headers = request.headers
        if not has_header(headers, "X-Idempotency-Key"):  # idempotency
            add_header(headers, "X-Idempotency-Key", b"stainless-python-retry-0123")
        copy_headers(headers)  # retry: the headers as given, for re-sends; the attempt's headers
        add_absent(headers, [("x-stainless-retry-count", b"0"), ("x-stainless-read-timeout", b"60.0")])
        add_missing(headers, context, configured)  # headers
        set_header(headers, "X-Backpressure", b"1")  # backpressure
        encoded_size(RESPONSE.headers)  # boundary
        find_header(RESPONSE.headers, "content-encoding")
        find_header(RESPONSE.headers, "X-Tinker-Note")  # notices
        find_header(RESPONSE.headers, "content-type")  # queue state

    return run


def per_request_us(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        run()
    return (time.perf_counter() - start) / CALLS * 1e6


def main() -> int:
    runs = {"list": one_request(ListHeaders), "public": one_request(PublicHeaders)}
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for index in range(ROUNDS):
        for name in runs if index % 2 else reversed(runs):
            timings[name].append(per_request_us(runs[name]))
    medians = {name: statistics.median(times) for name, times in timings.items()}
    print(
        f"header work per request: list {medians['list']:.2f} µs, public API {medians['public']:.2f} µs "
        f"(the list saves {medians['public'] - medians['list']:.2f} µs, {medians['public'] / medians['list']:.1f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
