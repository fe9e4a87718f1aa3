"""The error taxonomy an SDK raises to its users, and the helpers that map responses and transport failures to it.

Shape and messages follow the Stainless-generated SDKs (``Error code: 404 - {body}``). Messages never carry
secrets: they name the status and the body, never request headers.

An error about a write (a request whose method is not GET/HEAD/OPTIONS: the requests that get an idempotency key)
says what happened to it: ``outcome`` is :func:`~pristine_transport.policy.write_outcome`'s verdict (``ran`` /
``did_not_run`` / ``may_have_run``) over every attempt the retry layer made (it leaves its verdict under
:data:`WRITE_OUTCOME` in the final response's extensions, or as ``write_outcome`` on the transport failure it
raises), and the message ends with the verdict and what to do next. ``outcome`` is None for a read.

Every error class of pristine_transport is defined here, also those beneath the taxonomy that its mechanisms raise
and map (:class:`ResponseTooLarge`, :class:`AttemptDeadlineError`, :class:`ProgressTimeoutError`) and the
manifest's :class:`ManifestError`; the modules that raise them re-export them under their old import paths.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
import msgspec

from pristine_transport.policy import Attempt, WriteOutcome, is_bare_400, write_outcome, write_outcome_advice

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AttemptDeadlineError",
    "AuthenticationError",
    "BadRequestError",
    "BillingError",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "DeadlineExceededError",
    "DeadlineKind",
    "FutureExpiredError",
    "FutureRetrieveError",
    "FutureTimeoutError",
    "InternalServerError",
    "ManifestError",
    "ManifestProblem",
    "NotFoundError",
    "PermissionDeniedError",
    "PristineError",
    "ProgressTimeoutError",
    "RateLimitError",
    "RequestCancelledError",
    "RequestCapacityError",
    "RequestErrorCategory",
    "RequestFailedError",
    "RequestRateLimitedError",
    "ResponseTooLarge",
    "ResponseTooLargeError",
    "TokenUnavailableError",
    "UnprocessableEntityError",
    "WRITE_OUTCOME",
    "error_for_closed_client",
    "error_for_response",
    "error_for_transport_exception",
    "failure_name",
]

_MAX_BODY_IN_MESSAGE = 2000

WRITE_OUTCOME = "pristine.write_outcome"
"""``request.extensions`` / ``response.extensions`` key: the :data:`~pristine_transport.policy.WriteOutcome` the
retry layer found over every attempt of a logical request it gave up on (set on the caller's request and on the
final response it hands back)."""

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class PristineError(Exception):
    """Root of every error raised by pristine_transport."""


class ConfigurationError(PristineError, ValueError):
    """A client was configured wrongly (a missing or malformed key, a bad base URL). The message says how to fix it."""


class APIError(PristineError):
    message: str
    request: httpx.Request
    body: object | None
    outcome: WriteOutcome | None = None
    """For an error about a write: whether it ran on the server (``ran`` / ``did_not_run`` / ``may_have_run``),
    also stated at the end of the message; None for a read."""

    def __init__(self, message: str, request: httpx.Request, *, body: object | None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.body = body

    def __reduce__(self) -> Any:  # requests hold no secrets once the error leaves the stack; keep it picklable
        status = getattr(self, "status_code", None)
        return (_rebuild_error, (type(self), self.message, self.body, status, self.outcome))


class APIStatusError(APIError):
    """A final non-success response."""

    response: httpx.Response
    status_code: int

    def __init__(self, message: str, *, response: httpx.Response, body: object | None) -> None:
        super().__init__(message, response.request, body=body)
        self.response = response
        self.status_code = response.status_code


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class TokenUnavailableError(AuthenticationError):
    """No usable credential: the token expired (or none was ever obtained) and obtaining a new one failed. The
    message names the cause (secrets masked); ``__cause__`` is the failure of the last attempt."""


class BillingError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class ConflictError(APIStatusError):
    pass


class UnprocessableEntityError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


class APIConnectionError(APIError):
    def __init__(self, *, request: httpx.Request, message: str = "Connection error.") -> None:
        super().__init__(message, request, body=None)


class ClientClosedError(APIConnectionError):
    """The client was closed while the request was on its way, or before it was sent: no answer will come. For a
    write, ``outcome`` is ``"may_have_run"`` (the request may have reached the server before the close)."""


class ResponseTooLargeError(APIError):
    """A response exceeded a size limit of its endpoint (``limit_name`` is the manifest field: ``max_response_bytes``
    or ``max_response_header_bytes``). Not retried: the same request would get the same answer."""

    def __init__(self, message: str, request: httpx.Request, *, limit_name: str, limit: int, endpoint: str) -> None:
        super().__init__(message, request, body=None)
        self.limit_name = limit_name
        self.limit = limit
        self.endpoint = endpoint


class APITimeoutError(APIConnectionError):
    def __init__(self, request: httpx.Request, message: str = "Request timed out.") -> None:
        super().__init__(request=request, message=message)


DeadlineKind = Literal["no_progress", "failed_attempts", "attempt"]


class DeadlineExceededError(APITimeoutError, TimeoutError):
    """A deadline passed. Says what was waited on, for how long, the last answer seen, and whether the work may
    have run (``may_have_run``); for a future, ``request_id`` retrieves it later."""

    def __init__(
        self,
        request: httpx.Request,
        *,
        waited_on: str,
        waited_s: float,
        deadline: DeadlineKind,
        last_seen: str,
        may_have_run: bool,
        request_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        what = {
            "no_progress": "made no progress",
            "failed_attempts": "kept failing while others succeed",
            "attempt": "did not finish its attempt",
        }[deadline]
        # A future id means the server accepted the work: it has run or will run, whatever the wait saw.
        outcome: WriteOutcome = "ran" if request_id is not None else "may_have_run" if may_have_run else "did_not_run"
        if outcome == "ran":
            ran = "the server accepted the work (it runs or has run): do not submit it again"
        else:
            ran = write_outcome_advice(outcome, what="the work")
        message = f"{waited_on} {what} for {waited_s:.1f} s; last answer: {last_seen}; {ran}"
        if request_id is not None:
            message += f"; its result may still be retrieved with request_id={request_id!r}"
        if detail:
            message += f" ({detail})"
        super().__init__(request, message)
        self.waited_on = waited_on
        self.waited_s = waited_s
        self.deadline: DeadlineKind = deadline
        self.last_seen = last_seen
        self.outcome: WriteOutcome = outcome
        self.request_id = request_id

    @property
    def may_have_run(self) -> bool:
        """False only when the work surely did not run (``outcome == "did_not_run"``)."""
        return self.outcome != "did_not_run"

    def __reduce__(self) -> Any:
        return (_rebuild_deadline_error, (self.request.method, str(self.request.url), self.__dict__.copy()))


def _rebuild_deadline_error(method: str, url: str, state: dict[str, Any]) -> DeadlineExceededError:
    error = DeadlineExceededError.__new__(DeadlineExceededError)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    error.request = httpx.Request(method, url)
    return error


# Beneath the taxonomy: what the layers raise inside the stack, as httpx exceptions the retry layer classifies,
# mapped to the taxonomy by error_for_transport_exception.


class ResponseTooLarge(httpx.DecodingError):
    """A response exceeded a size limit of its endpoint (raised by the boundary while reading). Not a transport
    error: re-sending would get the same answer, so no retry layer re-sends it; it surfaces as
    :class:`ResponseTooLargeError`."""

    def __init__(self, message: str, *, request: httpx.Request, limit_name: str, limit: int, endpoint: str) -> None:
        super().__init__(message, request=request)
        self.limit_name = limit_name
        self.limit = limit
        self.endpoint = endpoint


class AttemptDeadlineError(httpx.TimeoutException):
    """One attempt (headers and body) outlived its whole-attempt deadline; retried like any timeout."""


class ProgressTimeoutError(httpx.TimeoutException):
    """No request of a retry policy made progress for ``timeout_s`` seconds (raised by the retry layer, beneath
    the taxonomy: :func:`error_for_transport_exception` maps it to an :class:`APITimeoutError`)."""

    def __init__(self, timeout_s: float, request: httpx.Request) -> None:
        super().__init__(f"No progress made in {timeout_s:g}s. Requests appear to be stuck.", request=request)
        self.timeout_s = timeout_s


class APIResponseValidationError(APIError):
    response: httpx.Response
    status_code: int

    def __init__(
        self,
        response: httpx.Response,
        body: object | None,
        *,
        message: str = "Data returned by API invalid for expected schema.",
    ) -> None:
        super().__init__(message, response.request, body=body)
        self.response = response
        self.status_code = response.status_code


# A manifest that does not load (pristine_transport.manifest raises it).


class ManifestProblem(str):
    """One problem of a manifest. It reads as ``"json.path: what is wrong"``; ``path`` and ``detail`` are its two
    halves and ``hint`` says how to fix it (the keys known at that place, the names defined), or is None."""

    path: str
    detail: str
    hint: str | None

    def __new__(cls, text: str, hint: str | None = None) -> ManifestProblem:
        problem = super().__new__(cls, text)
        problem.path, _, problem.detail = text.partition(": ")
        problem.hint = hint
        return problem


class ManifestError(ValueError):
    """A manifest failed to load. ``problems`` holds every problem found, each a :class:`ManifestProblem` (a
    ``"json.path: what is wrong"`` line, with its hint when there is one)."""

    def __init__(self, problems: list[str], source: str = "manifest") -> None:
        self.problems = [p if isinstance(p, ManifestProblem) else ManifestProblem(p) for p in problems]
        self.source = source
        listing = "\n".join(f"  - {p}" + (f"\n    hint: {p.hint}" if p.hint else "") for p in self.problems)
        super().__init__(f"{source} is invalid ({len(problems)} problem{'s' * (len(problems) != 1)}):\n{listing}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (ManifestError, (self.problems, self.source))


# The failures of a future (pristine_transport.futures raises them): the server's own verdict on a request it
# accepted, or the poll that could not go on.

RequestErrorCategory = Literal["user", "server", "unknown"]


class RequestFailedError(PristineError):
    """The server ran the request and reports that it failed. ``category`` tells whose fault it was; ``outcome``
    (also at the end of the message) is ``"ran"``: it reached execution on the server."""

    outcome: WriteOutcome = "ran"
    _ended = "it ran on the server and failed there"

    def __init__(self, message: str, *, request_id: str, category: RequestErrorCategory = "unknown") -> None:
        if not message.endswith(self._ended):
            message = f"{message}; {self._ended}"
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.category: RequestErrorCategory = category


class RequestRateLimitedError(RequestFailedError):
    """A failed request whose message names a rate or concurrency limit (the manifest's ``rate_limit_patterns``):
    wait or lower the concurrency, then send it again."""


class RequestCapacityError(RequestFailedError):
    """A failed request whose message says the service is out of capacity (``capacity_patterns``): retry later."""


class RequestCancelledError(RequestFailedError):
    """A failed request whose message says it was cancelled at the client's request (``cancelled_patterns``): its
    work was abandoned on purpose, so there is no result to wait for; send it again if it is still wanted."""

    outcome: WriteOutcome = "may_have_run"
    _ended = "the server abandoned it, whether or not it had started running"


class FutureExpiredError(PristineError):
    """The server no longer has this future's result. The request behind it ran (a server only issues a future
    for work it accepted), so ``outcome`` is ``"ran"``: submitting it again runs it a second time."""

    outcome: WriteOutcome = "ran"

    def __init__(
        self, request_id: str, status_code: int, *, request_type: str | None = None, changes_state: bool = False
    ) -> None:
        what = f"the {request_type} request" if request_type else "the request"
        advice = write_outcome_advice("ran", what=what, future_expired=True, changes_state=changes_state)
        super().__init__(f"Future {request_id} expired (HTTP {status_code}): {advice}.")
        self.request_id = request_id
        self.status_code = status_code
        self.request_type = request_type
        self.changes_state = changes_state

    def __reduce__(self) -> Any:
        return (
            _rebuild_expired,
            (self.request_id, self.status_code, self.request_type, self.changes_state),
        )


def _rebuild_expired(
    request_id: str, status_code: int, request_type: str | None, changes_state: bool
) -> FutureExpiredError:
    return FutureExpiredError(request_id, status_code, request_type=request_type, changes_state=changes_state)


class FutureRetrieveError(PristineError, ValueError):
    """Polling cannot go on: a fatal status, too many bare 400s, or a result that does not match its type. The
    server accepted the request (it answered with a future), so ``outcome`` is ``"ran"``, also said in the message."""

    outcome: WriteOutcome = "ran"
    _accepted = "the server accepted the request (it runs or has run): do not submit it again"

    def __init__(
        self, message: str, *, request_id: str, status_code: int | None = None, body: object | None = None
    ) -> None:
        if not message.endswith(self._accepted):
            message = f"{message}; {self._accepted}"
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.status_code = status_code
        self.body = body


class FutureTimeoutError(TimeoutError):
    """A deadline passed before the future resolved. Raised by the handle's ``deadline_s`` (polling stopped) and
    by a wait's own ``timeout`` (only that wait gave up)."""

    def __init__(self, request_id: str, timeout_s: float, *, polling_stopped: bool) -> None:
        what = "polling stopped" if polling_stopped else "the future is still being polled"
        super().__init__(f"Future {request_id} did not resolve within {timeout_s:g} s ({what}).")
        self.request_id = request_id
        self.timeout_s = timeout_s
        self.polling_stopped = polling_stopped


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: BillingError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_for_response(response: httpx.Response) -> APIStatusError:
    """The taxonomy error for a final non-2xx response. The response body must already be read."""
    text = response.text
    body: object | None
    try:
        body = msgspec.json.decode(response.content) if response.content else None
    except msgspec.DecodeError:
        body = text or None
    status = response.status_code
    message = f"Error code: {status}" if body is None else f"Error code: {status} - {body_excerpt(text)}"
    cls = InternalServerError if status >= 500 else _STATUS_CLASSES.get(status, APIStatusError)
    outcome = _outcome_of_response(response)
    if outcome is not None:
        refused_with = status if 400 <= status < 500 else None
        message = f"{message}; {_advice(response.request, outcome, refused_with)}"
    error = cls(message, response=response, body=body)
    error.outcome = outcome
    return error


