"""Fixtures for the tinkex SDK tests. Helpers live in ``sdk_helpers`` (this directory is put on ``sys.path``,
since the suite runs in importlib mode, where test directories are not importable packages)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sdk_helpers import WireFake  # noqa: E402

from tinkex.testing import LocalServer  # noqa: E402


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def wire() -> WireFake:
    return WireFake()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(long_poll_timeout=0.2) as running:
        yield running
