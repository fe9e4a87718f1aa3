"""A client inherited through ``os.fork()`` (``multiprocessing``'s fork start method) works in the child; only the
calls that were in flight in the parent fail there, at once, with ``InFlightAtForkError``. An inherited
``TrainingClient`` reads and makes samplers in the child but refuses its training writes there, at once, with
``ForkedTrainingClientError`` (parent and child would share the model's seq_ids; tests/tinkex/fanout/test_training_fork.py).

The local server runs in a thread of the parent process, which keeps serving while the child (a real process) is
a client of it over TCP.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import pytest

import tinkex
from tinkex import types
from tinkex.errors import ForkedTrainingClientError
from tinkex.runtime import InFlightAtForkError
from tinkex.testing import FaultRule, LocalServer

MODEL = "tinkex/fake-tiny"
PROMPT = types.ModelInput.from_ints([5, 6, 7])
PARAMS = types.SamplingParams(max_tokens=3, seed=1)
CHILD_LIMIT_S = 30.0

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")


def _datum() -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3, 4]),
        loss_fn_inputs={"target_tokens": [2, 3, 4, 5], "weights": [1.0] * 4},
    )


def _run_child(target: Any, *args: Any) -> dict[str, Any]:
    """Fork a child running ``target(queue, *args)`` (objects are inherited, not pickled); its report."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=target, args=(queue, *args), daemon=True)
    started = time.monotonic()
    process.start()
    try:
        report: dict[str, Any] = queue.get(timeout=CHILD_LIMIT_S)
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    report["wall_s"] = time.monotonic() - started
    assert process.exitcode == 0, report
    return report


def _refused_write(write: Any) -> str:
    """``"refused"`` if ``write`` raised ``ForkedTrainingClientError`` at the call, else what happened."""
    try:
        write()
    except ForkedTrainingClientError:
        return "refused"
    return "sent"


def _sync_child(queue: Any, client: Any, training: Any, sampler: Any, pending: Any) -> None:
    report: dict[str, Any] = {}
    try:
        started = time.monotonic()
        try:
            pending.result(timeout=10)
            report["pending"] = "resolved"
        except InFlightAtForkError as exc:
            report["pending"] = f"InFlightAtForkError: {exc}"
        report["pending_s"] = time.monotonic() - started
        report["tokens"] = sampler.sample(PROMPT, 1, PARAMS).result(timeout=20).sequences[0].tokens
        report["info"] = training.get_info().model_data.model_name
        report["write"] = _refused_write(lambda: training.forward_backward([_datum()], "cross_entropy"))
        started = time.monotonic()
        client.close()  # closes what the child made; leaves the parent's connections alone
        report["close_s"] = time.monotonic() - started
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        report["error"] = repr(exc)
    queue.put(report)


def test_sync_client_created_before_fork_works_in_the_child() -> None:
    with LocalServer(base_models=(MODEL,), long_poll_timeout=0.2, latency_by_endpoint={"optim_step": 3.0}) as server:
        client = tinkex.Client(api_key="tml-fork", base_url=server.base_url, telemetry=False)
        try:
            training = client.create_lora_training_client(MODEL, rank=4)
            sampler = training.save_weights_and_get_sampling_client()
            expected = sampler.sample(PROMPT, 1, PARAMS).result(timeout=20).sequences[0].tokens
            # In flight at the fork, wherever it is: not sent yet, mid-dispatch, or polling (resolves 3 s later).
            pending = training.optim_step(types.AdamParams(learning_rate=1e-4))
            report = _run_child(_sync_child, client, training, sampler, pending)
            assert "error" not in report, report
            assert report["pending"].startswith("InFlightAtForkError: this call was in flight in process")
            assert report["pending_s"] < 1.0  # at once, not after a timeout
            assert report["tokens"] == expected  # same session and sampler, same seeded answer
            assert report["info"] == MODEL and report["write"] == "refused"
            assert report["close_s"] < 2.0
            assert pending.result(timeout=20) is not None  # the parent still gets its own result
            assert sampler.sample(PROMPT, 1, PARAMS).result(timeout=20).sequences[0].tokens == expected
            assert training.forward_backward([_datum()], "cross_entropy").result(timeout=20).metrics  # parent trains on
        finally:
            client.close()