def _outcome_of_response(response: httpx.Response) -> WriteOutcome | None:
    """The retry layer's verdict over every attempt; without one (no retry layer), this one answer's."""
    request = response.request
    if request.method in _READ_METHODS:
        return None
    found = response.extensions.get(WRITE_OUTCOME) or request.extensions.get(WRITE_OUTCOME)
    if found is not None:
        return found  # type: ignore[no-any-return]
    status = response.status_code
    bare = response.is_closed and is_bare_400(status, response.content)
    return write_outcome([Attempt(status=status, bare=bare)])


def _outcome_of_failure(exc: Exception, request: httpx.Request) -> WriteOutcome | None:
    """A transport failure of a write: the retry layer's verdict, else this one failure's."""
    if request.method in _READ_METHODS:
        return None
    found = getattr(exc, "write_outcome", None) or request.extensions.get(WRITE_OUTCOME)
    return found if found is not None else write_outcome([Attempt(failure=failure_name(exc))])


def _advice(request: httpx.Request, outcome: WriteOutcome, refused_with: int | None = None) -> str:
    return write_outcome_advice(outcome, what=f"{request.method} {request.url.path}", refused_with=refused_with)


def body_excerpt(text: str) -> str:
    """A response body as shown in an error message: cut after ``_MAX_BODY_IN_MESSAGE`` characters."""
    return text if len(text) <= _MAX_BODY_IN_MESSAGE else text[:_MAX_BODY_IN_MESSAGE] + "…"


