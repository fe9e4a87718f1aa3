"""The API key and every JWT appear nowhere: with DEBUG on for every logger (ours and the HTTP libraries', HTTP/2 so
hpack prints each header it encodes), through renewals, a revoked token's refusal and replay, an error body echoing
the key, and a renewal outage ending in TokenUnavailableError: not in log lines, exception messages, reprs and cause
chains, span attributes and events (in-memory exporter), or telemetry events. The credential command's output (the
key again) is checked the same way."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tinkex
from tests import secret_hunt
from tests.secret_hunt import exception_texts
from tinkex import types
from tinkex.testing import FaultRule, LocalServer
from tinkex.types import ClientConfigResponse

KEY = "tml-jwt-secrets-key-0123456789abcdef"
MODEL = "Qwen/Qwen3-8B"


@pytest.fixture
def debug_everything() -> Iterator[list[str]]:
    with secret_hunt.debug_everything() as lines:
        yield lines


def secret_parts(secrets: list[str]) -> list[str]:
    """Each secret, and each JWT's payload and signature on their own (a leak of a part is a leak)."""
    parts = list(secrets)
    for secret in secrets:
        if secret.count(".") == 2:
            parts += secret.split(".")[1:]
    return parts


def assert_clean(where: str, texts: list[str], secrets: list[str]) -> None:
    parts = secret_parts(secrets)
    for text in texts:
        for part in parts:
            assert part not in text, f"{where} leaks a secret: {text[:300]}"


def datum() -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints([5, 6, 7, 8]),
        loss_fn_inputs={"target_tokens": [6, 7, 8, 9], "weights": [1.0, 1.0, 1.0, 1.0]},
    )


def test_neither_the_key_nor_any_jwt_appears_anywhere(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    errors: list[BaseException] = []
    reprs: list[str] = []
    flags = ClientConfigResponse(pjwt_auth_enabled=True, credential_default_source="credential_cmd")
    faults = [FaultRule(endpoint="create_model", status=400, body={"detail": f"you sent {KEY}"}, count=1)]
    with LocalServer(client_config=flags, jwt_lifetime=1.5, faults=faults) as server:
        client = tinkex.Client(
            base_url=server.base_url,
            telemetry=True,
            tracer_provider=provider,
            transport=lambda: httpx.AsyncHTTPTransport(http2=True, http1=False),
            env={"TINKER_CREDENTIAL_CMD": f"echo {KEY}"},  # the key reaches the client only as the command's output
        )
        lines: list[str] = request.getfixturevalue("debug_everything")
        try:
            try:
                client.create_lora_training_client(MODEL, rank=4).result(30)
            except tinkex.BadRequestError as exc:  # the 400 echoing the key
                errors.append(exc)
            training = client.create_lora_training_client(MODEL, rank=4).result(30)
            started = time.monotonic()
            while time.monotonic() - started < 3.5:  # a few renewals
                training.forward_backward([datum()], "cross_entropy").result(30)
            server.call(lambda api: api.jwt.revoke_issued())  # a refusal, a replacement, a replay
            training.forward_backward([datum()], "cross_entropy").result(30)
            outage = FaultRule(endpoint="auth_token", status=503, count=10_000)
            server.faults.add(outage)
            time.sleep(2.0)  # the current token expires while renewal fails
            try:
                training.forward_backward([datum()], "cross_entropy").result(30)
            except tinkex.AuthenticationError as exc:
                errors.append(exc)
            server.faults.remove(outage)
            reprs += [repr(client), repr(client.holder.config), repr(client.holder.auth), repr(client.holder.auth.jwt)]
            reprs += [repr(training), repr(client.holder.redactor)]
        finally:
            client.close()
        tokens = server.call(lambda api: list(api.jwt.tokens))
        batches = server.telemetry_batches()
    secrets = [KEY, *tokens]
    assert len(tokens) >= 3, "no renewals happened"
    assert [type(e).__name__ for e in errors] == ["BadRequestError", "TokenUnavailableError"]
    assert "tml-…cdef" in str(errors[0])  # the echo arrived, masked
    assert any(line.startswith("hpack") for line in lines), "HTTP/2 headers were not logged: nothing was tested"
    assert any("auth/token" in line for line in lines)
    assert_clean("log line", lines, secrets)
    for error in errors:
        assert_clean(type(error).__name__, exception_texts(error), secrets)
    assert_clean("repr", reprs, secrets)
    spans = [
        repr(span.name) + repr(dict(span.attributes or {})) + repr([dict(e.attributes or {}) for e in span.events])
        for span in exporter.get_finished_spans()
    ]
    assert any("auth_token" in text for text in spans)
    assert_clean("span", spans, secrets)
    telemetry = [msgspec.json.encode(batch).decode() for batch in batches]
    assert telemetry
    assert_clean("telemetry event", telemetry, secrets)
