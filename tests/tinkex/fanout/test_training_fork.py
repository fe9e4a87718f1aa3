"""A ``TrainingClient`` inherited through fork refuses, in the child, every request that takes the model's training
seq_id, with ``ForkedTrainingClientError``; reads and sampling keep working there, and the parent trains on with
every request it sends executed exactly once.

Why: the server runs one model's training requests as one ordered sequence of seq_ids, and parent and child
would number theirs from the same counter. Before this rule the parent's next ``forward_backward`` carried the
seq_id the child had just used, and the server answered it from its replay cache without running it: a lost
training step with no error. The local server runs in a thread of the parent; the child is a real process
talking to it over TCP.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import time
from collections.abc import Callable
from typing import Any

import pytest

import tinkex
from tinkex import types
from tinkex.errors import ForkedTrainingClientError
from tinkex.testing import LocalServer

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")

MODEL = "tinkex/fake-tiny"
PROMPT = types.ModelInput.from_ints([5, 6, 7])
PARAMS = types.SamplingParams(max_tokens=3, seed=1)
ADAM = types.AdamParams(learning_rate=1e-4)
CHILD_LIMIT_S = 60.0
TRAINING_ENDPOINTS = (
    "forward",
    "forward_backward",
    "optim_step",
    "save_weights",
    "load_weights",
    "save_weights_for_sampler",
    "save_weights_external",
)


def _datum() -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3, 4]),
        loss_fn_inputs={"target_tokens": [2, 3, 4, 5], "weights": [1.0] * 4},
    )


def _custom_loss(data: list[types.Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
    total = sum(-lp.sum() for lp in logprobs)
    return total, {"custom_loss": float(total)}


def _every_seq_taking_call(training: Any, checkpoint: str) -> dict[str, Callable[[], object]]:
    """Each public call that takes a training seq_id, sync form (they must raise at the call, in this thread)."""
    return {
        "forward_backward": lambda: training.forward_backward([_datum()], "cross_entropy"),
        "forward": lambda: training.forward([_datum()], "cross_entropy"),
        "forward_backward_custom": lambda: training.forward_backward_custom([_datum()], _custom_loss),
        "optim_step": lambda: training.optim_step(ADAM),
        "save_state": lambda: training.save_state("from-child"),
        "load_state": lambda: training.load_state(checkpoint),
        "load_state_with_optimizer": lambda: training.load_state_with_optimizer(checkpoint),
        "save_weights_for_sampler": lambda: training.save_weights_for_sampler("from-child"),
        "save_weights_external": lambda: training.save_weights_external("from-child"),
        "save_weights_and_get_sampling_client": lambda: training.save_weights_and_get_sampling_client(),
        "save_weights_and_get_sampling_client_submit": lambda: training.save_weights_and_get_sampling_client_submit(),
    }


def _child(queue: Any, training: Any, sampler: Any, checkpoint: str, sampler_path: str) -> None:
    report: dict[str, Any] = {"refused": {}, "errors": {}}
    try:
        for name, call in _every_seq_taking_call(training, checkpoint).items():
            try:
                call()
                report["refused"][name] = "sent"
            except ForkedTrainingClientError as exc:
                report["refused"][name] = exc  # travels pickled: the error must survive that
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                report["refused"][name] = f"other: {exc!r}"

        async def async_write() -> None:
            await training.forward_backward_async([_datum()], "cross_entropy")

        try:
            asyncio.run(async_write())
            report["refused"]["forward_backward_async"] = "sent"
        except ForkedTrainingClientError as exc:
            report["refused"]["forward_backward_async"] = exc
        # What takes no training seq_id keeps working in the child.
        report["info_model"] = training.get_info().model_data.model_name
        report["tokens"] = sampler.sample(PROMPT, 1, PARAMS).result(timeout=20).sequences[0].tokens
        fresh = training.create_sampling_client(sampler_path).result(timeout=20)
        report["fresh_tokens"] = fresh.sample(PROMPT, 1, PARAMS).result(timeout=20).sequences[0].tokens
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        report["errors"]["child"] = repr(exc)
    queue.put(report)


def _run_child(*args: Any) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, *args), daemon=True)
    process.start()
    try:
        report: dict[str, Any] = queue.get(timeout=CHILD_LIMIT_S)
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    assert process.exitcode == 0, report
    return report


def _training_traffic(server: LocalServer) -> dict[str, tuple[int, int]]:
    """Per training endpoint: (requests received, operations executed)."""
    return {
        endpoint: (len(server.ledger.received(endpoint)), len(server.ledger.executions(endpoint)))
        for endpoint in TRAINING_ENDPOINTS
    }


def test_a_forked_child_cannot_write_the_model_and_the_parents_steps_all_run() -> None:
    with LocalServer(base_models=(MODEL,), long_poll_timeout=0.2) as server:
        client = tinkex.Client(api_key="tml-training-fork", base_url=server.base_url, telemetry=False)
        try:
            training = client.create_lora_training_client(MODEL, rank=4)
            training.forward_backward([_datum()], "cross_entropy").result(timeout=20)
            training.optim_step(ADAM).result(timeout=20)
            checkpoint = training.save_state("before-fork").result(timeout=20).path
            sampler_path = training.save_weights_for_sampler("before-fork").result(timeout=20).path
            sampler = training.save_weights_and_get_sampling_client()
            expected = sampler.sample(PROMPT, 1, PARAMS).result(timeout=20).sequences[0].tokens
            before = _training_traffic(server)

            report = _run_child(training, sampler, checkpoint, sampler_path)

            assert not report["errors"], report
            for name, outcome in report["refused"].items():
                assert isinstance(outcome, ForkedTrainingClientError), (name, outcome)
                assert outcome.model_id == training.model_id and outcome.parent_pid > 0
                assert "inherited through fork" in str(outcome) and "SamplingClient" in str(outcome)
                assert "tml-training-fork" not in str(outcome)
            assert len(report["refused"]) == 12
            assert report["info_model"] == MODEL
            assert report["tokens"] == expected
            assert report["fresh_tokens"]
            assert _training_traffic(server) == before, "the child sent a training request"

            # The parent trains on: every request it sends now runs (none is answered from the replay cache).
            started = time.monotonic()
            for _ in range(3):
                training.forward_backward([_datum()], "cross_entropy").result(timeout=20)
                training.optim_step(ADAM).result(timeout=20)
            training.save_state("after-fork").result(timeout=20)
            assert time.monotonic() - started < 30
            traffic = _training_traffic(server)
            for endpoint, (received, executed) in traffic.items():
                assert received == executed, (endpoint, traffic)
            assert traffic["forward_backward"][1] == before["forward_backward"][1] + 3
            assert traffic["optim_step"][1] == before["optim_step"][1] + 3
            assert server.ledger.duplicates_executed() == []
            scope = f"train:{training.model_id}"
            seq_ids = sorted(e.seq_id for e in server.ledger.executions() if e.seq_scope == scope and e.seq_id)
            assert seq_ids == list(range(1, len(seq_ids) + 1)), seq_ids  # one gap-free sequence, the parent's
        finally:
            client.close()


def test_the_error_pickles_with_what_it_says() -> None:
    error = ForkedTrainingClientError("optim_step", "sess-1:train:0", 4242)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ForkedTrainingClientError) and isinstance(copy, RuntimeError)
    assert (copy.operation, copy.model_id, copy.parent_pid) == ("optim_step", "sess-1:train:0", 4242)
    assert str(copy) == str(error)
    assert str(error).startswith("optim_step refused: this TrainingClient of model sess-1:train:0")
    assert "process 4242" in str(error) and "Nothing was sent" in str(error)
