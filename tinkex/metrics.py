"""In-process metrics: counters, gauges and latency histograms, fed from the transport's spans.

:class:`Metrics` keeps values for ``snapshot()`` (the demo's summary table) and forwards every
update to OpenTelemetry metric instruments of ``meter`` (the global meter by default: without
an SDK configured those calls are no-ops).

Histograms are in milliseconds. Each keeps ``count``/``sum``/``min``/``max`` since the last
``reset()``, bucket counts (``DEFAULT_BUCKETS_MS`` plus an overflow bucket) and the last
``reservoir_size`` samples, over which p50 (true median: mean of the two middle values for an
even count) and p95/p99 (nearest rank: the ``ceil(n * pct / 100)``-th smallest) are computed.

:class:`MetricsSpanProcessor` reads the span conventions of ``pristine_transport`` (docs/telemetry.md):

- logical request: an INTERNAL span named after its endpoint, attributes ``pristine.endpoint``,
  ``pristine.response.status_code`` (when a response came; ``http.response.status_code`` on spans of
  earlier releases), ``error.type`` (on failure), ``pristine.retries`` (re-sends, when any);
- HTTP exchange: a CLIENT span, child of its logical request's span (one per attempt and re-send);
- future: ``pristine.future.endpoint``, ``pristine.future.polls``, ``pristine.future.outcome``, and its polls
  answered "not ready yet", which have no spans of their own: one ``poll.not_ready`` event each
  (``pristine.endpoint``, ``http.response.status_code``, ``pristine.poll.duration_s``) and their count
  ``pristine.future.not_ready_polls``. Such a poll counts as a request (and an attempt) of its endpoint; polls
  whose events the SDK dropped (past its event limit) are counted like the last recorded one, without a duration.

- public call: an INTERNAL span of the instrumentation scope ``tinkex`` named after the call
  (``TrainingClient.forward_backward``; :mod:`tinkex.call_spans`), from the call until its result is known.

It records, labelled by ``endpoint``: ``tinkex.requests`` (also by ``status_class``: ``2xx``,
``4xx``, ``5xx``, ... or ``error`` when no response came), ``tinkex.request.retries``,
``tinkex.request.attempts`` (HTTP exchanges), ``tinkex.request.duration`` (ms), ``tinkex.futures`` (also by
``outcome``), ``tinkex.future.polls`` and ``tinkex.future.duration`` (ms); labelled by ``call``: ``tinkex.calls``
(also by ``outcome``: ``ok``, ``failed``, ``cancelled``) and ``tinkex.call.duration`` (ms, until the result).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any, NamedTuple

from opentelemetry import metrics as otel_metrics
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from .call_spans import CANCELLED_ATTRIBUTE
from .call_spans import TRACER_NAME as CALL_TRACER_NAME

__all__ = [
    "CALLS",
    "CALL_DURATION",
    "DEFAULT_BUCKETS_MS",
    "DEFAULT_RESERVOIR_SIZE",
    "FUTURES",
    "FUTURE_DURATION",
    "FUTURE_POLLS",
    "REQUESTS",
    "REQUEST_ATTEMPTS",
    "REQUEST_DURATION",
    "REQUEST_RETRIES",
    "HistogramSnapshot",
    "MetricKey",
    "Metrics",
    "MetricsSnapshot",
    "MetricsSpanProcessor",
    "format_summary",
    "median",
    "nearest_rank",
]

DEFAULT_BUCKETS_MS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
DEFAULT_RESERVOIR_SIZE = 1000

REQUESTS = "tinkex.requests"
REQUEST_RETRIES = "tinkex.request.retries"
REQUEST_ATTEMPTS = "tinkex.request.attempts"
REQUEST_DURATION = "tinkex.request.duration"
FUTURES = "tinkex.futures"
FUTURE_POLLS = "tinkex.future.polls"
FUTURE_DURATION = "tinkex.future.duration"
CALLS = "tinkex.calls"
CALL_DURATION = "tinkex.call.duration"

ENDPOINT_ATTRIBUTE = "pristine.endpoint"
STATUS_ATTRIBUTE = "pristine.response.status_code"
OLD_STATUS_ATTRIBUTE = "http.response.status_code"
"""Where a logical request span of earlier releases kept its status (still set, deprecated, for one release)."""
HTTP_STATUS_ATTRIBUTE = "http.response.status_code"
RETRIES_ATTRIBUTE = "pristine.retries"
FUTURE_ENDPOINT_ATTRIBUTE = "pristine.future.endpoint"
FUTURE_POLLS_ATTRIBUTE = "pristine.future.polls"
FUTURE_OUTCOME_ATTRIBUTE = "pristine.future.outcome"
FUTURE_NOT_READY_ATTRIBUTE = "pristine.future.not_ready_polls"
NOT_READY_EVENT = "poll.not_ready"
POLL_DURATION_ATTRIBUTE = "pristine.poll.duration_s"


def nearest_rank(sorted_values: Sequence[float], percent: float) -> float:
    """The ``ceil(n * percent / 100)``-th smallest value (the first for ``percent`` 0)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = math.ceil(len(sorted_values) * percent / 100)
    return float(sorted_values[min(max(rank, 1), len(sorted_values)) - 1])


