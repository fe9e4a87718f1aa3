"""Fixtures of the fan-out tests. This directory goes on ``sys.path`` so that worker processes (spawn, Ray) import
the worker functions by name from ``fanout_workers``, as they would from a user's own module."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
