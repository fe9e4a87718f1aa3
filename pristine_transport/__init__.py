"""pristine_transport: manifest-driven HTTP middleware for httpx.

A JSON manifest describes an API (endpoints, pools, retry policies, headers, futures, sessions, events). Every
cross-cutting feature is an ``httpx.AsyncBaseTransport`` layer; :func:`build_transport` assembles one stack per
endpoint behind a :class:`RouterTransport` that any ``httpx.AsyncClient`` can carry, and :class:`ManifestClient`
adds call-by-endpoint helpers on top.
"""

from pristine_transport import extensions
from pristine_transport.boundary import BoundaryTransport, ResponseLimits
from pristine_transport.client import EventStream, ManifestClient
from pristine_transport.deadlines import DeadlineExceededError, deadlines
from pristine_transport.errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BillingError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    PristineError,
    RateLimitError,
    ResponseTooLargeError,
    UnprocessableEntityError,
    error_for_response,
    error_for_transport_exception,
)
from pristine_transport.events import EventReporter
from pristine_transport.futures import (
    CombinedHandle,
    FutureExpiredError,
    FutureHandle,
    FutureOutcome,
    FutureResolver,
    FutureRetrieveError,
    FutureTimeoutError,
    RequestCapacityError,
    RequestFailedError,
    RequestRateLimitedError,
    combine,
)
from pristine_transport.layers.backoff_window import BackoffWindow
from pristine_transport.layers.backpressure import BackpressureLayer
from pristine_transport.layers.headers import HeadersLayer, resolve_headers
from pristine_transport.layers.idempotency import IdempotencyLayer
from pristine_transport.layers.pool_limiter import BytesSemaphore, PoolLimiter, PoolLimiterLayer
from pristine_transport.layers.queue_state import QueueStateLayer, QueueStateObserver
from pristine_transport.layers.retry import ProgressTimeoutError, ProgressTracker, RetryEvent, RetryHook, RetryLayer
from pristine_transport.layers.telemetry import AttemptTelemetryLayer, TelemetryLayer
from pristine_transport.logs import SecretMaskingFilter, configure_logging, get_logger
from pristine_transport.manifest import Manifest, ManifestError, load_manifest
from pristine_transport.policy import Deadlines, RetryBudget, RetryQuota
from pristine_transport.redaction import Redactor
from pristine_transport.request import (
    NOT_GIVEN,
    NotGiven,
    Omit,
    encode_query,
    json_body,
    merge_body,
    merge_headers,
    omit,
)
from pristine_transport.retry_quota import disable_retry_quota, enable_retry_quota
from pristine_transport.session import BackgroundHeartbeat, SessionLifecycle, run_heartbeat
from pristine_transport.sse import ServerSentEvent, SSEDecoder, aiter_sse
from pristine_transport.stack import RouterTransport, build_transport

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AttemptTelemetryLayer",
    "AuthenticationError",
    "BackgroundHeartbeat",
    "BackoffWindow",
    "BackpressureLayer",
    "BadRequestError",
    "BillingError",
    "ClientClosedError",
    "BoundaryTransport",
    "BytesSemaphore",
    "CombinedHandle",
    "ConfigurationError",
    "ConflictError",
    "DeadlineExceededError",
    "Deadlines",
    "EventReporter",
    "EventStream",
    "FutureExpiredError",
    "FutureHandle",
    "FutureOutcome",
    "FutureResolver",
    "FutureRetrieveError",
    "FutureTimeoutError",
    "HeadersLayer",
    "IdempotencyLayer",
    "InternalServerError",
    "Manifest",
    "ManifestClient",
    "ManifestError",
    "NOT_GIVEN",
    "NotFoundError",
    "NotGiven",
    "Omit",
    "PermissionDeniedError",
    "PoolLimiter",
    "PoolLimiterLayer",
    "PristineError",
    "ProgressTimeoutError",
    "ProgressTracker",
    "QueueStateLayer",
    "QueueStateObserver",
    "RateLimitError",
    "Redactor",
    "RequestCapacityError",
    "RequestFailedError",
    "RequestRateLimitedError",
    "ResponseLimits",
    "ResponseTooLargeError",
    "RetryBudget",
    "RetryEvent",
    "RetryHook",
    "RetryLayer",
    "RetryQuota",
    "RouterTransport",
    "SSEDecoder",
    "SecretMaskingFilter",
    "ServerSentEvent",
    "SessionLifecycle",
    "TelemetryLayer",
    "UnprocessableEntityError",
    "aiter_sse",
    "build_transport",
    "combine",
    "configure_logging",
    "deadlines",
    "disable_retry_quota",
    "enable_retry_quota",
    "encode_query",
    "error_for_response",
    "error_for_transport_exception",
    "extensions",
    "get_logger",
    "json_body",
    "load_manifest",
    "merge_body",
    "merge_headers",
    "omit",
    "resolve_headers",
    "run_heartbeat",
]
