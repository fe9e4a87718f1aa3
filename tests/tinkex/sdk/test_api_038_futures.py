"""The futures of 0.38 (``future()``, ``coroutine()``, creation methods that return futures) and the 0.16 forms
that must keep working on them: a creation future used as the client itself, a ``sample`` future used as a
``concurrent.futures.Future``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import pickle

import pytest
from sdk_helpers import BASE_MODEL, datum, server_client

import tinkex
from tinkex import types
from tinkex.testing import LocalServer

PROMPT = types.ModelInput.from_ints([1, 2, 3])
PARAMS = types.SamplingParams(max_tokens=3)


def test_a_creation_future_is_the_client_for_016_code(server: LocalServer) -> None:
    client = server_client(server)
    try:
        training = client.create_lora_training_client(BASE_MODEL, rank=4)
        assert isinstance(training, tinkex.BackcompatTrainingClientFuture)
        assert isinstance(training, tinkex.TrainingClient) and isinstance(training, tinkex.APIFuture)
        # 0.16: the return value is the client.
        fwd = training.forward_backward([datum([1, 2, 3])], "cross_entropy")
        training.optim_step(types.AdamParams(learning_rate=0.1)).result(5)
        assert fwd.result(5).metrics
        assert training.model_id.endswith(":train:0")  # an attribute of the client, read through the future
        assert training.get_info().model_data.model_name == BASE_MODEL
        # 0.38: the return value is a future of the client.
        real = training.result()
        assert type(real) is tinkex.TrainingClient and real.model_id == training.model_id
        assert training.done() and training.future().result() is real
        assert "TrainingClient" in repr(training)
        sampler = training.save_weights_and_get_sampling_client()
        assert isinstance(sampler, tinkex.BackcompatSamplingClientFuture)
        assert sampler.sample(PROMPT, 1, PARAMS).result(5).sequences  # 0.16: used as the client
        assert len(sampler.compute_logprobs(PROMPT).result(5)) == 3
        assert sampler.get_base_model() == BASE_MODEL
        copy = pickle.loads(pickle.dumps(sampler))
        assert copy.sampling_session_id == sampler.result().sampling_session_id
        copy.holder.close()  # the copy's own connections and heartbeat
    finally:
        client.close()


@pytest.mark.anyio
async def test_creation_futures_are_awaited_in_async_code(server: LocalServer) -> None:
    client = server_client(server)
    training = await client.create_lora_training_client(BASE_MODEL, rank=4)
    assert type(training) is tinkex.TrainingClient
    sampler = await client.create_sampling_client(base_model=BASE_MODEL)
    assert type(sampler) is tinkex.SamplingClient
    # 0.16 async code: a method of the client awaited straight on the future.
    future = client.create_sampling_client(base_model=BASE_MODEL)
    response = await future.sample_async(PROMPT, 2, PARAMS)
    assert len(response.sequences) == 2
    # 0.38: sample() returns a future that is awaited, or turned into a coroutine for create_task.
    task = asyncio.create_task(sampler.sample(PROMPT, 1, PARAMS).coroutine())
    assert (await task).sequences
    assert (await sampler.sample(PROMPT, 1, PARAMS)).sequences
    await client.aclose()


def test_a_failed_creation_surfaces_on_result_and_on_first_use(server: LocalServer) -> None:
    client = server_client(server)
    try:
        future = client.create_sampling_client(model_path="tinker://nope:train:0/sampler_weights/missing")
        with pytest.raises(tinkex.NotFoundError):
            future.result(5)
        with pytest.raises(tinkex.NotFoundError):
            future.sample(PROMPT, 1, PARAMS)  # 0.16 code sees the failure where it uses the client
        assert "failed" in repr(future)
    finally:
        client.close()


def test_sample_futures_work_with_concurrent_futures_tools(server: LocalServer) -> None:
    client = server_client(server)
    try:
        sampler = client.create_sampling_client(base_model=BASE_MODEL).result()
        futures = [sampler.sample(PROMPT, 1, PARAMS) for _ in range(4)]
        assert all(isinstance(f, concurrent.futures.Future) for f in futures)  # what 0.16's sample returned
        done, _ = concurrent.futures.wait(futures, timeout=10)
        assert len(done) == 4
        assert len(list(concurrent.futures.as_completed([sampler.compute_logprobs(PROMPT)], timeout=10))) == 1
        called: list[object] = []
        rest = client.create_rest_client().get_server_capabilities()
        rest.add_done_callback(called.append)
        rest.result(5)
        assert called == [rest] and rest.future() is rest
    finally:
        client.close()


def test_future_of_an_async_training_future_mirrors_and_cancels(server: LocalServer) -> None:
    async def scenario() -> tuple[object, bool]:
        client = server_client(server)
        training = await client.create_lora_training_client_async(BASE_MODEL, rank=4)
        fwd = await training.forward_backward_async([datum([1, 2])], "cross_entropy")
        mirrored = fwd.future()
        assert fwd.future() is mirrored
        result = await asyncio.wrap_future(mirrored)
        from_thread = await training.forward_backward_async([datum([1, 2])], "cross_entropy")
        other_thread_mirror = await asyncio.to_thread(from_thread.future)  # made off the future's loop
        assert isinstance(await asyncio.wrap_future(other_thread_mirror), types.ForwardBackwardOutput)
        slow = await training.forward_async([datum([1, 2])], "cross_entropy")
        slow.future().cancel()
        await asyncio.sleep(0.05)
        cancelled = slow.done()
        await client.aclose()
        return result, cancelled

    result, cancelled = asyncio.run(scenario())
    assert isinstance(result, types.ForwardBackwardOutput)
    assert cancelled, "cancelling future() cancels the local wait"


def test_the_016_submit_form_and_a_016_positional_optim_step(server: LocalServer) -> None:
    client = server_client(server)
    try:
        training = client.create_lora_training_client(BASE_MODEL, rank=4).result()
        training.forward_backward([datum([1, 2, 3])], "cross_entropy")
        training.optim_step(types.AdamParams(learning_rate=0.1)).result(5)  # 0.16: adam_params positional
        with pytest.raises(ValueError, match="not both"):
            training.optim_step(types.AdamParams(), adam_params=types.AdamParams())
        with pytest.raises(TypeError, match="AdamParams"):
            training.optim_step()
        sampler = training.save_weights_and_get_sampling_client_submit().result(10)
        assert sampler.sample(PROMPT, 1, PARAMS).result(5).sequences
    finally:
        client.close()
