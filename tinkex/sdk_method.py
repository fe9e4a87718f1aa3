"""``x-sdk-version`` / ``x-sdk-method``: every request a public client method sends names that method, as the
official 0.38 SDK does (0.34+; ``docs/wire.md`` §8.1): ``x-sdk-method: TrainingClient.forward_backward``.

The name travels in a context (``pristine_transport.layers.headers.context_headers``): sync methods run their
coroutines on the background loop in a copy of the caller's context, so the requests of a call, on whichever loop,
carry its name. Only the outermost public call counts (a method calling another keeps its own name). Work that
outlives the call or belongs to the whole client (session creation, the handshake, heartbeat, telemetry, token
renewal) runs :func:`detached`, without a name, as the official SDK's background loops do.

Names are the official classes' (``ServiceClient`` for :class:`tinkex.Client`), so the server sees the same values
from either SDK; ``tinkex/__init__.py`` applies :func:`track_sdk_methods` to each client class once they are all
loaded (this module sits low in the stack, below the clients, and imports none of them). A client's future used as the client (0.16 code: ``create_lora_training_client(...).forward_backward``)
names its own class, as the official 0.38 one does: ``BackcompatTrainingClientFuture.forward_backward`` on the submit
and on its future's polls (polls start at submit, in the call's context, so they carry the name of the call that made
them; ``APIFuture.result()`` names nothing of its own).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import context as otel_context

from pristine_transport.layers.headers import context_headers

from .call_spans import start_call_span

__all__ = [
    "SDK_METHOD_HEADER",
    "SDK_VERSION_HEADER",
    "current_sdk_method",
    "detached",
    "track_sdk_methods",
    "tracked_method_names",
]

SDK_VERSION_HEADER = "x-sdk-version"
SDK_METHOD_HEADER = "x-sdk-method"
SERVED_SDK_VERSION = "0.38.0"
"""The official release whose API tinkex serves (``tinkex.compat``'s ``tinker.__version__``)."""

C = TypeVar("C", bound=type)
R = TypeVar("R")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("tinkex.sdk_method", default=None)


def current_sdk_method() -> str | None:
    """The public method whose requests are being sent in this context, if any."""
    return _current.get()


def detached(function: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``function(*args, **kwargs)`` in a copy of this context without a method name or a current span: the requests
    it sends and the tasks it starts (which copy the context) are not the current call's, e.g. a poller a call starts
    that outlives it (``detached(loop.create_task, poll_loop(), name=...)``)."""
    context = contextvars.copy_context()

    def run() -> R:
        _current.set(None)
        otel_context.attach(otel_context.Context())  # nor the call's span: in a copy, so never detached
        with context_headers(None):
            return function(*args, **kwargs)

    return context.run(run)


@contextmanager
def _entered(name: str) -> Iterator[bool]:
    """Within: the requests sent carry ``name``; yields whether this is the outermost public call."""
    if _current.get() is not None:
        yield False
        return
    token = _current.set(name)
    try:
        with context_headers({SDK_VERSION_HEADER: SERVED_SDK_VERSION, SDK_METHOD_HEADER: name}):
            yield True
    finally:
        _current.reset(token)


def _public_function_names(cls: type) -> list[str]:
    return sorted(name for name, member in vars(cls).items() if not name.startswith("_") and inspect.isfunction(member))


def tracked_method_names(cls: type, official_name: str) -> list[str]:
    """The ``x-sdk-method`` values instances of ``cls`` send: its own public methods, under ``official_name``."""
    return [f"{official_name}.{name}" for name in _public_function_names(cls)]


def _tracked(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    if getattr(function, "__tinkex_sdk_method__", None) is not None:
        return function
    if inspect.iscoroutinefunction(inspect.unwrap(function)):

        @functools.wraps(function)
        async def async_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            with _entered(name) as outermost:
                span = start_call_span(self, name) if outermost else None
                if span is None:
                    return await function(self, *args, **kwargs)
                try:
                    value = await function(self, *args, **kwargs)
                except BaseException as exc:
                    span.failed(exc)
                    raise
                span.returned(value)
                return value

        async_wrapper.__tinkex_sdk_method__ = name  # type: ignore[attr-defined]
        return async_wrapper

    @functools.wraps(function)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _entered(name) as outermost:
            span = start_call_span(self, name) if outermost else None
            if span is None:
                return function(self, *args, **kwargs)
            try:
                value = function(self, *args, **kwargs)
            except BaseException as exc:
                span.failed(exc)
                raise
            span.returned(value)
            return value

    wrapper.__tinkex_sdk_method__ = name  # type: ignore[attr-defined]
    return wrapper


def track_sdk_methods(official_name: str) -> Callable[[C], C]:
    """Class decorator: requests sent while a public method the class defines runs carry
    ``x-sdk-method: <official_name>.<method>``, and with tracing on the outermost call has a span of that name
    (:mod:`tinkex.call_spans`)."""

    def decorate(cls: C) -> C:
        for name in _public_function_names(cls):
            setattr(cls, name, _tracked(vars(cls)[name], f"{official_name}.{name}"))
        return cls

    return decorate
