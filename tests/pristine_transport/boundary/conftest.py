"""Fixtures for the boundary tests. ``raw_server`` (the scripted raw-socket server) and ``boundary_helpers`` are put
on ``sys.path``, since the suite runs in importlib mode, where test directories are not importable packages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["httpx", "aiohttp", "pyqwest"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each base transport the manifest can name."""
    return str(request.param)
