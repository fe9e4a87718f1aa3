"""One INTERNAL span per public client call, from the call until its result is known.

``TrainingClient.forward_backward`` then ``TrainingClient.optim_step`` are a training step; ``SamplingClient.sample``
is one sample. The span is named as the call's ``x-sdk-method`` (:mod:`tinkex.sdk_method` opens it, for the
outermost public call only) and is current while the method runs, so what the call sends is its child: each logical
request's INTERNAL span (named after its endpoint, with ``tinker.seq_id``) with its CLIENT spans, and each future's
span with its polls. It ends when the result is known: at return, or, when the call returns a future, once that
future settles (it settles whether or not anyone awaits it). A failure sets the status to ERROR with the
exception's type (the error's message is recorded with it; tinkex's messages carry no secrets); a cancelled call
is marked ``tinker.cancelled``, not failed.

Attributes: ``tinker.model_id`` (training clients), ``tinker.sampling_session_id`` (sampling clients).

Made only when tracing is on: the client's ``tracer_provider``, else a configured global provider. Otherwise a call
costs one dictionary read here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from pristine_transport.layers.telemetry import Telemetry as TracerLookup

from .api_future import APIFuture

__all__ = [
    "CANCELLED_ATTRIBUTE",
    "MODEL_ID_ATTRIBUTE",
    "SAMPLING_SESSION_ID_ATTRIBUTE",
    "SEQ_ID_ATTRIBUTE",
    "TRACER_NAME",
    "CallSpan",
    "start_call_span",
]

TRACER_NAME = "tinkex"
MODEL_ID_ATTRIBUTE = "tinker.model_id"
SAMPLING_SESSION_ID_ATTRIBUTE = "tinker.sampling_session_id"
SEQ_ID_ATTRIBUTE = "tinker.seq_id"
"""On the spans of a training or sampling request and its future (set by the clients)."""
CANCELLED_ATTRIBUTE = "tinker.cancelled"

_GLOBAL = TracerLookup(tracer_name=TRACER_NAME)
_CANCELLED = (asyncio.CancelledError, concurrent.futures.CancelledError)
_ID_ATTRIBUTES = (("model_id", MODEL_ID_ATTRIBUTE), ("sampling_session_id", SAMPLING_SESSION_ID_ATTRIBUTE))


class CallSpan:
    """The span of one call, current from :func:`start_call_span` until :meth:`returned` or :meth:`failed`."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._token = context.attach(trace.set_span_in_context(span))

    def returned(self, value: Any) -> None:
        """The call returned ``value``: the span ends now, or when ``value``, a future, settles."""
        context.detach(self._token)
        if isinstance(value, APIFuture):
            value.future().add_done_callback(self._settled)
        elif isinstance(value, concurrent.futures.Future):
            value.add_done_callback(self._settled)
        else:
            self._end(None)

    def failed(self, error: BaseException) -> None:
        context.detach(self._token)
        self._end(error)

    def _settled(self, future: concurrent.futures.Future[Any]) -> None:
        self._end(concurrent.futures.CancelledError() if future.cancelled() else future.exception())

    def _end(self, error: BaseException | None) -> None:
        span = self._span
        if isinstance(error, _CANCELLED):  # the caller's choice, not a failure
            span.set_attribute(CANCELLED_ATTRIBUTE, True)
        elif error is not None:
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.record_exception(error)
        span.end()


def start_call_span(client: object, name: str) -> CallSpan | None:
    """The span of ``client``'s public call ``name``, made current; ``None`` when tracing is off."""
    # The instance's own attributes only: a client's future used as the client would wait for the client on any
    # other attribute lookup.
    own: dict[str, Any] = getattr(client, "__dict__", {})
    holder = own.get("holder") or own.get("_holder")
    lookup: TracerLookup = holder.tracing if holder is not None else _GLOBAL
    tracer = lookup.tracer()
    if tracer is None:
        return None
    resolved = own.get("_client")  # a client's future used as the client, once the client is there
    ids = vars(resolved) if resolved is not None else own
    attributes = {attribute: ids[field] for field, attribute in _ID_ATTRIBUTES if isinstance(ids.get(field), str)}
    return CallSpan(tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes))
