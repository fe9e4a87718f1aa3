"""The official SDK's exception names (``tinker-wire.md`` §9), backed by pristine_transport's taxonomy.

``TinkerError`` is the root of every error the transport and the futures raise, with the official hierarchy
under it (``APIError`` > ``APIStatusError`` > ``BadRequestError``, ..., ``RequestFailedError``). The 0.16
sidecar errors and 0.38's ``ExperimentalWarning`` are here so code that names them keeps importing.
"""

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


class SidecarError(TinkerError):
    """0.16.1's subprocess-sampling failures. tinkex samples in-process (no sidecar), so it never raises these;
    they exist so code written for 0.16 that catches them still imports and runs."""


class SidecarStartupError(SidecarError):
    """0.16.1: the sampling subprocess failed to start (never raised by tinkex)."""


class SidecarDiedError(SidecarError):
    """0.16.1: the sampling subprocess exited with requests pending (never raised by tinkex)."""


class SidecarIPCError(SidecarError):
    """0.16.1: talking to the sampling subprocess failed (never raised by tinkex)."""


class ExperimentalWarning(FutureWarning):
    """Warned when an API that may change or go away in any release is called (0.38). A ``FutureWarning``, so
    it is shown by default; silence it with ``warnings.filterwarnings("ignore", category=ExperimentalWarning)``."""

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
    "ExperimentalWarning",
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
    "SidecarDiedError",
    "SidecarError",
    "SidecarIPCError",
    "SidecarStartupError",
    "TinkerError",
    "UnprocessableEntityError",
]
