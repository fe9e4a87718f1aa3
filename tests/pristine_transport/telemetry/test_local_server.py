"""Spans and metrics of tinkex against a real LocalServer on 127.0.0.1: the span tree of a sample that was retried,
backed off on a 429 and polled through "try again" answers; and a run under 30% injected faults in which no CLIENT
span is inside another and every HTTP exchange is exactly one CLIENT span (or, for a poll answered "not ready yet",
one event on its future's span)."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
from opentelemetry.semconv.attributes import http_attributes
from opentelemetry.trace import SpanKind

import tinkex
from tinkex import types
from tinkex.metrics import REQUEST_ATTEMPTS, REQUEST_RETRIES, REQUESTS, Metrics, MetricsSpanProcessor
from tinkex.testing import FaultRule, LocalServer

from .conftest import Spans

MODEL = "tinkex/fake-tiny"
HEARTBEAT = "/api/v1/session_heartbeat"


class CountingTransport(httpx.AsyncBaseTransport):
    """The base transport, counting every HTTP exchange by path (those that fail included)."""

    def __init__(self, sent: Counter[str], lock: threading.Lock) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._sent = sent
        self._lock = lock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self._sent[request.url.path] += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def client_for(server: LocalServer, spans: Spans, sent: Counter[str]) -> tinkex.Client:
    lock = threading.Lock()
    return tinkex.Client(
        api_key="tml-telemetry",
        base_url=server.base_url,
        telemetry=False,
        tracer_provider=spans.provider,
        transport=lambda: CountingTransport(sent, lock),
    )


def test_span_tree_of_a_sample_retried_backed_off_and_polled_through_try_again(spans: Spans) -> None:
    metrics = Metrics()
    spans.provider.add_span_processor(MetricsSpanProcessor(metrics))
    faults = [
        FaultRule(endpoint="asample", status=503, count=1),
        FaultRule(endpoint="asample", status=429, count=1),
        FaultRule.try_again(count=2, queue_state="paused_capacity", future_endpoint="asample"),
    ]
    sent: Counter[str] = Counter()
    with LocalServer(faults=faults, seed=3, base_models=(MODEL,)) as server:
        client = client_for(server, spans, sent)
        try:
            sampler = client.create_sampling_client(base_model=MODEL)
            prompt = types.ModelInput.from_ints([5, 6, 7])
            result = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=3, seed=1)).result(timeout=60)
            assert len(result.sequences) == 1
        finally:
            client.close()

    (future,) = [s for s in spans.internal() if s.name == "future asample"]
    assert future.attributes["tinker.request_id"] == future.attributes["pristine.future.request_id"]
    assert future.attributes["pristine.future.not_ready_polls"] == 2
    not_ready = [e for e in future.events if e.name == "poll.not_ready"]
    assert [e.attributes["http.response.status_code"] for e in not_ready] == [200, 200]
    assert [e.attributes["queue.state"] for e in not_ready] == ["paused_capacity"] * 2

    under_future = spans.children_of(future)
    (submit,) = [s for s in under_future if s.name == "asample"]
    assert submit.kind is SpanKind.INTERNAL
    assert [e.name for e in submit.events] == ["retry.backoff", "backpressure.backoff"]
    assert submit.attributes["pristine.retries"] == 1 and submit.attributes["pristine.response.status_code"] == 200
    assert submit.attributes["tinker.idempotency_key"]
    attempts = spans.children_of(submit)
    assert [s.kind for s in attempts] == [SpanKind.CLIENT] * 3
    assert [s.attributes[http_attributes.HTTP_RESPONSE_STATUS_CODE] for s in attempts] == [503, 429, 200]
    assert [s.attributes.get(http_attributes.HTTP_REQUEST_RESEND_COUNT) for s in attempts] == [None, 1, 2]
    (final_poll,) = [s for s in under_future if s.name == "retrieve_future"]
    (poll_exchange,) = spans.children_of(final_poll)
    assert poll_exchange.kind is SpanKind.CLIENT and poll_exchange.attributes["http.response.status_code"] == 200
    assert sent["/api/v1/asample"] == 3 and sent["/api/v1/retrieve_future"] == 3
    spans.assert_no_client_span_inside_a_client_span()

    snapshot = metrics.snapshot()
    assert snapshot.counter_total(REQUESTS, {"endpoint": "asample"}) == 1
    assert snapshot.counter(REQUEST_RETRIES, {"endpoint": "asample"}) == 1
    assert snapshot.counter(REQUEST_ATTEMPTS, {"endpoint": "asample"}) == 3
    assert snapshot.counter_total(REQUESTS, {"endpoint": "retrieve_future"}) == 3
    assert snapshot.counter(REQUEST_ATTEMPTS, {"endpoint": "retrieve_future"}) == 3


def test_under_30_percent_faults_every_exchange_is_exactly_one_client_span(spans: Spans) -> None:
    faults = [  # about 30% of the requests of every endpoint go wrong
        FaultRule(status=503, rate=0.15, after_execute=True),
        FaultRule(endpoint="asample", status=429, rate=0.1),
        FaultRule(endpoint="retrieve_future", status=408, rate=0.1, queue_state="paused_capacity"),
        FaultRule(endpoint="retrieve_future", kind="try_again", rate=0.1),
        FaultRule(drop_connection=True, rate=0.15, after_execute=True),
    ]
    sent: Counter[str] = Counter()
    with LocalServer(faults=faults, seed=11, base_models=(MODEL,)) as server:
        client = client_for(server, spans, sent)
        try:
            training = client.create_lora_training_client(MODEL, rank=4)
            datum = types.Datum(
                model_input=types.ModelInput.from_ints([1, 2, 3, 4]),
                loss_fn_inputs={"target_tokens": [2, 3, 4, 5], "weights": [1.0] * 4},
            )
            for _ in range(6):
                fwd_bwd = training.forward_backward([datum], "cross_entropy")
                optim = training.optim_step(types.AdamParams(learning_rate=1e-4))
                fwd_bwd.result(timeout=120)
                optim.result(timeout=120)
            sampler = client.create_sampling_client(base_model=MODEL)
            prompt = types.ModelInput.from_ints([5, 6, 7])
            futures = [sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2, seed=i)) for i in range(8)]
            assert all(len(f.result(timeout=120).sequences) == 1 for f in futures)
        finally:
            client.close()
        fired = [server.faults.fired(rule) for rule in faults]
        assert fired[0] + fired[1] + fired[4] >= 2 and sum(fired) >= 5, fired  # the run really went through faults

    spans.assert_no_client_span_inside_a_client_span()
    by_id = spans.by_id()
    client_spans = [s for s in spans.client() if not s.attributes["url.full"].endswith(HEARTBEAT)]
    for span in client_spans:  # every exchange belongs to a logical request's INTERNAL span
        assert span.parent is not None
        parent = by_id[span.parent.span_id]
        assert parent.kind is SpanKind.INTERNAL and parent.attributes["pristine.endpoint"] == parent.name
    for request_span in spans.internal():
        if "pristine.endpoint" in (request_span.attributes or {}):
            resends = [s.attributes.get("http.request.resend_count", 0) for s in spans.children_of(request_span)]
            assert sorted(resends) == list(range(len(resends)))
    not_ready = sum(
        s.attributes.get("pristine.future.not_ready_polls", 0) for s in spans.internal() if s.name.startswith("future ")
    )
    exchanges = sum(count for path, count in sent.items() if path != HEARTBEAT)
    assert exchanges == len(client_spans) + not_ready
    errors = [(s.attributes["url.full"].rsplit("/", 1)[-1], s.attributes.get("error.type")) for s in client_spans if s.attributes.get("error.type")]
    assert any(s.attributes.get("http.request.resend_count") for s in client_spans), (errors, sent)  # re-sends happened