class MetricKey(NamedTuple):
    """A metric name plus its labels (sorted, so equal label sets give equal keys).

    A tuple, so hashing and comparison run in C: keys are looked up on every update.
    """

    name: str
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, name: str, labels: Mapping[str, str] | None = None) -> MetricKey:
        return cls(name, tuple(sorted(labels.items())) if labels else ())


@dataclass(frozen=True)
class HistogramSnapshot:
    count: int
    sum: float
    min: float
    max: float
    mean: float
    p50: float
    p95: float
    p99: float
    buckets: tuple[tuple[float, int], ...]
    """(upper bound, count) per bucket; the last bound is ``inf`` (overflow)."""


class _Histogram:
    def __init__(self, bounds: Sequence[float], reservoir_size: int) -> None:
        self._bounds = tuple(bounds)
        self._bucket_counts = [0] * (len(self._bounds) + 1)
        self._reservoir: deque[float] = deque(maxlen=reservoir_size)
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf

    def record(self, value: float) -> None:
        self._count += 1
        self._sum += value
        self._min = min(self._min, value)
        self._max = max(self._max, value)
        self._reservoir.append(value)
        # First bucket whose upper bound is >= value; past the last bound is the overflow bucket.
        self._bucket_counts[bisect.bisect_left(self._bounds, value)] += 1

    def snapshot(self) -> HistogramSnapshot:
        ordered = sorted(self._reservoir)
        return HistogramSnapshot(
            count=self._count,
            sum=self._sum,
            min=self._min,
            max=self._max,
            mean=self._sum / self._count,
            p50=float(median(ordered)),
            p95=nearest_rank(ordered, 95),
            p99=nearest_rank(ordered, 99),
            buckets=tuple(zip((*self._bounds, math.inf), self._bucket_counts, strict=True)),
        )


