"""Client-side wiring over a real loopback LocalServer: typed cancellation, sequence ids from the asample submit
reply, the X-Tinkex-Version header, and per-client deadlines on writes that are not futures."""

from __future__ import annotations

import time
from typing import Any

import httpx
import msgspec
import pytest

import tinkex
from tinkex import types
from tinkex.config import TINKEX_VERSION
from tinkex.testing import LocalServer

MODEL = "tinkex/fake-tiny"
PROMPT = types.ModelInput.from_ints([5, 6, 7])
PARAMS = types.SamplingParams(max_tokens=4, seed=3)


def _client(server: LocalServer, **kwargs: Any) -> tinkex.Client:
    return tinkex.Client(api_key="tml-wiring", base_url=server.base_url, telemetry=False, **kwargs)


class _DropResultSequenceIds(httpx.AsyncBaseTransport):
    """A real HTTP transport whose ``retrieve_future`` answers lose every ``sequence_id``, as the official
    service's sample results do (it names the ids only in the asample submit reply, recorded in ``submitted``).
    Protobuf results (the 0.38 dialect's) pass as they are: their message has no ``sequence_id``."""

    def __init__(self, submitted: list[list[str]]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._submitted = submitted

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        path = request.url.path
        if not path.endswith(("/retrieve_future", "/asample")):
            return response
        content = await response.aread()
        if "protobuf" in response.headers.get("content-type", ""):
            return httpx.Response(response.status_code, headers=response.headers, content=content, request=request)
        body = msgspec.json.decode(content)
        if path.endswith("/asample"):
            self._submitted.append(body["sample_sequence_ids"])
        elif isinstance(body, dict) and isinstance(body.get("sequences"), list):
            for sequence in body["sequences"]:
                sequence.pop("sequence_id", None)
            content = msgspec.json.encode(body)
        dropped = ("content-length", "content-encoding")
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in dropped]
        return httpx.Response(response.status_code, headers=headers, content=content, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def test_sequence_ids_come_from_the_submit_reply_and_provenance_naming_them_is_accepted() -> None:
    with LocalServer(base_models=(MODEL,), long_poll_timeout=0.2) as server:
        submitted: list[list[str]] = []
        client = _client(server, transport=lambda: _DropResultSequenceIds(submitted))
        try:
            training = client.create_lora_training_client(MODEL, rank=4).result(timeout=20)
            sampler = training.save_weights_and_get_sampling_client()
            response = sampler.sample(PROMPT, 3, PARAMS).result(timeout=20)
            ids = [sequence.sequence_id for sequence in response.sequences]
            # The server's own ids, in order: the results reached us without them, the submit reply named them.
            assert submitted == [ids]
            assert all(ids) and len(set(ids)) == 3

            first = response.sequences[0]
            tokens = PROMPT.to_ints() + first.tokens
            datum = types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
            ).with_provenance(
                model_input=[
                    types.PromptProvenanceSpan(sequence_id=first.sequence_id, offset=0, length=PROMPT.length),
                    types.SampledProvenanceSpan(sequence_id=first.sequence_id, offset=0, length=len(first.tokens) - 1),
                ],
                loss_fn_inputs=[
                    types.PromptProvenanceSpan(sequence_id=first.sequence_id, offset=1, length=PROMPT.length - 1),
                    types.SampledProvenanceSpan(sequence_id=first.sequence_id, offset=0, length=len(first.tokens)),
                ],
            )
            output = training.forward_backward([datum], "cross_entropy").result(timeout=20)
            assert output.metrics
        finally:
            client.close()


def test_a_sample_cancelled_on_the_server_is_retrieved_as_request_cancelled() -> None:
    with LocalServer(base_models=(MODEL,), long_poll_timeout=0.2, latency_by_endpoint={"asample": 30.0}) as server:
        client = _client(server)
        try:
            sampler = client.create_sampling_client(base_model=MODEL).result(timeout=20)
            pending = sampler.sample(PROMPT, 1, PARAMS)
            deadline = time.monotonic() + 10
            while not server.ledger.received("retrieve_future") and time.monotonic() < deadline:
                time.sleep(0.02)  # polling: the client has the future's request id
            (execution,) = server.ledger.executions("asample")
            assert pending.cancel()  # the sampler abandons it on the server too (cancel_future)
            while not server.ledger.executions("cancel_future") and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.ledger.executions("cancel_future")

            async def retrieve() -> Any:  # a fresh retrieve of that future, through the client's own resolver
                handle = client.holder.clients().futures.handle(
                    execution.request_id, result_type=types.SampleResponse
                )
                return await handle

            with pytest.raises(tinkex.RequestCancelledError) as caught:
                client.holder.runtime.run(retrieve(), timeout=10)
            assert isinstance(caught.value, tinkex.RequestFailedError)
            assert isinstance(caught.value, tinkex.TinkerError)
            assert caught.value.request_id == execution.request_id
        finally:
            client.close()


def test_every_request_carries_the_tinkex_version_header() -> None:
    with LocalServer(base_models=(MODEL,), long_poll_timeout=0.2) as server:
        client = _client(server)
        try:
            sampler = client.create_sampling_client(base_model=MODEL).result(timeout=20)
            sampler.sample(PROMPT, 1, PARAMS).result(timeout=20)
        finally:
            client.close()
        received = server.ledger.received()
        assert {r.endpoint for r in received} >= {"create_session", "create_sampling_session", "asample"}
        assert {r.headers.get("x-tinkex-version") for r in received} == {TINKEX_VERSION}
        assert TINKEX_VERSION != "{tinkex_version}"


def test_new_errors_are_tinker_errors() -> None:
    for error in (tinkex.DeadlineExceededError, tinkex.InFlightAtForkError, tinkex.RequestCancelledError):
        assert issubclass(error, tinkex.TinkerError)
        assert error.__name__ in tinkex.__all__
