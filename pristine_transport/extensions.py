"""Keys of ``httpx.Request.extensions`` through which a caller talks to the layers of its request's stack."""

ENDPOINT = "pristine.endpoint"
"""Endpoint name (str). The router uses it to pick the stack; without it, method + path template decide."""

IDEMPOTENCY_KEY = "pristine.idempotency_key"
"""The caller's own idempotency key (str) for this logical request."""

SIZE_BYTES = "pristine.size_bytes"
"""Estimated request size in bytes (int) for the pool limiter and backpressure; default: the body length."""

QUEUE_OBSERVER = "pristine.queue_observer"
"""An object with ``on_queue_state_change(state: str, reason: str | None)``, notified of queue-state changes."""

ATTEMPT = "pristine.attempt"
"""Re-sends before this attempt (int, 0 for the first). Set by ``RetryLayer`` on every attempt it sends, for the
layers beneath it (``AttemptTelemetryLayer``); a caller's value is overwritten."""