@dataclass(frozen=True)
class MetricsSnapshot:
    counters: Mapping[MetricKey, float]
    gauges: Mapping[MetricKey, float]
    histograms: Mapping[MetricKey, HistogramSnapshot]

    def counter(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The counter's value (0 if never incremented)."""
        return self.counters.get(MetricKey.of(name, labels), 0.0)

    def counter_total(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """Sum of the counter over every label set that includes ``labels``."""
        wanted = set((labels or {}).items())
        return sum(value for key, value in self.counters.items() if key.name == name and wanted <= set(key.labels))

    def gauge(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        return self.gauges.get(MetricKey.of(name, labels))

    def histogram(self, name: str, labels: Mapping[str, str] | None = None) -> HistogramSnapshot | None:
        return self.histograms.get(MetricKey.of(name, labels))

    def label_values(self, label: str) -> list[str]:
        """Every value ``label`` takes across all metrics, sorted."""
        keys = [*self.counters, *self.gauges, *self.histograms]
        return sorted({value for key in keys for name, value in key.labels if name == label})


class Metrics:
    """Thread-safe registry of counters, gauges and millisecond histograms."""

    def __init__(
        self,
        *,
        meter: otel_metrics.Meter | None = None,
        buckets_ms: Sequence[float] = DEFAULT_BUCKETS_MS,
        reservoir_size: int = DEFAULT_RESERVOIR_SIZE,
    ) -> None:
        if list(buckets_ms) != sorted(set(buckets_ms)):
            raise ValueError(f"buckets_ms must be strictly increasing, got {list(buckets_ms)}")
        if reservoir_size < 1:
            raise ValueError(f"reservoir_size must be at least 1, got {reservoir_size}")
        self._meter = meter if meter is not None else otel_metrics.get_meter("tinkex")
        self._buckets = tuple(buckets_ms)
        self._reservoir_size = reservoir_size
        self._lock = threading.Lock()
        self._counters: dict[MetricKey, float] = {}
        self._gauges: dict[MetricKey, float] = {}
        self._histograms: dict[MetricKey, _Histogram] = {}
        self._instruments: dict[tuple[str, str], Any] = {}

    def increment(self, name: str, value: float = 1.0, labels: Mapping[str, str] | None = None) -> None:
        if value < 0:
            raise ValueError(f"counter {name!r} can only increase, got increment {value}")
        key = MetricKey.of(name, labels)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + value
        self._instrument("counter", name).add(value, labels)

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        key = MetricKey.of(name, labels)
        with self._lock:
            self._gauges[key] = value
        self._instrument("gauge", name).set(value, labels)

    def record(self, name: str, value_ms: float, labels: Mapping[str, str] | None = None) -> None:
        """Add one sample (milliseconds) to a histogram."""
        key = MetricKey.of(name, labels)
        with self._lock:
            histogram = self._histograms.get(key)
            if histogram is None:
                histogram = self._histograms[key] = _Histogram(self._buckets, self._reservoir_size)
            histogram.record(value_ms)
        self._instrument("histogram", name).record(value_ms, labels)

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            return MetricsSnapshot(
                counters=dict(self._counters),
                gauges=dict(self._gauges),
                histograms={key: histogram.snapshot() for key, histogram in self._histograms.items()},
            )

    def reset(self) -> None:
        """Forget every value. (OpenTelemetry instruments are cumulative and are not reset.)"""
        with self._lock:
            self._counters.clear()
            self._gauges.clear()
            self._histograms.clear()

    def _instrument(self, kind: str, name: str) -> Any:
        instrument = self._instruments.get((kind, name))
        if instrument is not None:
            return instrument
        with self._lock:
            instrument = self._instruments.get((kind, name))
            if instrument is None:
                if kind == "counter":
                    instrument = self._meter.create_counter(name)
                elif kind == "gauge":
                    instrument = self._meter.create_gauge(name)
                else:
                    instrument = self._meter.create_histogram(
                        name, unit="ms", explicit_bucket_boundaries_advisory=self._buckets
                    )
                self._instruments[(kind, name)] = instrument
            return instrument


class MetricsSpanProcessor(SpanProcessor):
    """Feeds :class:`Metrics` from ended request, exchange and future spans; every other span is ignored."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._open: dict[int, str] = {}
        """Span id -> endpoint of the logical request spans started and not yet ended (their CLIENT children end
        first and carry no endpoint of their own)."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        endpoint = _request_endpoint(span)
        if endpoint is not None:
            self._open[span.context.span_id] = endpoint

    def on_end(self, span: ReadableSpan) -> None:
        if span.kind is SpanKind.CLIENT:
            parent = span.parent
            endpoint = self._open.get(parent.span_id) if parent is not None else None
            if endpoint is not None:
                self.metrics.increment(REQUEST_ATTEMPTS, labels={"endpoint": endpoint})
            return
        attributes = span.attributes or {}
        scope = span.instrumentation_scope
        if scope is not None and scope.name == CALL_TRACER_NAME:
            self._record_call(span, attributes)
            return
        endpoint = _request_endpoint(span)
        if endpoint is not None:
            self._open.pop(span.context.span_id, None)
            self._record_request(endpoint, attributes, _duration_ms(span))
            return
        future_endpoint = attributes.get(FUTURE_ENDPOINT_ATTRIBUTE)
        if isinstance(future_endpoint, str):
            self._record_future(future_endpoint, attributes, _duration_ms(span))
            self._record_not_ready_polls(span, attributes)

    def _record_request(self, endpoint: str, attributes: Mapping[str, Any], duration_ms: float | None) -> None:
        labels = {"endpoint": endpoint}
        status = attributes.get(STATUS_ATTRIBUTE, attributes.get(OLD_STATUS_ATTRIBUTE))
        self.metrics.increment(REQUESTS, labels={**labels, "status_class": _status_class(status)})
        retries = attributes.get(RETRIES_ATTRIBUTE)
        if isinstance(retries, int) and retries > 0:
            self.metrics.increment(REQUEST_RETRIES, retries, labels)
        if duration_ms is not None:
            self.metrics.record(REQUEST_DURATION, duration_ms, labels)

    def _record_future(self, endpoint: str, attributes: Mapping[str, Any], duration_ms: float | None) -> None:
        labels = {"endpoint": endpoint}
        outcome = attributes.get(FUTURE_OUTCOME_ATTRIBUTE)
        self.metrics.increment(FUTURES, labels={**labels, "outcome": str(outcome) if outcome else "unknown"})
        polls = attributes.get(FUTURE_POLLS_ATTRIBUTE)
        if isinstance(polls, int) and polls > 0:
            self.metrics.increment(FUTURE_POLLS, polls, labels)
        if duration_ms is not None:
            self.metrics.record(FUTURE_DURATION, duration_ms, labels)

    def _record_call(self, span: ReadableSpan, attributes: Mapping[str, Any]) -> None:
        labels = {"call": span.name}
        if attributes.get(CANCELLED_ATTRIBUTE):
            outcome = "cancelled"
        else:
            outcome = "failed" if span.status.status_code is StatusCode.ERROR else "ok"
        self.metrics.increment(CALLS, labels={**labels, "outcome": outcome})
        duration_ms = _duration_ms(span)
        if duration_ms is not None:
            self.metrics.record(CALL_DURATION, duration_ms, labels)

    def _record_not_ready_polls(self, span: ReadableSpan, attributes: Mapping[str, Any]) -> None:
        """Polls answered "not ready yet" have no spans: each is a request and an attempt of its endpoint."""
        total = attributes.get(FUTURE_NOT_READY_ATTRIBUTE)
        if not isinstance(total, int) or total <= 0:
            return
        seen = 0
        labels: dict[str, str] | None = None
        status_class = "error"
        for event in span.events:
            if event.name != NOT_READY_EVENT:
                continue
            event_attributes = event.attributes or {}
            endpoint = event_attributes.get(ENDPOINT_ATTRIBUTE)
            if not isinstance(endpoint, str):
                continue
            seen += 1
            labels = {"endpoint": endpoint}
            status_class = _status_class(event_attributes.get(HTTP_STATUS_ATTRIBUTE))
            self.metrics.increment(REQUESTS, labels={**labels, "status_class": status_class})
            self.metrics.increment(REQUEST_ATTEMPTS, labels=labels)
            duration_s = event_attributes.get(POLL_DURATION_ATTRIBUTE)
            if isinstance(duration_s, (int, float)):
                self.metrics.record(REQUEST_DURATION, duration_s * 1000, labels)
        dropped = total - seen
        if dropped > 0 and labels is not None:  # past the SDK's event limit: counted like the last one seen
            self.metrics.increment(REQUESTS, dropped, labels={**labels, "status_class": status_class})
            self.metrics.increment(REQUEST_ATTEMPTS, dropped, labels=labels)

    def shutdown(self) -> None:
        """Nothing buffered, nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _request_endpoint(span: ReadableSpan) -> str | None:
    """The endpoint of a logical request span (INTERNAL, named after it; CLIENT in earlier releases), else None."""
    endpoint = (span.attributes or {}).get(ENDPOINT_ATTRIBUTE)
    return endpoint if isinstance(endpoint, str) and span.name == endpoint else None


def _status_class(status: object) -> str:
    return f"{status // 100}xx" if isinstance(status, int) else "error"


def _duration_ms(span: ReadableSpan) -> float | None:
    if span.start_time is None or span.end_time is None:
        return None
    return (span.end_time - span.start_time) / 1e6


def format_summary(snapshot: MetricsSnapshot) -> str:
    """One row per endpoint: requests by status class, retries, HTTP exchanges (attempts), futures and their polls,
    latency percentiles; then, when public calls were traced, one row per call: how many, how they ended, and how
    long until their results (a training step is ``TrainingClient.forward_backward`` plus ``optim_step``)."""
    header: tuple[str, ...] = ("endpoint", "requests", "2xx", "4xx", "5xx", "error", "retries", "attempts")
    header += ("futures", "polls")
    header += ("p50 ms", "p95 ms", "p99 ms")
    rows = [header]
    for endpoint in snapshot.label_values("endpoint"):
        labels = {"endpoint": endpoint}
        latency = snapshot.histogram(REQUEST_DURATION, labels)
        by_class = [
            snapshot.counter(REQUESTS, {**labels, "status_class": status_class})
            for status_class in ("2xx", "4xx", "5xx", "error")
        ]
        rows.append(
            (
                endpoint,
                _count(snapshot.counter_total(REQUESTS, labels)),
                *(_count(value) for value in by_class),
                _count(snapshot.counter(REQUEST_RETRIES, labels)),
                _count(snapshot.counter(REQUEST_ATTEMPTS, labels)),
                _count(snapshot.counter_total(FUTURES, labels)),
                _count(snapshot.counter(FUTURE_POLLS, labels)),
                *_percentiles(latency),
            )
        )
    if len(rows) == 1:
        return "no requests recorded"
    tables = [_table(rows)]
    calls = [("call", "calls", "failed", "cancelled", "p50 ms", "p95 ms", "p99 ms")]
    for call in snapshot.label_values("call"):
        labels = {"call": call}
        calls.append(
            (
                call,
                _count(snapshot.counter_total(CALLS, labels)),
                _count(snapshot.counter(CALLS, {**labels, "outcome": "failed"})),
                _count(snapshot.counter(CALLS, {**labels, "outcome": "cancelled"})),
                *_percentiles(snapshot.histogram(CALL_DURATION, labels)),
            )
        )
    if len(calls) > 1:
        tables.append(_table(calls))
    return "\n\n".join(tables)


def _percentiles(latency: HistogramSnapshot | None) -> tuple[str, str, str]:
    if latency is None:
        return ("-", "-", "-")
    return (f"{latency.p50:.1f}", f"{latency.p95:.1f}", f"{latency.p99:.1f}")


def _table(rows: list[tuple[str, ...]]) -> str:
    """Names left-aligned, numbers right-aligned, a rule under the header."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join([row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:]))])
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _count(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"
