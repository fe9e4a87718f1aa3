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

SPAN_ATTRIBUTES = "pristine.span_attributes"
"""Attributes (a mapping of str to str/int/float/bool) the caller wants on the request's INTERNAL span (and, for a
future-returning endpoint, on the future's span): an SDK's own ids under its own namespace, e.g.
``{"tinker.model_id": ..., "tinker.seq_id": ...}``. Never secrets: spans are exported as they are."""

NOT_READY_POLLS = "pristine.not_ready_polls"
"""A :class:`~pristine_transport.layers.telemetry.NotReadyPolls` of the future this request polls for: a "not ready
yet" answer (a try-again body, a 408) becomes one event and a count on the future's span instead of spans of its own.
Set by the future resolver (``FutureResolver(not_ready_polls="events")``, the default)."""

RETRY_RULES = "pristine.retry_rules"
"""Retry rules (a mapping of rule name to ``RetryRuleSpec``) for this request only, added to its policy's (a rule of
the same name replaced), e.g. a caller's own wait and bound for one call (``RetryLayer``)."""

TELEMETRY = "pristine.telemetry"
"""Set by the telemetry layer, not by callers: the request's span context and metric instruments for the layers
beneath it. Absent while tracing and metrics are both off, so the layers beneath create nothing."""
