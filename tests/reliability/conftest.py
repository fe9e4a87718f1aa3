"""Fixtures of the reliability tests (issue 14: errors about writes tell the truth). Helpers live in
``reliability_helpers`` (this directory is put on ``sys.path``: the suite runs in importlib mode)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