def error_for_transport_exception(exc: Exception, request: httpx.Request) -> APIConnectionError | ResponseTooLargeError:
    """Map an httpx transport failure to ``APITimeoutError`` / ``APIConnectionError``, a response over its
    endpoint's size limit to ``ResponseTooLargeError``."""
    if isinstance(exc, ResponseTooLarge):
        return ResponseTooLargeError(
            str(exc), exc.request, limit_name=exc.limit_name, limit=exc.limit, endpoint=exc.endpoint
        )
    outcome = _outcome_of_failure(exc, request)
    error: APIConnectionError
    if isinstance(exc, ProgressTimeoutError):
        error = APITimeoutError(request, _with_advice(str(exc), request, outcome))
    else:
        failure = _actual_failure(exc)
        if failure is exc and isinstance(exc, httpx.TimeoutException):
            error = APITimeoutError(request, _with_advice("Request timed out.", request, outcome))
        else:
            detail = str(failure) or type(failure).__name__
            message = _with_advice(f"Connection error: {detail}", request, outcome)
            error = APIConnectionError(request=request, message=message)
    error.outcome = outcome
    return error


def error_for_closed_client(request: httpx.Request) -> ClientClosedError:
    """The error of a request its client's closing cut off (the backend then raises a plain ``RuntimeError``)."""
    outcome: WriteOutcome | None = None if request.method in _READ_METHODS else "may_have_run"
    message = _with_advice("The client was closed before this request got its answer", request, outcome)
    error = ClientClosedError(request=request, message=message)
    error.outcome = outcome
    return error


