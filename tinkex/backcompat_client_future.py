"""The base of the futures of a client usable as the client itself (see :mod:`tinkex.client_futures`).

:class:`BackcompatClientFuture` is an :class:`APIFuture` of a client; :func:`forwarding` gives a subclass of it one
forwarder per public method and property of the client's class. It imports no client, so each client's future
lives in a module of its own that imports only that client (the official layout as well).
"""

from __future__ import annotations

import concurrent.futures
import functools
import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .api_future import APIFuture

__all__ = ["BackcompatClientFuture", "forwarding"]

C = TypeVar("C")
_OWN = frozenset({"future", "coroutine", "done", "result", "result_async"})
"""The future's own methods, which the forwarders must not replace."""


class BackcompatClientFuture(APIFuture[C], Generic[C]):
    """An :class:`APIFuture` of a client; the subclasses add the client's methods, forwarded."""

    def __init__(self, future: APIFuture[C], *, holder: Any = None) -> None:
        self._client_future = future
        self._client: C | None = None
        self._holder = holder  # what the client will share (the call spans' tracer), known before the client is

    def result(self, timeout: float | None = None) -> C:
        return self._client_future.result(timeout)

    async def result_async(self, timeout: float | None = None) -> C:
        return await self._client_future.result_async(timeout)

    def done(self) -> bool:
        return self._client_future.done()

    def future(self) -> concurrent.futures.Future[C]:
        return self._client_future.future()

    def __repr__(self) -> str:
        future = self._client_future.future()
        if not future.done():
            state = "pending"
        elif future.cancelled():
            state = "cancelled"
        elif (error := future.exception()) is not None:
            state = f"failed: {error!r}"
        else:
            state = repr(future.result())
        return f"<{type(self).__name__}: {state}>"

    def __getattr__(self, name: str) -> Any:
        # Reached only for what the class lacks: the attributes the client's __init__ sets (model_id, holder, ...).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._awaited_client(), name)

    def _awaited_client(self) -> C:
        client = self._client
        if client is None:
            client = self._client = self._client_future.result()
        return client

    async def _awaited_client_async(self) -> C:
        client = self._client
        if client is None:
            client = self._client = await self._client_future.result_async()
        return client


def _untracked(forwarder: Callable[..., Any]) -> Callable[..., Any]:
    """``functools.wraps`` copied the client method's attributes, its x-sdk-method mark among them if the method is
    tracked already: without it, ``track_sdk_methods`` names the forwarder after the future's own class."""
    vars(forwarder).pop("__tinkex_sdk_method__", None)
    return forwarder


def forwarding(client_class: type) -> Callable[[type], type]:
    """Adds to the decorated class one forwarder per public method and property of ``client_class``, keeping
    each method's signature and docstring (``inspect.signature`` and ``help`` see the client's)."""

    def forwarder(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(method):

            async def forward_async(self: BackcompatClientFuture[Any], *args: Any, **kwargs: Any) -> Any:
                return await getattr(await self._awaited_client_async(), name)(*args, **kwargs)

            return _untracked(functools.wraps(method)(forward_async))

        def forward(self: BackcompatClientFuture[Any], *args: Any, **kwargs: Any) -> Any:
            return getattr(self._awaited_client(), name)(*args, **kwargs)

        return _untracked(functools.wraps(method)(forward))

    def decorate(cls: type) -> type:
        for klass in reversed(client_class.__mro__[:-1]):
            for name, member in vars(klass).items():
                if (name.startswith("_") and name != "__reduce__") or name in _OWN:
                    continue
                if isinstance(member, property):
                    setattr(cls, name, property(lambda self, _name=name: getattr(self._awaited_client(), _name)))
                elif inspect.isfunction(member):
                    setattr(cls, name, forwarder(name, member))
        return cls

    return decorate
