"""Logging: the ``pristine_transport.*`` logger hierarchy, the manifest's env toggle, and secret masking.

A manifest's ``logging`` block names the SDK's logger and an environment variable (``TINKER_LOG`` style). Set to
``debug`` or ``info``, that variable turns on ``logging.basicConfig`` with the official SDKs' format and sets the
SDK and ``pristine_transport`` loggers to that level. httpx / httpcore stay at WARNING unless the level is debug,
as the official SDK does. One :class:`SecretMaskingFilter` masks every secret the redactors know in a record's
message, arguments and traceback: it sits on every ``pristine_transport`` and SDK logger (so handlers an
application adds later see masked records too) and on the root logger's handlers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from pristine_transport.manifest import LoggingSpec
from pristine_transport.redaction import Redactor

__all__ = ["LOG_FORMAT", "ROOT_LOGGER", "SecretMaskingFilter", "configure_logging", "get_logger"]

ROOT_LOGGER = "pristine_transport"
LOG_FORMAT = "[%(asctime)s - %(name)s:%(lineno)d - %(levelname)s] %(message)s"

_TOGGLE_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
_HTTP_LIBRARY_LOGGERS = ("httpx", "httpcore")


def get_logger(name: str | None = None) -> logging.Logger:
    """``pristine_transport`` or ``pristine_transport.<name>``."""
    return logging.getLogger(f"{ROOT_LOGGER}.{name}" if name else ROOT_LOGGER)


class SecretMaskingFilter(logging.Filter):
    """Masks every secret value known to its redactors in a record's message, arguments and traceback text.

    One filter serves several clients, each with its own redactor. Redactors are held strongly: masking must not
    stop because the caller dropped its reference while records that carry the secret may still be logged.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactors: list[Redactor] = []
        if redactor is not None:
            self.add_redactor(redactor)

    def add_redactor(self, redactor: Redactor) -> None:
        if not any(known is redactor for known in self._redactors):
            self._redactors = [*self._redactors, redactor]  # copy on write: filter() may run on another thread

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = self._redactors
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
        return True


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


def _install(target: logging.Logger | logging.Handler) -> None:
    # A logger's filters see only the records logged to that very logger, hence one on each logger of ours.
    if _MASKING not in target.filters:
        target.addFilter(_MASKING)
