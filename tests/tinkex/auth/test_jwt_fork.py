"""A client with JWTs inherited through ``fork`` keeps working in the child, even when the parent was in the middle
of an exchange: the child's requests obtain tokens of their own, over connections of their own (the parent's
exchange, renewal and connections belong to a loop the child does not run)."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

import tinkex
from tinkex import types
from tinkex.testing import FaultRule, LocalServer
from tinkex.types import ClientConfigResponse

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")

MODEL = "Qwen/Qwen3-8B"


def datum() -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints([5, 6, 7, 8]),
        loss_fn_inputs={"target_tokens": [6, 7, 8, 9], "weights": [1.0, 1.0, 1.0, 1.0]},
    )


def child(queue: Any, client: tinkex.Client, training: tinkex.TrainingClient) -> None:
    report: dict[str, Any] = {}
    try:
        started = time.monotonic()
        for _ in range(3):
            # A read: an inherited TrainingClient refuses training writes in a child (ForkedTrainingClientError,
            # docs/fanout.md), and a read needs a token all the same.
            assert training.get_info().model_id == training.model_id
            time.sleep(0.7)  # past renewal points: the child renews on its own
        report["seconds"] = time.monotonic() - started
        client.close()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        report["error"] = repr(exc)
    queue.put(report)


def test_a_forked_child_gets_tokens_of_its_own_while_the_parent_exchanges() -> None:
    flags = ClientConfigResponse(pjwt_auth_enabled=True)
    with LocalServer(client_config=flags, jwt_lifetime=1.0) as server:
        client = tinkex.Client(api_key="tml-jwt-fork-0123456789", base_url=server.base_url, telemetry=False)
        try:
            training = client.create_lora_training_client(MODEL, rank=4).result(30)
            training.forward_backward([datum()], "cross_entropy").result(20)
            # The parent's next exchange hangs for 3 s: the fork happens while it is in flight.
            server.faults.add(FaultRule(endpoint="auth_token", delay=3.0, count=1))
            time.sleep(0.6)
            context = multiprocessing.get_context("fork")
            queue = context.Queue()
            process = context.Process(target=child, args=(queue, client, training), daemon=True)
            process.start()
            report = queue.get(timeout=60)
            process.join(10)
        finally:
            client.close()
    assert "error" not in report, report
    assert report["seconds"] < 20
