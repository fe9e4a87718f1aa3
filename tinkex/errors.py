"""The official SDK's exception names (``tinker-wire.md`` §9), backed by pristine_transport's taxonomy.

``TinkerError`` is the root of every error the transport and the futures raise, with the official hierarchy
under it (``APIError`` > ``APIStatusError`` > ``BadRequestError``, ..., ``RequestFailedError``). The 0.16
sidecar errors and 0.38's ``ExperimentalWarning`` are here so code that names them keeps importing.

tinkex's own, all under ``TinkerError`` too: ``DeadlineExceededError`` (a bound of docs/deadlines.md passed; also an
``APITimeoutError`` and a built-in ``TimeoutError``), ``InFlightAtForkError`` (a call in flight in the parent when
the process forked) and ``RequestCancelledError`` (a ``RequestFailedError`` whose request was cancelled on purpose,
e.g. a sample whose caller cancelled it).
"""

from pristine_transport.deadlines import DeadlineExceededError
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
    ResponseTooLargeError,
    UnprocessableEntityError,
)
from pristine_transport.futures import (
    FutureExpiredError,
    FutureRetrieveError,
    FutureTimeoutError,
    RequestCancelledError,
    RequestCapacityError,
    RequestFailedError,
    RequestRateLimitedError,
)

from .runtime import InFlightAtForkError
from .validation import InvalidArgumentError

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
    "DeadlineExceededError",
    "ExperimentalWarning",
    "FutureExpiredError",
    "FutureRetrieveError",
    "FutureTimeoutError",
    "InFlightAtForkError",
    "InvalidArgumentError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestCancelledError",
    "RequestCapacityError",
    "RequestFailedError",
    "RequestRateLimitedError",
    "ResponseTooLargeError",
    "SidecarDiedError",
    "SidecarError",
    "SidecarIPCError",
    "SidecarStartupError",
    "TinkerError",
    "UnprocessableEntityError",
]
