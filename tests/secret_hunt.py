"""Where the secrets tests look for leaks (tests/pristine_transport/boundary/test_secrets.py and
tests/tinkex/auth/test_jwt_secrets.py): every log line at DEBUG, and every text an exception and its causes show."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

HTTP_LIBRARIES = ("hpack", "h2", "httpx", "httpcore", "aiohttp", "h11", "httpx_aiohttp")


class Capture(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter("%(name)s %(message)s").format(record))


@contextmanager
def debug_everything() -> Iterator[list[str]]:
    """DEBUG on the root and on every logger that exists, a new root handler: what an application may do at any
    time (the tests turn it on after the client was created). Yields the log lines."""
    lines: list[str] = []
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in list(logging.root.manager.loggerDict)}
    root_level, earlier = root.level, list(root.handlers)
    # The root's handlers so far (pytest's own) carry the masking filter installed when a client was created, which
    # would mask records in place before ours sees them: set them aside, as an application starting its logging
    # afresh would have none.
    for handler in earlier:
        root.removeHandler(handler)
    capture, on_libraries = Capture(lines), Capture(lines)
    root.addHandler(capture)
    # Also right on the HTTP libraries' loggers: a handler there is one no client ever saw, so only masking at
    # record creation can protect it.
    for name in HTTP_LIBRARIES:
        logging.getLogger(name).addHandler(on_libraries)
    root.setLevel(logging.DEBUG)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(capture)
        for name in HTTP_LIBRARIES:
            logging.getLogger(name).removeHandler(on_libraries)
        for handler in earlier:
            root.addHandler(handler)
        root.setLevel(root_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def exception_texts(exc: BaseException) -> list[str]:
    """What an exception and its cause chain show: messages, reprs, args, bodies, and the requests they carry."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args), repr(getattr(current, "body", None))]
        for holder in (current, getattr(current, "response", None)):
            request = getattr(holder, "_request", None) or getattr(holder, "request", None)
            if isinstance(request, httpx.Request):
                texts.append(repr(list(request.headers.raw)) + str(request.url))
        current = current.__cause__ or current.__context__
    return texts
