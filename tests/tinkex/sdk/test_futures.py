"""APIFuture behaviour: deadlines, awaiting (twice), no deadlock on the loop that runs a future, and queue-state
changes reaching the user's callback while the future is still pending."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from sdk_helpers import BASE_MODEL, datum, server_client

from tinkex import types
from tinkex.queue_state import QueueState, QueueStateLogger
from tinkex.testing import FaultRule, LocalServer


def test_result_timeout_raises_and_the_work_goes_on() -> None:
    with LocalServer(long_poll_timeout=0.2, latency_by_endpoint={"forward_backward": 0.4}) as server:
        client = server_client(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL)
            future = training.forward_backward([datum([1, 2, 3])], "cross_entropy")
            started = time.monotonic()
            with pytest.raises(TimeoutError, match="0.05"):
                future.result(timeout=0.05)
            assert time.monotonic() - started < 0.3
            assert not future.done()
            assert future.result(timeout=5).metrics  # giving up one wait did not cancel the request
        finally:
            client.close()


@pytest.mark.anyio
async def test_async_methods_return_futures_that_can_be_awaited_twice(server: LocalServer) -> None:
    client = server_client(server)
    training = await client.create_lora_training_client_async(BASE_MODEL)
    future = await training.forward_backward_async([datum([1, 2, 3])], "cross_entropy")
    first = await future
    second = await future
    assert first is second
    assert await future.result_async(timeout=1) is first
    assert future.done()
    optim = await training.optim_step_async(types.AdamParams(learning_rate=0.05))
    assert (await optim) is (await optim)
    await client.aclose()


@pytest.mark.anyio
async def test_result_on_the_loop_running_the_future_raises_instead_of_deadlocking(server: LocalServer) -> None:
    client = server_client(server)
    training = await client.create_lora_training_client_async(BASE_MODEL)
    future = await training.optim_step_async(types.AdamParams())
    with pytest.raises(RuntimeError, match="await"):
        future.result()
    await future
    await client.aclose()


def test_blocking_calls_from_tinkex_own_loop_raise_instead_of_deadlocking(server: LocalServer) -> None:
    client = server_client(server)
    try:
        training = client.create_lora_training_client(BASE_MODEL)
        background_future = training.optim_step(types.AdamParams())

        async def misuse() -> list[str]:
            errors = []
            for blocking in (background_future.result, lambda: client.create_sampling_client(base_model=BASE_MODEL).result()):
                try:
                    blocking()
                except RuntimeError as exc:
                    errors.append(str(exc))
            return errors

        errors = client.holder.runtime.submit(misuse()).result(5)
        assert len(errors) == 2 and all("await" in e or "_async" in e for e in errors)
        background_future.result(5)
    finally:
        client.close()


def test_queue_state_changes_reach_the_callback_while_the_future_is_pending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Added once the model exists, so only forward_backward's polls see it. (FaultRule(future_endpoint=...) does
    # not scope "respond" rules: the server consults them before it knows whose future is polled.)
    paused = FaultRule.queue_paused("paused_capacity", reason="fake capacity pause", count=2)
    seen: list[tuple[QueueState, str | None]] = []
    pause_seen = threading.Event()

    def on_change(state: QueueState, reason: str | None) -> None:
        seen.append((state, reason))
        if state is not QueueState.ACTIVE:
            pause_seen.set()

    with LocalServer(long_poll_timeout=0.2, latency_by_endpoint={"forward_backward": 0.5}) as server:
        client = server_client(server, on_queue_state_change=on_change)
        try:
            training = client.create_lora_training_client(BASE_MODEL).result()
            server.faults.add(paused)
            with caplog.at_level(logging.WARNING, logger="tinkex.queue_state"):
                future = training.forward_backward([datum([1, 2])], "cross_entropy")
                assert pause_seen.wait(2.0), "the pause was not reported"
                assert not future.done(), "the callback must fire as the pause happens, not after the result"
                future.result(5)
        finally:
            client.close()
    paused_states = [change for change in seen if change[0] is not QueueState.ACTIVE]
    assert paused_states == [(QueueState.PAUSED_CAPACITY, "fake capacity pause")], "reported once per change"
    assert f"Training for {training.model_id} is paused. Reason: fake capacity pause." in caplog.text


def test_queue_state_logger_uses_the_default_reason_and_debounces(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    calls: list[Any] = []
    observer = QueueStateLogger.for_training("Model creation", BASE_MODEL, lambda s, r: calls.append((s, r)))
    observer._clock = lambda: now[0]
    with caplog.at_level(logging.WARNING, logger="tinkex.queue_state"):
        observer.on_queue_state_change(QueueState.PAUSED_RATE_LIMIT, None)
        now[0] = 30.0
        observer.on_queue_state_change(QueueState.PAUSED_CAPACITY, None)
        now[0] = 61.0
        observer.on_queue_state_change(QueueState.PAUSED_CAPACITY, None)
        observer.on_queue_state_change(QueueState.ACTIVE, None)
    assert len(calls) == 4, "the callback sees every change; only the log line is debounced"
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f"Model creation for {BASE_MODEL} is paused. Reason: concurrent training clients rate limit hit.",
        f"Model creation for {BASE_MODEL} is paused. Reason: Tinker backend is running short on capacity, please wait.",
    ]


def test_samplers_made_by_a_training_client_report_to_the_same_callback(server: LocalServer) -> None:
    seen: list[tuple[QueueState, str | None]] = []
    client = server_client(server, on_queue_state_change=lambda state, reason: seen.append((state, reason)))
    try:
        training = client.create_lora_training_client(BASE_MODEL)
        samplers = [
            training.save_weights_and_get_sampling_client(),
            training.create_sampling_client(training.save_weights_for_sampler("s").result(5).path),
        ]
        for index, sampler in enumerate(samplers):
            server.faults.add(FaultRule.queue_paused("paused_rate_limit", reason=f"limit {index}"))
            sampler.sample(types.ModelInput.from_ints([1, 2]), 1, types.SamplingParams(max_tokens=1)).result(5)
    finally:
        client.close()
    paused = [change for change in seen if change[0] is not QueueState.ACTIVE]
    assert paused == [(QueueState.PAUSED_RATE_LIMIT, "limit 0"), (QueueState.PAUSED_RATE_LIMIT, "limit 1")]
