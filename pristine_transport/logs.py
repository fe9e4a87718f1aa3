"""Logging: the ``pristine_transport.*`` logger hierarchy, the manifest's env toggle, and secret masking.

A manifest's ``logging`` block names the SDK's logger and an environment variable (``TINKER_LOG`` style). Set to
``debug`` or ``info``, that variable turns on ``logging.basicConfig`` with the official SDKs' format and sets the
SDK and ``pristine_transport`` loggers to that level. httpx / httpcore stay at WARNING unless the level is debug,
as the official SDK does. One :class:`SecretMaskingFilter` masks every secret the redactors know in a record's
message, arguments and traceback: it sits on every ``pristine_transport`` and SDK logger (so handlers an
application adds later see masked records too) and on the root logger's handlers.

The HTTP libraries under us (httpx, httpcore, h11, h2, hpack, aiohttp) log request headers at DEBUG, the API key
among them (hpack prints every header it encodes). An application may turn them on at any time, after the client
exists, with handlers of its own, on loggers created later. So masking for them happens where a record is made:
a log-record factory, installed once, masks records of those namespaces as they are created.

Redactors are held weakly: a client that is closed and dropped takes its redactor with it, so a long run that
creates many clients does not pile them up here.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from pristine_transport.manifest import LoggingSpec
from pristine_transport.redaction import Redactor

__all__ = [
    "LIBRARY_NAMESPACES",
    "LOG_FORMAT",
    "ROOT_LOGGER",
    "SecretMaskingFilter",
    "configure_logging",
    "get_logger",
    "masking_filter",
]

ROOT_LOGGER = "pristine_transport"
LOG_FORMAT = "[%(asctime)s - %(name)s:%(lineno)d - %(levelname)s] %(message)s"

_TOGGLE_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
_HTTP_LIBRARY_LOGGERS = ("httpx", "httpcore")
LIBRARY_NAMESPACES = frozenset({"httpx", "httpcore", "h11", "h2", "hpack", "hyperframe", "aiohttp", "httpx_aiohttp"})
"""Loggers of the HTTP libraries under pristine_transport, whose records are masked as they are created."""


def get_logger(name: str | None = None) -> logging.Logger:
    """``pristine_transport`` or ``pristine_transport.<name>``."""
    return logging.getLogger(f"{ROOT_LOGGER}.{name}" if name else ROOT_LOGGER)


class SecretMaskingFilter(logging.Filter):
    """Masks every secret value known to its redactors in a record's message, arguments and traceback text.

    One filter serves several clients, each with its own redactor, held weakly (see the module docstring)."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._refs: list[weakref.ref[Redactor]] = []
        self._lock = threading.Lock()
        if redactor is not None:
            self.add_redactor(redactor)

    @property
    def redactor_count(self) -> int:
        """Redactors still alive (for leak checks)."""
        return len(self._live())

    def add_redactor(self, redactor: Redactor) -> None:
        with self._lock:
            if any(ref() is redactor for ref in self._refs):
                return
            # Copy on write: filter() may run on another thread. Dead references are dropped on every add.
            self._refs = [ref for ref in self._refs if ref() is not None] + [weakref.ref(redactor, self._forget)]

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = self._live()
        if not redactors:
            return True
        message = record.getMessage()
        masked = _mask(message, redactors)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Format the traceback now so that the masked text is what every handler prints.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _mask(record.exc_text, redactors)
        if record.stack_info:
            record.stack_info = _mask(record.stack_info, redactors)
        return True

    def _live(self) -> list[Redactor]:
        return [r for r in (ref() for ref in self._refs) if r is not None]

    def _forget(self, dead: weakref.ref[Redactor]) -> None:
        with self._lock:
            self._refs = [ref for ref in self._refs if ref is not dead]


def _mask(text: str, redactors: list[Redactor]) -> str:
    for redactor in redactors:
        text = redactor.text(text)
    return text


def configure_logging(
    spec: LoggingSpec | None,
    *,
    env: Mapping[str, str] = os.environ,
    redactor: Redactor | None = None,
) -> int | None:
    """Apply the manifest's logging toggle and install secret masking. Returns the level the toggle selected
    (None when it is unset or not ``debug``/``info``). Calling it again with the same arguments changes nothing."""
    level: int | None = None
    if spec is not None:
        raw = env.get(spec.env, "") if spec.env else ""
        level = _TOGGLE_LEVELS.get(raw.strip().lower())
        if level is not None:
            logging.basicConfig(format=LOG_FORMAT)  # a no-op when the application configured logging itself
            logging.getLogger(spec.logger).setLevel(level)
            get_logger().setLevel(level)
        library_level = logging.DEBUG if level == logging.DEBUG else logging.WARNING
        for name in _HTTP_LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(library_level)
    if redactor is not None:
        _MASKING.add_redactor(redactor)
        _install_record_factory()
        namespaces = (ROOT_LOGGER, spec.logger) if spec is not None else (ROOT_LOGGER,)
        for name in [ROOT_LOGGER, *logging.root.manager.loggerDict]:
            if name.split(".")[0] in namespaces:
                _install(logging.getLogger(name))
        if spec is not None:
            _install(logging.getLogger(spec.logger))
        for handler in logging.getLogger().handlers:
            _install(handler)
    return level


_MASKING = SecretMaskingFilter()
_factory_lock = threading.Lock()


def masking_filter() -> SecretMaskingFilter:
    """The process's one masking filter (to add to a handler of one's own, or to inspect)."""
    return _MASKING


class _MaskingRecordFactory:
    """Wraps the log-record factory in place when installed: records of the HTTP libraries' loggers come out
    masked, whatever handlers or levels the application sets up later."""

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self.previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        if record.name.split(".", 1)[0] in LIBRARY_NAMESPACES:
            _MASKING.filter(record)
        return record


def _install_record_factory() -> None:
    with _factory_lock:
        current = logging.getLogRecordFactory()
        if not isinstance(current, _MaskingRecordFactory):
            logging.setLogRecordFactory(_MaskingRecordFactory(current))


def _install(target: logging.Logger | logging.Handler) -> None:
    # A logger's filters see only the records logged to that very logger, hence one on each logger of ours.
    if _MASKING not in target.filters:
        target.addFilter(_MASKING)
