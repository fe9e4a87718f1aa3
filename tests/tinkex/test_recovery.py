"""Recovery: policy defaults and backoff, the executor rebuilding a corrupted run, the monitor detecting it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import tinkex
from tinkex.recovery import RecoveryError, RecoveryExecutor, RecoveryMonitor, RecoveryOutcome, RecoveryPolicy
from tinkex.testing import FaultRule, LocalServer
from tinkex.types import AdamParams, Datum, ModelInput

API_KEY = "tml-recovery-test"
BASE_MODEL = "Qwen/Qwen3-8B"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


@pytest.fixture(autouse=True)
def clean_faults(server: LocalServer) -> Iterator[None]:
    yield
    server.faults.clear()


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[tinkex.Client]:
    client = tinkex.Client(base_url=server.base_url, api_key=API_KEY)
    yield client
    await client.aclose()


@dataclass
class Recorder:
    sleeps: list[float]
    exporter: InMemorySpanExporter
    provider: TracerProvider

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)

    def spans(self, name: str) -> list:  # type: ignore[type-arg]
        return [s for s in self.exporter.get_finished_spans() if s.name == name]


@pytest.fixture
def recorder() -> Recorder:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Recorder([], exporter, provider)


def executor_for(client: tinkex.Client, policy: RecoveryPolicy, recorder: Recorder) -> RecoveryExecutor:
    return RecoveryExecutor(client, policy, sleep=recorder.sleep, tracer=recorder.provider.get_tracer("test"))


def datum() -> Datum:
    return Datum(model_input=ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={"target_tokens": [2, 3, 4]})


# policy ---------------------------------------------------------------------------------------------------


async def test_policy_defaults_are_off_and_match_the_reference() -> None:
    policy = RecoveryPolicy()
    assert (policy.enabled, policy.max_attempts, policy.poll_interval_s) == (False, 3, 30.0)
    assert (policy.checkpoint_strategy, policy.restore_optimizer) == ("latest", True)
    assert [policy.backoff_s(n) for n in range(1, 7)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


async def test_policy_validation_names_the_mistake() -> None:
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        RecoveryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="sampler_weights path; recovery restores training state"):
        RecoveryPolicy(checkpoint_strategy="tinker://run:train:0/sampler_weights/s1")
    with pytest.raises(ValueError, match="must be 'latest' or a tinker://<run>/weights/<name> path, got 'best'"):
        RecoveryPolicy(checkpoint_strategy="best")


# executor --------------------------------------------------------------------------------------------------


async def test_executor_restores_a_corrupted_run_from_its_latest_checkpoint(
    server: LocalServer, client: tinkex.Client, recorder: Recorder
) -> None:
    training = await client.create_lora_training_client_async(BASE_MODEL, rank=4)
    await (await training.save_state_async("early"))
    latest = (await (await training.save_state_async("latest"))).path
    server.set_corrupted(training.model_id)
    with pytest.raises(tinkex.RequestFailedError, match="corrupted"):
        await (await training.forward_backward_async([datum()], "cross_entropy"))

    recovered: list[RecoveryOutcome] = []
    policy = RecoveryPolicy(enabled=True, on_recovery=recovered.append)
    outcome = await executor_for(client, policy, recorder).recover(training.model_id, previous_client=training)

    assert outcome.checkpoint_path == latest and outcome.attempts == 1 and outcome.previous_client is training
    assert outcome.training_client.model_id != training.model_id
    assert recovered == [outcome] and recorder.sleeps == []
    loads = server.ledger.executions("load_weights", model_id=outcome.training_client.model_id)
    assert len(loads) == 1
    # the new client trains
    await (await outcome.training_client.forward_backward_async([datum()], "cross_entropy"))
    await (await outcome.training_client.optim_step_async(AdamParams()))

    (span,) = recorder.spans("recovery")
    assert [e.name for e in span.events] == ["recovery.detected", "recovery.succeeded"]
    assert span.attributes["tinkex.training_run_id"] == training.model_id
    (attempt,) = recorder.spans("recovery.attempt")
    assert attempt.attributes["recovery.checkpoint"] == latest and attempt.parent.span_id == span.context.span_id


async def test_executor_retries_with_backoff_then_succeeds(
    server: LocalServer, client: tinkex.Client, recorder: Recorder
) -> None:
    training = await client.create_lora_training_client_async(BASE_MODEL, rank=4)
    path = (await (await training.save_state_async("ckpt"))).path
    server.set_corrupted(training.model_id)
    server.faults.add(FaultRule(endpoint="weights_info", status=400, body={"detail": "flaky"}, count=2))

    policy = RecoveryPolicy(enabled=True, checkpoint_strategy=path, restore_optimizer=False)
    outcome = await executor_for(client, policy, recorder).recover(training.model_id)
    assert outcome.attempts == 3 and outcome.checkpoint_path == path
    assert recorder.sleeps == [5.0, 10.0]
    (load,) = server.ledger.executions("load_weights", model_id=outcome.training_client.model_id)
    attempts = recorder.spans("recovery.attempt")
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    assert all(s.attributes["recovery.restore_optimizer"] is False for s in attempts)


async def test_executor_gives_up_after_max_attempts(
    server: LocalServer, client: tinkex.Client, recorder: Recorder
) -> None:
    training = await client.create_lora_training_client_async(BASE_MODEL, rank=4)
    await (await training.save_state_async("ckpt"))
    server.faults.add(FaultRule(endpoint="weights_info", status=400, body={"detail": "broken"}, count=5))
    failures: list[tuple[str, BaseException]] = []

    async def on_failure(run_id: str, error: BaseException) -> None:
        failures.append((run_id, error))

    policy = RecoveryPolicy(enabled=True, max_attempts=2, backoff_initial_s=0.5, on_failure=on_failure)
    with pytest.raises(RecoveryError, match="failed after 2 attempt") as caught:
        await executor_for(client, policy, recorder).recover(training.model_id)
    assert isinstance(caught.value.__cause__, tinkex.BadRequestError)
    assert recorder.sleeps == [0.5]
    assert failures == [(training.model_id, caught.value)]
    (span,) = recorder.spans("recovery")
    assert [e.name for e in span.events] == ["recovery.detected", "recovery.failed", "exception"]
    assert span.status.status_code == StatusCode.ERROR


async def test_nothing_to_restore_fails_without_retrying(client: tinkex.Client, recorder: Recorder) -> None:
    training = await client.create_lora_training_client_async(BASE_MODEL, rank=4)
    policy = RecoveryPolicy(enabled=True)
    with pytest.raises(RecoveryError, match="has no training checkpoint"):
        await executor_for(client, policy, recorder).recover(training.model_id)
    assert recorder.sleeps == [] and len(recorder.spans("recovery.attempt")) == 1


async def test_callback_errors_do_not_break_recovery(
    server: LocalServer, client: tinkex.Client, recorder: Recorder
) -> None:
    training = await client.create_lora_training_client_async(BASE_MODEL, rank=4)
    await (await training.save_state_async("ckpt"))

    def explode(outcome: RecoveryOutcome) -> None:
        raise RuntimeError("user callback bug")

    policy = RecoveryPolicy(enabled=True, on_recovery=explode)
    outcome = await executor_for(client, policy, recorder).recover(training.model_id)
    assert outcome.attempts == 1


# monitor ---------------------------------------------------------------------------------------------------


async def test_disabled_monitor_never_polls(server: LocalServer, client: tinkex.Client) -> None:
    monitor = RecoveryMonitor(client.create_rest_client(), RecoveryPolicy())
    monitor.watch("whatever:train:0")
    server.ledger.clear()
    assert await monitor.poll_once() == []
    await monitor.run()  # returns at once
    assert server.ledger.received("get_training_run") == []


async def test_monitor_recovers_corrupted_runs_and_watches_the_new_one(
    server: LocalServer, client: tinkex.Client, recorder: Recorder
) -> None:
    training = await client.create_lora_training_client_async(BASE_MODEL, rank=4)
    await (await training.save_state_async("ckpt"))
    policy = RecoveryPolicy(enabled=True, poll_interval_s=0.01)
    monitor = RecoveryMonitor(
        client.create_rest_client(), policy, executor_for(client, policy, recorder), sleep=recorder.sleep
    )
    monitor.watch(training.model_id, training)
    monitor.watch("missing-run:train:0")  # poll errors keep the watch

    assert await monitor.poll_once() == []
    server.set_corrupted(training.model_id)
    assert await monitor.poll_once() == [training.model_id]
    (outcome,) = await monitor.wait_idle()
    assert outcome.previous_client is training
    assert sorted(monitor.watched) == sorted(["missing-run:train:0", outcome.training_client.model_id])
    assert await monitor.poll_once() == []


async def test_monitor_task_polls_until_stopped(server: LocalServer, client: tinkex.Client) -> None:
    training = await client.create_lora_training_client_async(BASE_MODEL, rank=4)
    await (await training.save_state_async("ckpt"))
    recovered = asyncio.Event()
    policy = RecoveryPolicy(enabled=True, poll_interval_s=0.01, on_recovery=lambda outcome: recovered.set())
    monitor = RecoveryMonitor(client.create_rest_client(), policy, RecoveryExecutor(client, policy))
    monitor.watch(training.model_id)
    task = monitor.start()
    server.set_corrupted(training.model_id)
    await asyncio.wait_for(recovered.wait(), timeout=10)
    await monitor.stop()
    assert task.done() and training.model_id not in monitor.watched


async def test_monitor_without_executor_only_detects(server: LocalServer, client: tinkex.Client) -> None:
    training = await client.create_lora_training_client_async(BASE_MODEL, rank=4)
    monitor = RecoveryMonitor(client.create_rest_client(), RecoveryPolicy(enabled=True))
    monitor.watch(training.model_id)
    server.set_corrupted(training.model_id)
    assert await monitor.poll_once() == [training.model_id]
    assert monitor.watched == []
