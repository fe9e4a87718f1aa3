"""HTTP client metrics through the OpenTelemetry metrics API: the stable semantic conventions' instruments, plus
pristine's own counters of what its layers did.

Conventions (https://opentelemetry.io/docs/specs/semconv/http/http-metrics/):

- ``http.client.request.duration`` (histogram, seconds, the conventions' explicit bucket boundaries): one record per
  HTTP exchange (every attempt, every re-send), with ``http.request.method``, ``server.address``, ``server.port``,
  ``http.response.status_code`` when a response came, ``error.type`` on failure (the status code for >= 400, else
  the failure's class name).
- ``http.client.active_requests`` (up-down counter, ``{request}``): exchanges in flight, with ``http.request.method``,
  ``server.address``, ``server.port``.

pristine's own, named by the OpenTelemetry naming guidelines (a namespace of its own, ``.`` for hierarchy, a
``{unit}`` in braces for counts, no ``_total`` suffix), each with ``pristine.endpoint``:

- ``pristine.http.client.retries`` (counter, ``{retry}``): re-sends the retry layer made;
- ``pristine.http.client.backpressure.waits`` (counter, ``{wait}``): waits for a backpressure window (after a 429,
  or before sending while the window of the endpoint's pool is open);
- ``pristine.http.client.pool.waits`` (counter, ``{wait}``): requests that waited for a pool permit, with
  ``pristine.pool.name``.

Nothing is created while no meter provider is configured: :class:`~pristine_transport.layers.telemetry.Telemetry`
makes the instruments the first time it finds one.
"""

from __future__ import annotations

from typing import Final

from opentelemetry import metrics

__all__ = [
    "ACTIVE_REQUESTS",
    "BACKPRESSURE_WAITS",
    "DURATION_BUCKETS_S",
    "POOL_WAITS",
    "REQUEST_DURATION",
    "RETRIES",
    "HttpClientInstruments",
]

REQUEST_DURATION: Final = "http.client.request.duration"
ACTIVE_REQUESTS: Final = "http.client.active_requests"
RETRIES: Final = "pristine.http.client.retries"
BACKPRESSURE_WAITS: Final = "pristine.http.client.backpressure.waits"
POOL_WAITS: Final = "pristine.http.client.pool.waits"

DURATION_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""The explicit bucket boundaries the HTTP conventions give ``http.client.request.duration``."""


class HttpClientInstruments:
    """The instruments of one meter, created once and shared by every endpoint stack of a transport."""

    __slots__ = ("active_requests", "backpressure_waits", "pool_waits", "request_duration", "retries")

    def __init__(self, meter: metrics.Meter) -> None:
        self.request_duration = meter.create_histogram(
            REQUEST_DURATION,
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.active_requests = meter.create_up_down_counter(
            ACTIVE_REQUESTS, unit="{request}", description="Number of active HTTP requests."
        )
        self.retries = meter.create_counter(
            RETRIES, unit="{retry}", description="Re-sends of failed HTTP requests by the retry policy."
        )
        self.backpressure_waits = meter.create_counter(
            BACKPRESSURE_WAITS, unit="{wait}", description="Waits for a server-requested backoff window."
        )
        self.pool_waits = meter.create_counter(
            POOL_WAITS, unit="{wait}", description="Requests that waited for a permit of their pool."
        )
