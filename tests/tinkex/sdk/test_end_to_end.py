"""The whole SDK against the local server over HTTP/1.1 and HTTP/2 (h2c): train, save, sample, restore, list,
close; then nothing of the client is left running."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError

import httpx
import pytest
from sdk_helpers import BASE_MODEL, datum, server_client, wait_until

from tinkex import types
from tinkex.runtime import get_runtime
from tinkex.testing import LocalServer

TransportFactory = Callable[[], httpx.AsyncBaseTransport] | None

PROTOCOLS: dict[str, TransportFactory] = {
    "HTTP/1.1": None,  # the default transport negotiates h2 only over TLS, so plain http is HTTP/1.1
    "HTTP/2": lambda: httpx.AsyncHTTPTransport(http2=True, http1=False),  # h2c with prior knowledge
}


def runtime_tasks() -> list[str]:
    """Names of the tasks alive on tinkex's background loop (besides this probe)."""

    async def probe() -> list[str]:
        current = asyncio.current_task()
        return sorted(task.get_name() for task in asyncio.all_tasks() if task is not current)

    return get_runtime().submit(probe()).result(5)


def client_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("pristine-heartbeat")}


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_train_sample_save_restore_over(protocol: str, server: LocalServer) -> None:
    threads_before, tasks_before = client_threads(), runtime_tasks()
    client = server_client(server, transport=PROTOCOLS[protocol], telemetry=True)
    training = client.create_lora_training_client(BASE_MODEL, rank=8)
    batch = [datum([1, 2, 3, 4]), datum([5, 6, 7])]

    losses = []
    for _ in range(4):
        forward_backward = training.forward_backward(batch, "cross_entropy")
        optim = training.optim_step(types.AdamParams(learning_rate=1e-4))
        losses.append(forward_backward.result(10).metrics["loss:sum"])
        optim.result(10)
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses

    sampler_path = training.save_weights_for_sampler("step-4").result(10).path
    sampler = client.create_sampling_client(model_path=sampler_path)
    prompt = types.ModelInput.from_ints([1, 2, 3])
    samples = sampler.sample(prompt, 2, types.SamplingParams(max_tokens=5, seed=1)).result(10)
    assert [len(s.tokens) for s in samples.sequences] == [5, 5]
    logprobs = sampler.compute_logprobs(prompt).result(10)
    assert logprobs[0] is None and len(logprobs) == 3

    state_path = training.save_state("ckpt-4").result(10).path
    assert state_path.endswith("/weights/ckpt-4")
    training.load_state(state_path).result(10)
    restored = client.create_training_client_from_state_with_optimizer(state_path)
    restored_loss = restored.forward(batch, "cross_entropy").result(10).metrics["loss:sum"]
    assert restored_loss == pytest.approx(training.forward(batch, "cross_entropy").result(10).metrics["loss:sum"])
    snapshot = training.save_weights_and_get_sampling_client()
    assert snapshot.sample(prompt, 1, types.SamplingParams(max_tokens=2)).result(10).sequences

    checkpoints = client.create_rest_client().list_checkpoints(training.model_id).result(10)
    assert {c.tinker_path for c in checkpoints.checkpoints} >= {sampler_path, state_path}
    client.close()

    received = server.ledger.received()
    assert {r.http_version for r in received} == {protocol}
    assert all(r.status is not None and r.status < 400 for r in received), [
        (r.endpoint, r.status) for r in received if r.status is None or r.status >= 400
    ]
    assert len(server.ledger.received("create_session")) == 1
    assert server.ledger.received("telemetry"), "closing flushed the telemetry"
    assert server.ledger.duplicates_executed() == []
    assert client_threads() == threads_before, "the heartbeat thread was stopped"
    wait_until(lambda: runtime_tasks() == tasks_before, timeout=1.0, what="no task of the client left running")


@pytest.mark.anyio
async def test_the_async_api_end_to_end_leaves_nothing_running(server: LocalServer) -> None:
    threads_before = client_threads()
    async with server_client(server) as client:
        training = await client.create_lora_training_client_async(BASE_MODEL)
        futures = []
        for _ in range(3):
            futures.append(await training.forward_backward_async([datum([3, 4, 5])], "cross_entropy"))
            futures.append(await training.optim_step_async(types.AdamParams(learning_rate=1e-4)))
        results = await asyncio.gather(*(future.result_async() for future in futures))
        losses = [r.metrics["loss:sum"] for r in results[::2]]
        assert losses[-1] < losses[0]
        sampler = await training.save_weights_and_get_sampling_client_async()
        params = types.SamplingParams(max_tokens=3)
        sampled = await asyncio.gather(
            *(sampler.sample_async(types.ModelInput.from_ints([3]), 1, params) for _ in range(8))
        )
        assert len(sampled) == 8
    others = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert not {t.get_name() for t in others if t.get_name().startswith("pristine")}
    assert client_threads() == threads_before
    with pytest.raises(RuntimeError, match="closed"):
        await client.create_sampling_client_async(base_model=BASE_MODEL)


def test_closing_with_a_pending_future_stops_its_polling_at_once() -> None:
    with LocalServer(long_poll_timeout=5.0, latency_by_endpoint={"forward_backward": 10.0}) as server:
        tasks_before = runtime_tasks()
        client = server_client(server)
        training = client.create_lora_training_client(BASE_MODEL)
        pending = training.forward_backward([datum([1, 2])], "cross_entropy")
        wait_until(lambda: len(server.ledger.received("retrieve_future")) >= 2, what="the first poll")
        client.close()
        # The cancellation reaches the tasks awaiting the poll within a few loop turns, not after the 5 s hold.
        wait_until(lambda: runtime_tasks() == tasks_before, timeout=1.0, what="the polling tasks to end")
        with pytest.raises(CancelledError):
            pending.result(1)
