"""tinkex/call_spans.py on a real path: a tinkex client with an in-memory exporter against LocalServer.

A public call is one INTERNAL span named as its ``x-sdk-method``, parent of the logical requests it sends (which carry
``tinker.seq_id``) and of its futures, ended once its result is known; a call made inside another makes none."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import tinkex
from tinkex import types
from tinkex.call_spans import TRACER_NAME
from tinkex.testing import FaultRule, LocalServer

BASE_MODEL = "Qwen/Qwen3-8B"
DATUM = types.Datum(
    model_input=types.ModelInput.from_ints([1, 2, 3, 4]), loss_fn_inputs={"target_tokens": [2, 3, 4, 5]}
)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    found = InMemorySpanExporter()
    yield found
    found.shutdown()


def client_for(server: LocalServer, exporter: InMemorySpanExporter) -> tinkex.Client:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tinkex.Client(base_url=server.base_url, api_key="tml-call-spans", tracer_provider=provider)


def calls(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and s.instrumentation_scope.name == TRACER_NAME]


def descendants(spans: tuple[ReadableSpan, ...], root: ReadableSpan) -> list[ReadableSpan]:
    by_id = {s.context.span_id: s for s in spans}

    def under(span: ReadableSpan) -> bool:
        parent = span.parent
        while parent is not None:
            if parent.span_id == root.context.span_id:
                return True
            found = by_id.get(parent.span_id)
            parent = found.parent if found is not None else None
        return False

    return [s for s in spans if under(s)]


def test_a_training_step_is_two_call_spans_over_their_requests_and_futures(exporter: InMemorySpanExporter) -> None:
    with LocalServer(client_config=types.ClientConfigResponse(fwdbwd_max_chunk_len=2)) as server:
        client = client_for(server, exporter)
        try:
            training = client.create_lora_training_client(base_model=BASE_MODEL, rank=4).result()
            output = training.forward_backward([DATUM] * 5, "cross_entropy").result()
            training.optim_step(types.AdamParams(learning_rate=1e-3)).result()
        finally:
            client.close().result()
    spans = exporter.get_finished_spans()
    [step] = calls(spans, "TrainingClient.forward_backward")
    [optim] = calls(spans, "TrainingClient.optim_step")
    assert step.kind is SpanKind.INTERNAL and step.status.status_code is StatusCode.UNSET
    assert step.attributes is not None and step.attributes["tinker.model_id"] == training.model_id
    requests = [s for s in descendants(spans, step) if s.name == "forward_backward"]
    assert len(requests) == 3 == len(output.loss_fn_outputs) // 2 + 1  # chunks of 2, 2, 1
    seq_ids = sorted(s.attributes["tinker.seq_id"] for s in requests if s.attributes)
    assert seq_ids == [1, 2, 3]
    assert all(s.attributes and s.attributes["tinker.model_id"] == training.model_id for s in requests)
    futures = [s for s in descendants(spans, step) if s.attributes and "pristine.future.endpoint" in s.attributes]
    assert len(futures) == 3 and {s.attributes["tinker.seq_id"] for s in futures if s.attributes} == {1, 2, 3}
    # Ended once the result was known: after every future of its chunks.
    assert step.end_time is not None and all(f.end_time is not None and f.end_time <= step.end_time for f in futures)
    [optim_request] = [s for s in descendants(spans, optim) if s.name == "optim_step"]
    assert optim_request.attributes is not None and optim_request.attributes["tinker.seq_id"] == 4
    assert len(calls(spans, "ServiceClient.create_lora_training_client")) == 1
    # The client's own work (its session, its telemetry) belongs to no call, though a call started it.
    [session] = [s for s in spans if s.name == "create_session"]
    assert session.parent is None


def test_a_sample_names_its_session_and_seq_id(exporter: InMemorySpanExporter) -> None:
    with LocalServer() as server:
        client = client_for(server, exporter)
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
            prompt = types.ModelInput.from_ints([1, 2, 3])
            for _ in range(2):
                sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2)).result()
        finally:
            client.close().result()
    spans = exporter.get_finished_spans()
    samples = calls(spans, "SamplingClient.sample")
    assert len(samples) == 2
    for span in samples:
        assert span.attributes is not None
        assert span.attributes["tinker.sampling_session_id"] == sampler.sampling_session_id
    seq_ids = []
    for span in samples:
        [request] = [s for s in descendants(spans, span) if s.name == "asample"]
        assert request.attributes is not None
        assert request.attributes["tinker.sampling_session_id"] == sampler.sampling_session_id
        seq_ids.append(request.attributes["tinker.seq_id"])
    assert len(set(seq_ids)) == 2


def test_a_failed_call_ends_its_span_with_the_error(exporter: InMemorySpanExporter) -> None:
    refused = FaultRule(endpoint="forward_backward", status=400, body={"detail": "no"}, count=1)
    with LocalServer(faults=[refused]) as server:
        client = client_for(server, exporter)
        try:
            training = client.create_lora_training_client(base_model=BASE_MODEL, rank=4).result()
            with pytest.raises(tinkex.BadRequestError) as raised:
                training.forward_backward([DATUM], "cross_entropy").result()
        finally:
            client.close().result()
    [step] = calls(exporter.get_finished_spans(), "TrainingClient.forward_backward")
    assert step.status.status_code is StatusCode.ERROR
    assert step.attributes is not None and step.attributes["error.type"] == type(raised.value).__qualname__
    assert [event.name for event in step.events] == ["exception"]


def test_an_async_call_ends_when_its_future_settles_and_nested_calls_make_no_span(
    exporter: InMemorySpanExporter,
) -> None:
    async def run(server: LocalServer) -> str:
        client = client_for(server, exporter)
        try:
            training = await client.create_lora_training_client_async(base_model=BASE_MODEL, rank=4)
            future = await training.forward_backward_async([DATUM], "cross_entropy")
            assert not calls(exporter.get_finished_spans(), "TrainingClient.forward_backward_async")
            await future
            # save_weights_and_get_sampling_client calls save_weights_for_sampler: one operation, one span.
            await training.save_weights_and_get_sampling_client_async("step-1")
            return training.model_id
        finally:
            await client.close()

    with LocalServer() as server:
        model_id = asyncio.run(run(server))
    spans = exporter.get_finished_spans()
    [step] = calls(spans, "TrainingClient.forward_backward_async")
    assert step.attributes is not None and step.attributes["tinker.model_id"] == model_id
    assert len(calls(spans, "TrainingClient.save_weights_and_get_sampling_client_async")) == 1
    assert not [s for s in spans if s.name.startswith("TrainingClient.save_weights_for_sampler")]


def test_a_cancelled_call_is_marked_cancelled_not_failed(exporter: InMemorySpanExporter) -> None:
    with LocalServer(latency_by_endpoint={"asample": 30.0}, long_poll_timeout=0.2) as server:
        client = client_for(server, exporter)
        try:
            sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
            pending = sampler.sample(types.ModelInput.from_ints([1, 2, 3]), 1, types.SamplingParams(max_tokens=2))
            deadline = time.monotonic() + 10
            while not server.ledger.received("retrieve_future") and time.monotonic() < deadline:
                time.sleep(0.02)
            assert pending.future().cancel()
        finally:
            client.close().result()
    [sample] = calls(exporter.get_finished_spans(), "SamplingClient.sample")
    assert sample.attributes is not None and sample.attributes["tinker.cancelled"] is True
    assert sample.status.status_code is StatusCode.UNSET and not sample.events


def test_a_clients_future_used_as_the_client_traces_under_its_own_name(exporter: InMemorySpanExporter) -> None:
    """0.16-era code calls the training client's methods on the future of it: the span is the client's (its
    provider), named as that call's x-sdk-method, with the model id once the client is there."""
    with LocalServer() as server:
        client = client_for(server, exporter)
        try:
            training = client.create_lora_training_client(base_model=BASE_MODEL, rank=4)
            training.forward_backward([DATUM], "cross_entropy").result()
            training.forward_backward([DATUM], "cross_entropy").result()
            model_id = training.model_id
        finally:
            client.close().result()
    first, second = calls(exporter.get_finished_spans(), "BackcompatTrainingClientFuture.forward_backward")
    assert not calls(exporter.get_finished_spans(), "TrainingClient.forward_backward")  # the inner call is nested
    assert second.attributes is not None and second.attributes["tinker.model_id"] == model_id
    assert first.end_time is not None and second.end_time is not None
