"""Metrics registry, percentiles, the span processor and the OpenTelemetry export."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tinkex.metrics import (
    CALL_DURATION,
    CALLS,
    FUTURE_POLLS,
    FUTURES,
    REQUEST_DURATION,
    REQUEST_RETRIES,
    REQUESTS,
    Metrics,
    MetricsSpanProcessor,
    format_summary,
    median,
    nearest_rank,
)


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def metrics(reader: InMemoryMetricReader) -> Metrics:
    return Metrics(meter=MeterProvider(metric_readers=[reader]).get_meter("test"))


def test_percentiles_against_known_data() -> None:
    values = list(range(1, 101))  # 1..100
    assert median(values) == 50.5
    assert median([3, 7, 9]) == 7
    assert nearest_rank(values, 95) == 95
    assert nearest_rank(values, 99) == 99
    assert nearest_rank([10, 20, 30, 40, 50], 95) == 50  # ceil(4.75) = 5th
    assert nearest_rank([10, 20, 30, 40, 50], 50) == 30
    assert nearest_rank([7], 99) == 7
    with pytest.raises(ValueError):
        median([])


def test_histogram_snapshot_buckets_reservoir_and_extremes() -> None:
    metrics = Metrics(reservoir_size=10, buckets_ms=(1, 10, 100))
    for value in [0.5, 5, 50, 500, 5000]:
        metrics.record("latency", value)
    for value in range(1, 11):  # reservoir keeps only these last 10
        metrics.record("latency", float(value))
    snap = metrics.snapshot().histogram("latency")
    assert snap is not None
    assert snap.count == 15
    assert (snap.min, snap.max) == (0.5, 5000)
    assert snap.sum == pytest.approx(5555.5 + 55)
    assert snap.mean == pytest.approx(5610.5 / 15)
    assert (snap.p50, snap.p95, snap.p99) == (5.5, 10, 10)
    assert snap.buckets == ((1, 2), (10, 10), (100, 1), (math.inf, 2))


def test_counters_gauges_labels_and_reset(metrics: Metrics) -> None:
    metrics.increment("calls", labels={"endpoint": "a", "kind": "x"})
    metrics.increment("calls", 2, labels={"kind": "x", "endpoint": "a"})
    metrics.increment("calls", labels={"endpoint": "b"})
    metrics.set_gauge("queue", 3, labels={"pool": "train"})
    metrics.set_gauge("queue", 1, labels={"pool": "train"})
    snap = metrics.snapshot()
    assert snap.counter("calls", {"endpoint": "a", "kind": "x"}) == 3
    assert snap.counter_total("calls") == 4
    assert snap.counter_total("calls", {"endpoint": "a"}) == 3
    assert snap.gauge("queue", {"pool": "train"}) == 1
    assert snap.label_values("endpoint") == ["a", "b"]
    with pytest.raises(ValueError, match="only increase"):
        metrics.increment("calls", -1)

    metrics.reset()
    empty = metrics.snapshot()
    assert (empty.counters, empty.gauges, empty.histograms) == ({}, {}, {})
    assert snap.counter("calls", {"endpoint": "b"}) == 1  # earlier snapshots are unaffected


def test_registry_is_thread_safe() -> None:
    metrics = Metrics()

    def work() -> None:
        for index in range(500):
            metrics.increment("hits")
            metrics.record("lat", float(index))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = metrics.snapshot()
    assert snap.counter("hits") == 2000
    assert snap.histogram("lat").count == 2000  # type: ignore[union-attr]


@pytest.fixture
def traced(metrics: Metrics) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(MetricsSpanProcessor(metrics))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _request_span(
    provider: TracerProvider,
    endpoint: str,
    *,
    start_ns: int,
    duration_ms: float,
    status: int | None = None,
    error: str | None = None,
    retries: int = 0,
) -> None:
    tracer = provider.get_tracer("pristine_transport")
    span = tracer.start_span(endpoint, start_time=start_ns)
    span.set_attribute("pristine.endpoint", endpoint)
    span.set_attribute("pristine.retries", retries)
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if error is not None:
        span.set_attribute("error.type", error)
    # an attempt span of the same request: same endpoint attribute, different name, not counted
    attempt = tracer.start_span(f"{endpoint} attempt", start_time=start_ns)
    attempt.set_attribute("pristine.endpoint", endpoint)
    attempt.end(end_time=start_ns + 1_000_000)
    span.end(end_time=start_ns + int(duration_ms * 1_000_000))


def test_span_processor_records_requests_and_futures(
    traced: tuple[TracerProvider, InMemorySpanExporter], metrics: Metrics
) -> None:
    provider, exporter = traced
    for index, duration in enumerate([10.0, 20.0, 30.0, 40.0]):
        _request_span(provider, "forward_backward", start_ns=index * 10**9, duration_ms=duration, status=200)
    _request_span(provider, "forward_backward", start_ns=0, duration_ms=5, status=503, retries=3)
    _request_span(provider, "sample", start_ns=0, duration_ms=7, status=429, retries=1)
    _request_span(provider, "sample", start_ns=0, duration_ms=9, error="ConnectTimeout", retries=2)

    future = provider.get_tracer("pristine_transport").start_span("future forward_backward", start_time=0)
    future.set_attributes(
        {
            "pristine.future.endpoint": "forward_backward",
            "pristine.future.polls": 4,
            "pristine.future.outcome": "completed",
        }
    )
    future.end(end_time=250_000_000)
    provider.get_tracer("other").start_span("unrelated").end()
    assert len(exporter.get_finished_spans()) == 16

    snap = metrics.snapshot()
    fb = {"endpoint": "forward_backward"}
    assert snap.counter(REQUESTS, {**fb, "status_class": "2xx"}) == 4
    assert snap.counter(REQUESTS, {**fb, "status_class": "5xx"}) == 1
    assert snap.counter_total(REQUESTS, fb) == 5
    assert snap.counter(REQUEST_RETRIES, fb) == 3
    assert snap.counter(REQUESTS, {"endpoint": "sample", "status_class": "4xx"}) == 1
    assert snap.counter(REQUESTS, {"endpoint": "sample", "status_class": "error"}) == 1
    assert snap.counter(REQUEST_RETRIES, {"endpoint": "sample"}) == 3
    latency = snap.histogram(REQUEST_DURATION, fb)
    assert latency is not None and latency.count == 5
    assert (latency.p50, latency.p95, latency.max) == (20.0, 40.0, 40.0)
    assert snap.counter(FUTURES, {**fb, "outcome": "completed"}) == 1
    assert snap.counter(FUTURE_POLLS, fb) == 4
    assert snap.label_values("endpoint") == ["forward_backward", "sample"]

    summary = format_summary(snap)
    lines = summary.splitlines()
    assert lines[0].split()[:3] == ["endpoint", "requests", "2xx"]
    fb_row = next(line for line in lines if line.startswith("forward_backward")).split()
    # endpoint requests 2xx 4xx 5xx error retries attempts futures polls p50 p95 p99 (no CLIENT spans here)
    assert fb_row == ["forward_backward", "5", "4", "0", "1", "0", "3", "0", "1", "4", "20.0", "40.0", "40.0"]
    sample_row = next(line for line in lines if line.startswith("sample")).split()
    assert sample_row[1:10] == ["2", "0", "1", "0", "1", "3", "0", "0", "0"]


def test_public_call_spans_become_calls_by_outcome_and_a_table_of_their_own(
    traced: tuple[TracerProvider, InMemorySpanExporter], metrics: Metrics
) -> None:
    provider, _ = traced
    calls = provider.get_tracer("tinkex")
    for index, (outcome, duration_ms) in enumerate([("ok", 10), ("ok", 30), ("failed", 50), ("cancelled", 70)]):
        span = calls.start_span("TrainingClient.forward_backward", start_time=index * 10**9)
        if outcome == "failed":
            span.set_status(Status(StatusCode.ERROR, "BadRequestError"))
        if outcome == "cancelled":
            span.set_attribute("tinker.cancelled", True)
        span.end(end_time=index * 10**9 + duration_ms * 1_000_000)
    provider.get_tracer("someone.else").start_span("TrainingClient.optim_step").end()  # not ours: not a call
    _request_span(provider, "forward_backward", start_ns=0, duration_ms=5, status=200)

    snap = metrics.snapshot()
    step = {"call": "TrainingClient.forward_backward"}
    assert [snap.counter(CALLS, {**step, "outcome": o}) for o in ("ok", "failed", "cancelled")] == [2, 1, 1]
    assert snap.label_values("call") == ["TrainingClient.forward_backward"]
    duration = snap.histogram(CALL_DURATION, step)
    assert duration is not None and (duration.count, duration.max) == (4, 70.0)
    requests, calls_table = format_summary(snap).split("\n\n")
    assert requests.splitlines()[2].split()[:2] == ["forward_backward", "1"]
    header, _, row = calls_table.splitlines()
    assert header.split()[:4] == ["call", "calls", "failed", "cancelled"]
    assert row.split() == ["TrainingClient.forward_backward", "4", "1", "1", "40.0", "70.0", "70.0"]


def test_format_summary_without_data() -> None:
    assert format_summary(Metrics().snapshot()) == "no requests recorded"


def test_values_are_exported_through_opentelemetry(metrics: Metrics, reader: InMemoryMetricReader) -> None:
    metrics.increment(REQUESTS, labels={"endpoint": "sample", "status_class": "2xx"})
    metrics.increment(REQUESTS, 2, labels={"endpoint": "sample", "status_class": "2xx"})
    metrics.set_gauge("tinkex.queue", 5)
    for value in (3.0, 30.0, 300.0):
        metrics.record(REQUEST_DURATION, value, {"endpoint": "sample"})

    exported = {
        metric.name: metric
        for resource_metrics in reader.get_metrics_data().resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    }
    counter_point = exported[REQUESTS].data.data_points[0]
    assert counter_point.value == 3
    assert dict(counter_point.attributes) == {"endpoint": "sample", "status_class": "2xx"}
    assert exported["tinkex.queue"].data.data_points[0].value == 5
    histogram = exported[REQUEST_DURATION]
    assert histogram.unit == "ms"
    point = histogram.data.data_points[0]
    assert (point.count, point.sum, point.min, point.max) == (3, 333.0, 3.0, 300.0)
    assert list(point.explicit_bounds) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]


def test_without_an_sdk_the_global_meter_is_a_cheap_no_op() -> None:
    metrics = Metrics()  # global meter; no MeterProvider configured in this process
    metrics.increment("noop")
    metrics.record("noop.latency", 1.0)
    assert metrics.snapshot().counter("noop") == 1
