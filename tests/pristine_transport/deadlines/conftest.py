"""Fixtures of the deadline tests; ``scripted_server`` (the scripted raw-socket server) is importable from here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
