"""Limits a 0.38 server sets in client/config override the manifest's defaults: the response-bytes budget that
metadata-only results hold (``inflight_response_bytes_semaphore_size``)."""

from __future__ import annotations

from typing import Any

import pytest

import tinkex
from tinkex import types as t
from tinkex.config import load_tinker_manifest
from tinkex.testing import LocalServer
from tinkex.wire.server_limits import response_budget_bytes

MANIFEST = load_tinker_manifest()
MANIFEST_BUDGET = MANIFEST.futures.metadata_only.budget_bytes  # type: ignore[union-attr]
DATUM = t.Datum(model_input=t.ModelInput.from_ints([1, 2, 3, 4]), loss_fn_inputs={"target_tokens": [2, 3, 4, 5]})


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (None, MANIFEST_BUDGET),  # a 0.16 server, or forced 0.16: the manifest's
        (t.ClientConfigResponse(), 52_428_800),  # the official 0.38 default
        (t.ClientConfigResponse(inflight_response_bytes_semaphore_size=1234), 1234),
        (t.ClientConfigResponse(inflight_response_bytes_semaphore_size=0), MANIFEST_BUDGET),  # nonsense: ignored
    ],
)
def test_the_servers_budget_overrides_the_manifests(flags: t.ClientConfigResponse | None, expected: int) -> None:
    assert response_budget_bytes(flags, MANIFEST) == expected


def _budget_after_training(server: LocalServer, env: dict[str, str]) -> tuple[int, Any]:
    client = tinkex.Client(api_key="tml-limits", base_url=server.base_url, env=env, telemetry=False)
    try:
        training = client.create_lora_training_client("Qwen/Qwen3-8B", rank=4)
        output = training.forward_backward([DATUM, DATUM], "cross_entropy").result(20)

        async def budget() -> int:
            found = client.holder.clients().futures.response_budget
            assert found is not None
            assert found.available == found.budget, "every metadata-only result gave its bytes back"
            return found.budget

        return client.holder.runtime.submit(budget()).result(10), output
    finally:
        client.close()


def test_a_metadata_only_result_is_held_in_the_servers_budget() -> None:
    flags = t.ClientConfigResponse(inflight_response_bytes_semaphore_size=1234)
    with LocalServer(client_config=flags, metadata_only_threshold=1) as server:
        budget, output = _budget_after_training(server, {})
        assert budget == 1234
        assert len(output.loss_fn_outputs) == 2
        polls = server.ledger.received("retrieve_future")
        assert any(r.status == 200 for r in polls)
    with LocalServer(client_config=flags, metadata_only_threshold=1) as server:
        assert _budget_after_training(server, {"TINKEX_WIRE_DIALECT": "0.16"})[0] == MANIFEST_BUDGET
