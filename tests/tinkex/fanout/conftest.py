"""Fixtures of the fan-out tests. This directory goes on ``sys.path`` so that worker processes (spawn, Ray) import
the worker functions by name from ``fanout_workers``, as they would from a user's own module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fanout_checks import API_KEY, SAMPLE_LATENCY_S  # noqa: E402 - importable once the directory is on the path
from fanout_workers import MODEL  # noqa: E402

import tinkex  # noqa: E402
from tinkex import types  # noqa: E402
from tinkex.sampling_client import SamplingClient  # noqa: E402
from tinkex.testing import LocalServer  # noqa: E402


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(base_models=(MODEL,), latency_by_endpoint={"asample": SAMPLE_LATENCY_S}) as running:
        yield running


@pytest.fixture
def parent(server: LocalServer) -> Iterator[tuple[tinkex.Client, SamplingClient]]:
    """The parent's client and a sampler whose session exists (one sample made), closed at the end."""
    client = tinkex.Client(api_key=API_KEY, base_url=server.base_url, telemetry=False)
    try:
        sampler = client.create_sampling_client(base_model=MODEL)
        sampler.sample(types.ModelInput.from_ints([1, 2]), 1, types.SamplingParams(max_tokens=2)).result(timeout=30)
        yield client, sampler
    finally:
        client.close()
