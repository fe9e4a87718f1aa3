"""One poll of a future: its state, the request it sends, and the errors a poll can end in.

The resolver (:mod:`pristine_transport.futures`) keeps one :class:`PollState` per future and builds every poll and
every error from it here, so what goes on the wire and what an error says are readable apart from the loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from pristine_transport.errors import (
    FutureRetrieveError,
    RequestCancelledError,
    RequestCapacityError,
    RequestFailedError,
    RequestRateLimitedError,
    body_excerpt,
)
from pristine_transport.manifest import FuturePollHeaders, FuturesSpec, ResultFormatSpec
from pristine_transport.policy import Deadlines, FailureKind, PollBodyVerdict, PollStreaks
from pristine_transport.redaction import Redactor

__all__ = [
    "PollState",
    "bad_metadata_error",
    "poll_deadlines",
    "poll_request_body",
    "poll_request_headers",
    "request_failed_error",
    "status_error",
]

_FAILURE_ERRORS: Mapping[FailureKind, type[RequestFailedError]] = {
    "failed": RequestFailedError,
    "cancelled": RequestCancelledError,
    "rate_limited": RequestRateLimitedError,
    "capacity": RequestCapacityError,
}
"""The error raised for each failure :func:`~pristine_transport.policy.poll_body_verdict` names."""


class PollState:
    """Mutable state of one future's polling."""

    def __init__(
        self,
        request_id: str,
        request_type: str | None,
        roundtrip_s: float,
        result_formats: Sequence[ResultFormatSpec] = (),
        warn_after_s: float | None = None,
    ) -> None:
        self.request_id = request_id
        self.request_type = request_type
        self.roundtrip_s = roundtrip_s
        self.result_formats = tuple(result_formats)
        self.iteration = 0
        self.allow_metadata_only = True
        self.held_bytes = 0
        self.streaks = PollStreaks()
        """Answers of one kind in a row, as :func:`~pristine_transport.policy.next_poll` counts them."""
        self.last_answer = "no answer yet"
        self.last_progress = 0.0
        """When the work was last seen moving (the no-progress deadline counts from it)."""
        self.warn_at = warn_after_s
        """The future's age at which the next "still unresolved" WARNING is due; None: no warnings."""


def poll_deadlines(deadlines: Deadlines, state: PollState, now: float) -> Deadlines:
    """The deadlines one poll sent at ``now`` carries: the future's, its no-progress deadline cut to what is left of
    it, so one poll cannot outlast the future's own deadline (at least 1 ms, so the poll is still sent)."""
    if deadlines.no_progress_s is None:
        return deadlines
    remaining = max(state.last_progress + deadlines.no_progress_s - now, 0.001)
    return dataclasses.replace(deadlines, no_progress_s=remaining)


def poll_request_body(spec: FuturesSpec, state: PollState) -> dict[str, Any]:
    """A poll's JSON body: the request id, and whether a metadata-only reply is still welcome."""
    body: dict[str, Any] = {spec.request_id_field: state.request_id}
    if spec.allow_metadata_only_field is not None:
        body[spec.allow_metadata_only_field] = state.allow_metadata_only
    return body


def poll_request_headers(names: FuturePollHeaders, state: PollState) -> dict[str, str]:
    """A poll's headers: the iteration, the request type, the asked-for result formats, and on the first poll the
    submit's roundtrip."""
    headers: dict[str, str] = {}
    if names.iteration is not None:
        headers[names.iteration] = str(state.iteration)
    if names.request_type is not None and state.request_type is not None:
        headers[names.request_type] = state.request_type
    if state.result_formats:
        headers["Accept"] = ", ".join(result_format.content_type for result_format in state.result_formats)
    if names.roundtrip is not None and state.iteration == 0:
        headers[names.roundtrip] = repr(state.roundtrip_s)
    return headers


def bad_metadata_error(spec: FuturesSpec, state: PollState, body: Any) -> FutureRetrieveError:
    """A metadata-only reply whose size field is missing or not a byte count."""
    size_field = spec.metadata_only.size_field if spec.metadata_only is not None else "size"
    return FutureRetrieveError(
        f"Error retrieving result for request {state.request_id}: metadata-only reply has no valid "
        f"{size_field!r} (got {body.get(size_field)!r})",
        request_id=state.request_id,
        status_code=200,
        body=body,
    )


def request_failed_error(spec: FuturesSpec, state: PollState, body: Any, answer: PollBodyVerdict) -> RequestFailedError:
    """The server's failure report, as the error class the verdict's failure kind names."""
    reported = str(body.get(spec.failure.field))
    message = f"Request failed: {reported} for request_id={state.request_id}"
    return _FAILURE_ERRORS[answer.failure](message, request_id=state.request_id, category=answer.category)


def status_error(redactor: Redactor, state: PollState, status: int, content: bytes, why: str) -> FutureRetrieveError:
    """A poll status that ends the future (``why`` says which rule), with its body redacted and excerpted."""
    text = redactor.text(body_excerpt(content.decode("utf-8", errors="replace")))
    try:
        body: object = msgspec.json.decode(content) if content else None
    except msgspec.DecodeError:
        body = text
    return FutureRetrieveError(
        f"Error retrieving result for request {state.request_id} ({why}): HTTP {status} - {text or '<empty>'}",
        request_id=state.request_id,
        status_code=status,
        body=body,
    )
