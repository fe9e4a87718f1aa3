"""The error taxonomy an SDK raises to its users, and the helpers that map responses and transport failures to it.

Shape and messages follow the Stainless-generated SDKs (``Error code: 404 - {body}``). Messages never carry
secrets: they name the status and the body, never request headers.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BillingError",
    "ConfigurationError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "PristineError",
    "RateLimitError",
    "ResponseTooLargeError",
    "UnprocessableEntityError",
    "error_for_response",
    "error_for_transport_exception",
    "failure_name",
]

_MAX_BODY_IN_MESSAGE = 2000


class PristineError(Exception):
    """Root of every error raised by pristine_transport."""


class ConfigurationError(PristineError, ValueError):
    """A client was configured wrongly (a missing or malformed key, a bad base URL). The message says how to fix it."""


class APIError(PristineError):
    message: str
    request: httpx.Request
    body: object | None

    def __init__(self, message: str, request: httpx.Request, *, body: object | None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.body = body

    def __reduce__(self) -> Any:  # requests hold no secrets once the error leaves the stack; keep it picklable
        return (_rebuild_error, (type(self), self.message, self.body, getattr(self, "status_code", None)))


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
    return cls(message, response=response, body=body)


def body_excerpt(text: str) -> str:
    """A response body as shown in an error message: cut after ``_MAX_BODY_IN_MESSAGE`` characters."""
    return text if len(text) <= _MAX_BODY_IN_MESSAGE else text[:_MAX_BODY_IN_MESSAGE] + "…"


def error_for_transport_exception(exc: Exception, request: httpx.Request) -> APIConnectionError | ResponseTooLargeError:
    """Map an httpx transport failure to ``APITimeoutError`` / ``APIConnectionError``, a response over its
    endpoint's size limit to ``ResponseTooLargeError``."""
    from .boundary import ResponseTooLarge
    from .layers.retry import ProgressTimeoutError

    if isinstance(exc, ResponseTooLarge):
        return ResponseTooLargeError(
            str(exc), exc.request, limit_name=exc.limit_name, limit=exc.limit, endpoint=exc.endpoint
        )
    if isinstance(exc, ProgressTimeoutError):
        return APITimeoutError(request, str(exc))
    failure = _actual_failure(exc)
    if failure is exc and isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(request)
    detail = str(failure) or type(failure).__name__
    return APIConnectionError(request=request, message=f"Connection error: {detail}")


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


def _rebuild_error(cls: type[APIError], message: str, body: object | None, status: int | None) -> APIError:
    request = httpx.Request("GET", "http://unpickled.invalid/")
    err = cls.__new__(cls)
    PristineError.__init__(err, message)
    err.message, err.request, err.body = message, request, body
    if status is not None:
        err.status_code = status  # type: ignore[attr-defined]
    return err