def _with_advice(message: str, request: httpx.Request, outcome: WriteOutcome | None) -> str:
    return message if outcome is None else f"{message}; {_advice(request, outcome)}"


def failure_name(exc: BaseException) -> str:
    """The class name of a transport failure: the backend's own failure type the boundary recorded, or the class
    of its cause when it was reported as a timeout (see below)."""
    recorded = getattr(exc, "failure_type", None)
    if isinstance(recorded, str):
        return recorded
    return type(_actual_failure(exc)).__name__


def _actual_failure(exc: BaseException) -> BaseException:
    """``exc``, or its cause when a base transport reported another failure as a timeout (httpx-aiohttp turns a
    server disconnect into ``ConnectTimeout``)."""
    cause = exc.__cause__
    if isinstance(exc, httpx.TimeoutException) and cause is not None and not _is_timeout(cause):
        return cause
    return exc


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__


def _rebuild_error(
    cls: type[APIError], message: str, body: object | None, status: int | None, outcome: WriteOutcome | None = None
) -> APIError:
    request = httpx.Request("GET", "http://unpickled.invalid/")
    err = cls.__new__(cls)
    PristineError.__init__(err, message)
    err.message, err.request, err.body, err.outcome = message, request, body, outcome
    if status is not None:
        err.status_code = status  # type: ignore[attr-defined]
    return err
