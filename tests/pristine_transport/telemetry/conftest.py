"""Span and metric recorders for the telemetry tests: the OpenTelemetry SDK's in-memory exporter and reader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Spans:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def all(self) -> list[ReadableSpan]:
        return sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)

    def client(self) -> list[ReadableSpan]:
        return [s for s in self.all() if s.kind is SpanKind.CLIENT]

    def internal(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.all() if s.kind is SpanKind.INTERNAL and (name is None or s.name == name)]

    def children_of(self, parent: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.all() if s.parent is not None and s.parent.span_id == parent.context.span_id]

    def by_id(self) -> dict[int, ReadableSpan]:
        return {s.context.span_id: s for s in self.all()}

    def assert_no_client_span_inside_a_client_span(self) -> None:
        by_id = self.by_id()
        for span in self.client():
            parent = span.parent
            while parent is not None and parent.span_id in by_id:
                ancestor = by_id[parent.span_id]
                assert ancestor.kind is not SpanKind.CLIENT, f"CLIENT span {span.name} inside CLIENT {ancestor.name}"
                parent = ancestor.parent


class Metrics:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.meter = self.provider.get_meter("test")

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += list(metric.data.data_points)
        return found

    def metric(self, name: str) -> Any:
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        return metric
        return None


@pytest.fixture
def spans() -> Spans:
    return Spans()


@pytest.fixture
def meters() -> Iterator[Metrics]:
    recorder = Metrics()
    yield recorder
    recorder.provider.shutdown()
