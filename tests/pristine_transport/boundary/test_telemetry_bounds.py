"""Case 5 of the boundary, telemetry: a failing events endpoint costs one batch its own small budget of sends (not
multiplied by HTTP retries), and an explicit ``telemetry=`` argument wins over ``TINKER_TELEMETRY``."""

from __future__ import annotations

import logging

import pytest
from boundary_helpers import API_KEY, CF_SECRET, client_env, fast_manifest
from raw_server import RawServer, http_response

import tinkex
from pristine_transport.client import ManifestClient
from pristine_transport.events import EventReporter
from tinkex.testing import LocalServer

pytestmark = pytest.mark.anyio


async def no_wait(_: float) -> None:
    return None


async def test_a_failing_batch_is_sent_within_its_own_budget_and_dropped(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    echo = f'{{"detail":"rejected {API_KEY} {CF_SECRET}"}}'.encode()
    with RawServer([http_response(echo, status="500 Internal Server Error")]) as server:
        async with ManifestClient(fast_manifest(), base_url=server.url, env=client_env(backend)) as client:
            reporter = EventReporter(client, envelope=lambda batch: {"events": batch}, enabled=True, sleep=no_wait)
            for index in range(3):
                assert reporter.enqueue({"n": index})
            with caplog.at_level(logging.WARNING):
                await reporter.flush()
    budget = client.manifest.events.failed_batch_retries + 1  # type: ignore[union-attr]
    assert len(server.requests) == budget == 4  # not 4 x (1 + HTTP retries)
    assert reporter.dropped == 3 and reporter.sent == 0
    assert "Dropping a batch of 3 events after 4 failed attempts" in caplog.text
    assert API_KEY not in caplog.text and CF_SECRET not in caplog.text


def sessions_with_telemetry(server: LocalServer, **kwargs: object) -> int:
    client = tinkex.Client(api_key=API_KEY, base_url=server.base_url, **kwargs)  # type: ignore[arg-type]
    try:
        client.create_lora_training_client("Qwen/Qwen3-8B").result()
    finally:
        client.close()
    return len(server.telemetry_batches())


def test_an_explicit_telemetry_argument_wins_over_the_environment() -> None:
    with LocalServer(long_poll_timeout=0.2) as server:
        assert sessions_with_telemetry(server, telemetry=True, env={"TINKER_TELEMETRY": "0"}) >= 1
    with LocalServer(long_poll_timeout=0.2) as server:
        assert sessions_with_telemetry(server, telemetry=False, env={"TINKER_TELEMETRY": "1"}) == 0
    with LocalServer(long_poll_timeout=0.2) as server:
        assert sessions_with_telemetry(server, env={"TINKER_TELEMETRY": "0"}) == 0
