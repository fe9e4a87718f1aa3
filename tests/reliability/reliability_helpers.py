"""Shared by the reliability tests: a client of a LocalServer that ignores the developer's ``TINKER_*`` environment,
a small datum, and what the server's ledger says ran."""

from __future__ import annotations

from typing import Any

import tinkex
from tinkex import types
from tinkex.testing import LocalServer

API_KEY = "tml-reliability-0123456789"
BASE_MODEL = "Qwen/Qwen3-8B"


def client_of(server: LocalServer, **kwargs: Any) -> tinkex.Client:
    kwargs.setdefault("telemetry", False)
    return tinkex.Client(api_key=API_KEY, base_url=server.base_url, env={}, **kwargs)


def datum(tokens: list[int]) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens),
        loss_fn_inputs={"target_tokens": [t + 1 for t in tokens], "weights": [1.0] * len(tokens)},
    )


def ran(server: LocalServer, model_id: str) -> list[tuple[str, int | None]]:
    """The training requests the server executed for ``model_id``, as (endpoint, seq_id), in order."""
    scope = f"train:{model_id}"
    return [(e.endpoint, e.seq_id) for e in server.ledger.executions() if e.seq_scope == scope]


def refused(server: LocalServer, endpoint: str) -> list[int | None]:
    """The statuses the server answered to ``endpoint``, in order (re-sends included)."""
    return [r.status for r in server.ledger.received(endpoint)]
