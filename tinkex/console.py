"""Links into the Tinker Console (the web UI) for sessions and training runs.

``TINKER_CONSOLE_URL`` points them at another console (a staging deployment, a local mock).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import quote

from . import env_names

__all__ = ["DEFAULT_CONSOLE_URL", "console_base_url", "session_console_url", "training_run_console_url"]

DEFAULT_CONSOLE_URL = "https://tinker.thinkingmachines.ai"


def console_base_url(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get(env_names.CONSOLE_URL) or DEFAULT_CONSOLE_URL).rstrip("/")


def session_console_url(session_id: str | None, env: Mapping[str, str] | None = None) -> str:
    """The page of ``session_id``, or the sessions list while there is no session yet."""
    if session_id is None:
        return f"{console_base_url(env)}/sessions"
    return f"{console_base_url(env)}/sessions/{quote(session_id, safe='')}"


def training_run_console_url(training_run_id: str, env: Mapping[str, str] | None = None) -> str:
    return f"{console_base_url(env)}/training_runs/{quote(training_run_id, safe=':')}"
