"""The official SDK's exception names (``tinker-wire.md`` §9), backed by pristine_transport's taxonomy."""

from pristine_transport.errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BillingError,
    ConfigurationError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    PristineError,
    RateLimitError,
    UnprocessableEntityError,
)
from pristine_transport.futures import (
    FutureExpiredError,
    FutureRetrieveError,
    FutureTimeoutError,
    RequestCapacityError,
    RequestFailedError,
    RequestRateLimitedError,
)

TinkerError = PristineError
"""Root of every tinkex error (the official ``tinker.TinkerError``)."""

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
    "FutureExpiredError",
    "FutureRetrieveError",
    "FutureTimeoutError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestCapacityError",
    "RequestFailedError",
    "RequestRateLimitedError",
    "TinkerError",
    "UnprocessableEntityError",
]
