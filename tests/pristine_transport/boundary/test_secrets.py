"""Case 3 of the boundary: with DEBUG on for every logger (turned on by the application after the client exists)
and HTTP/2, every error path is provoked with a server that echoes the secrets back; the API key and the Cloudflare
secret appear nowhere: logs, exception messages, reprs and cause chains, span attributes, telemetry events."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import msgspec
import pytest
from boundary_helpers import API_KEY, CF_SECRET, client_env, fast_manifest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tinkex
from pristine_transport.client import ManifestClient
from pristine_transport.errors import APIConnectionError
from tests import secret_hunt
from tests.secret_hunt import exception_texts
from tinkex import types
from tinkex.testing import FaultRule, LocalServer

SECRETS = (API_KEY, CF_SECRET)
ECHO = f"you sent {API_KEY} with {CF_SECRET}"


@pytest.fixture
def debug_everything() -> Iterator[list[str]]:
    with secret_hunt.debug_everything() as lines:
        yield lines


def assert_clean(where: str, texts: list[str]) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{where}: {text[:300]}"


async def refused_connection_error() -> BaseException:
    """A connection error on the Tinker manifest over HTTP/2, not retried (its retries are the retry layer's
    business), to a port nothing listens on."""
    manifest = fast_manifest(healthz={"retry": "none"})
    env = {**client_env("httpx"), "TINKEX_HTTP_BACKEND": "httpx"}
    base = httpx.AsyncHTTPTransport(http2=True, http1=False)
    async with ManifestClient(manifest, base_url="http://127.0.0.1:9", env=env, base_transport=base) as client:
        try:
            await client.call("healthz")
        except APIConnectionError as exc:
            return exc
    raise AssertionError("a refused connection did not raise")


def datum() -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3]),
        loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [1.0, 1.0, 1.0]},
    )


def test_no_secret_anywhere_with_debug_logging_and_http2(request: pytest.FixtureRequest) -> None:
    faults = [
        FaultRule(endpoint="create_model", status=400, body={"detail": ECHO}, count=1),
        FaultRule.request_failed("forward_backward", category="user", message=ECHO),
        FaultRule(endpoint="retrieve_future", status=403, body={"detail": ECHO}, count=1, skip=2),
    ]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    errors: list[BaseException] = []
    with LocalServer(long_poll_timeout=0.2, faults=faults) as server:
        env = {"CLOUDFLARE_ACCESS_CLIENT_ID": "cf-id", "CLOUDFLARE_ACCESS_CLIENT_SECRET": CF_SECRET}
        client = tinkex.Client(
            api_key=API_KEY,
            base_url=server.base_url,
            env=env,
            telemetry=True,
            tracer_provider=provider,
            transport=lambda: httpx.AsyncHTTPTransport(http2=True, http1=False),
        )
        lines: list[str] = request.getfixturevalue("debug_everything")  # turned on after the client exists
        try:
            for attempt in range(2):
                try:
                    training = client.create_lora_training_client("Qwen/Qwen3-8B").result()
                    break
                except Exception as exc:  # the first create_model answers 400 with the echo
                    errors.append(exc)
            for _ in range(2):
                try:
                    training.forward_backward([datum()], "cross_entropy").result(10)
                except Exception as exc:  # a user-category failure echoing the key; a 403 poll echoing it
                    errors.append(exc)
            errors.append(anyio.run(refused_connection_error))  # its cause chain must be clean too
        finally:
            client.close()
        batches = server.telemetry_batches()
    assert [type(error).__name__ for error in errors] == [
        "BadRequestError",
        "RequestFailedError",
        "FutureRetrieveError",
        "APIConnectionError",
    ]
    assert all("tml-…cdef" in str(error) for error in errors[:3])  # the echo arrived, masked
    assert any("http2" in line.lower() or line.startswith(("hpack", "h2")) for line in lines)
    assert any(line.startswith("hpack") for line in lines), "HTTP/2 was not in use"
    assert_clean("log line", lines)
    for error in errors:
        assert_clean(f"{type(error).__name__}", exception_texts(error))
    span_texts = [
        repr(dict(span.attributes or {})) + repr([dict(event.attributes or {}) for event in span.events])
        for span in exporter.get_finished_spans()
    ]
    assert span_texts
    assert_clean("span", span_texts)
    telemetry = [msgspec.json.encode(batch).decode() for batch in batches]
    assert telemetry and any("user_error" in t or "UNHANDLED" in t for t in telemetry)
    assert_clean("telemetry event", telemetry)