def _mid_dispatch_child(queue: Any, training: Any, pending: Any) -> None:
    report: dict[str, Any] = {}
    try:
        started = time.monotonic()
        try:
            pending.result(timeout=10)
            report["pending"] = "resolved"
        except InFlightAtForkError:
            report["pending"] = "InFlightAtForkError"
        report["pending_s"] = time.monotonic() - started
        # A training write here is refused at once (the model's seq_ids are the parent's), never left waiting for
        # the turn of the request caught mid-dispatch.
        started = time.monotonic()
        report["write"] = _refused_write(lambda: training.forward_backward([_datum()], "cross_entropy"))
        report["step"] = _refused_write(lambda: training.optim_step(types.AdamParams(learning_rate=1e-4)))
        report["write_s"] = time.monotonic() - started
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        report["error"] = repr(exc)
    queue.put(report)


def test_a_training_request_mid_dispatch_at_the_fork_does_not_block_the_childs_requests() -> None:
    slow_submit = FaultRule(endpoint="optim_step", delay=3.0)  # the submit's answer (its future id) comes 3 s late
    with LocalServer(base_models=(MODEL,), long_poll_timeout=0.2, faults=[slow_submit]) as server:
        client = tinkex.Client(api_key="tml-fork", base_url=server.base_url, telemetry=False)
        try:
            training = client.create_lora_training_client(MODEL, rank=4).result(timeout=20)
            pending = training.optim_step(types.AdamParams(learning_rate=1e-4))
            deadline = time.monotonic() + 10
            while not server.ledger.received("optim_step") and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.ledger.received("optim_step") and not server.ledger.executions("optim_step")
            report = _run_child(_mid_dispatch_child, training, pending)  # forked while the submit waits
            assert "error" not in report, report
            assert report["pending"] == "InFlightAtForkError" and report["pending_s"] < 1.0
            assert report["write"] == report["step"] == "refused" and report["write_s"] < 1.0
            # The parent's request was not disturbed: it gets its own answer, and its turn passes on as usual.
            assert pending.result(timeout=20) is not None
            assert training.forward_backward([_datum()], "cross_entropy").result(timeout=20).metrics
        finally:
            client.close()


def _async_child(queue: Any, sampler: Any, training: Any) -> None:
    async def main() -> dict[str, Any]:
        response = await sampler.sample_async(PROMPT, 1, PARAMS)
        info = await training.get_info_async()
        try:
            await training.forward_backward_async([_datum()], "cross_entropy")
            write = "sent"
        except ForkedTrainingClientError:
            write = "refused"
        return {"tokens": response.sequences[0].tokens, "info": info.model_data.model_name, "write": write}

    try:
        report = asyncio.run(asyncio.wait_for(main(), 20))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        report = {"error": repr(exc)}
    queue.put(report)


def test_async_client_created_before_fork_works_in_the_child() -> None:
    with LocalServer(base_models=(MODEL,), long_poll_timeout=0.2) as server:

        async def parent() -> None:
            client = tinkex.Client(api_key="tml-fork", base_url=server.base_url, telemetry=False)
            try:
                training = await client.create_lora_training_client_async(MODEL, rank=4)
                sampler = await training.save_weights_and_get_sampling_client_async()
                expected = (await sampler.sample_async(PROMPT, 1, PARAMS)).sequences[0].tokens
                # Forked from inside the running loop, as multiprocessing does when started from async code.
                report = _run_child(_async_child, sampler, training)
                assert "error" not in report, report
                assert report["tokens"] == expected and report["info"] == MODEL and report["write"] == "refused"
                # The parent's loop and connections are untouched by the child.
                assert (await sampler.sample_async(PROMPT, 1, PARAMS)).sequences[0].tokens == expected
            finally:
                await client.aclose()

        asyncio.run(asyncio.wait_for(parent(), 60))
