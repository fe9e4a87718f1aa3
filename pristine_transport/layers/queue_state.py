"""QueueStateLayer: tells a request's observer what the server says about its queue.

The server reports queue state in the small JSON bodies of "not yet" answers: a 408, or a 2xx "try again" body.
The layer reads only those bodies, notifies the observer attached to the request (``extensions.QUEUE_OBSERVER``)
and records a span event. It never alters the response: a body it read stays readable by the caller.

What the states are is the API's business: the manifest lists them (``futures.queue_states``) and the SDK on top
gives them meaning. The layer reports a state as its lowercased string, ``"unknown"`` when the body has none that
is a string or one outside the listed states.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any, Protocol, runtime_checkable

import httpx
import msgspec
from opentelemetry import trace

from pristine_transport import extensions
from pristine_transport.layers.header_list import find_header
from pristine_transport.layers.response_io import read_or_close
from pristine_transport.manifest import MatchSpec

__all__ = ["UNKNOWN_STATE", "QueueStateLayer", "QueueStateObserver", "parse_queue_state"]

logger = logging.getLogger("pristine_transport.queue_state")


UNKNOWN_STATE = "unknown"
"""The state reported when the body has none that is a string, or one the API does not list."""


@runtime_checkable
class QueueStateObserver(Protocol):
    def on_queue_state_change(self, state: str, reason: str | None) -> None: ...


def parse_queue_state(
    body: Mapping[str, Any],
    *,
    state_field: str = "queue_state",
    reason_field: str = "queue_state_reason",
    states: Collection[str] = (),
) -> tuple[str, str | None]:
    """The queue state (lowercased) and reason of a response body. A missing state, or one outside ``states``
    (when given), is :data:`UNKNOWN_STATE`."""
    return _coerce(body.get(state_field), body.get(reason_field), frozenset(states))


def _coerce(raw_state: object, raw_reason: object, states: frozenset[str]) -> tuple[str, str | None]:
    state = UNKNOWN_STATE
    if isinstance(raw_state, str):
        lowered = raw_state.lower()
        if not states or lowered in states:
            state = lowered
    reason = raw_reason if isinstance(raw_reason, str) else None
    return state, reason


_ABSENT: Any = msgspec.UNSET


class QueueStateLayer(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        try_again: MatchSpec | None = None,
        statuses: Collection[int] = (408,),
        state_field: str = "queue_state",
        reason_field: str = "queue_state_reason",
        states: Collection[str] = (),
    ) -> None:
        self._inner = inner
        self._states = frozenset(states)
        self._try_again = try_again
        self._statuses = frozenset(statuses)
        # Decoding into a Struct of only the fields we look at skips everything else without building it, so a
        # large 2xx result costs one pass and no allocations when it turns out not to be a try-again body.
        fields: list[tuple[str, Any, Any]] = [
            ("state", Any, msgspec.field(name=state_field, default=_ABSENT)),
            ("reason", Any, msgspec.field(name=reason_field, default=_ABSENT)),
        ]
        if try_again is not None:
            if try_again.field in (state_field, reason_field):
                raise ValueError(f"try_again.field {try_again.field!r} must differ from the queue state fields")
            fields.append(("marker", Any, msgspec.field(name=try_again.field, default=_ABSENT)))
        self._probe: type[msgspec.Struct] = msgspec.defstruct("QueueStateProbe", fields)
        self._decoder = msgspec.json.Decoder(self._probe)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if self._is_candidate(response):
            if not response.is_closed:
                await read_or_close(response)
            self._report(request, response)
        return response

    def _is_candidate(self, response: httpx.Response) -> bool:
        status = response.status_code
        if status not in self._statuses and not (self._try_again is not None and 200 <= status < 300):
            return False
        content_type = find_header(response.headers, "content-type")
        return content_type is not None and b"json" in content_type.lower()

    def _report(self, request: httpx.Request, response: httpx.Response) -> None:
        try:
            probe: Any = self._decoder.decode(response.content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            logger.debug("%d body of %s is not a JSON object; no queue state", response.status_code, request.url.path)
            return
        try_again = self._try_again
        if response.status_code not in self._statuses and (try_again is None or probe.marker != try_again.value):
            return
        telemetry = request.extensions.get(extensions.TELEMETRY)
        if telemetry is not None:
            telemetry.not_ready = True  # a poll's "not yet": the telemetry layer may make it an event
        if probe.state is _ABSENT and probe.reason is _ABSENT:
            return  # the server said nothing about its queue
        state, reason = _coerce(probe.state, probe.reason, self._states)
        event: dict[str, str] = {"queue.state": state}
        if reason is not None:
            event["queue.state_reason"] = reason
        if telemetry is not None and telemetry.exchanges is not None:
            telemetry.queue_state = event  # goes into the poll's one event
        else:
            trace.get_current_span().add_event("queue_state", event)
        observer = request.extensions.get(extensions.QUEUE_OBSERVER)
        if observer is None:
            return
        try:
            observer.on_queue_state_change(state, reason)
        except Exception:
            logger.warning("queue state observer %r failed; ignored", type(observer).__name__, exc_info=True)

    async def aclose(self) -> None:
        await self._inner.aclose()


