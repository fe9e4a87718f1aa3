"""Opt-in recovery of corrupted training runs (off by default; see `docs/design.md`, "Recovery of corrupted runs").

:class:`RecoveryMonitor` polls the training runs it watches and hands a run the server marks ``corrupted`` to
:class:`RecoveryExecutor`, which builds a new training client from the run's latest training checkpoint (or a
given one) and retries per :class:`RecoveryPolicy`. Each recovery is one OpenTelemetry span ``recovery`` with the
events ``recovery.detected`` / ``recovery.succeeded`` / ``recovery.failed`` and one child span
``recovery.attempt`` per attempt. Every wait goes through an injectable ``sleep``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from pristine_transport.policy import backoff_delay

from .rest_client import RestClient, parse_tinker_path

if TYPE_CHECKING:
    from .client import Client
    from .training_client import TrainingClient

__all__ = [
    "RecoveryError",
    "RecoveryExecutor",
    "RecoveryMonitor",
    "RecoveryOutcome",
    "RecoveryPolicy",
]

logger = logging.getLogger("tinkex.recovery")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RecoveryOutcome:
    """A successful recovery: the corrupted run, the checkpoint used and the new training client."""

    training_run_id: str
    checkpoint_path: str
    training_client: TrainingClient
    attempts: int
    previous_client: TrainingClient | None = None


class RecoveryError(RuntimeError):
    """Every recovery attempt failed (or there is nothing to recover from); ``__cause__`` is the last error."""

    def __init__(self, message: str, training_run_id: str, attempts: int) -> None:
        super().__init__(message)
        self.training_run_id = training_run_id
        self.attempts = attempts


@dataclass(frozen=True)
class RecoveryPolicy:
    """What recovery does. ``enabled`` is False by default: a monitor with a disabled policy never polls.

    ``checkpoint_strategy`` is ``"latest"`` (the run's newest training checkpoint) or a ``tinker://…/weights/…``
    path. The wait before attempt n+1 is ``backoff_initial_s * 2**(n-1)`` capped at ``backoff_max_s``.
    Callbacks may be plain functions or coroutines; their errors are logged, never raised.
    """

    enabled: bool = False
    max_attempts: int = 3
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 60.0
    poll_interval_s: float = 30.0
    checkpoint_strategy: str = "latest"
    restore_optimizer: bool = True
    on_recovery: Callable[[RecoveryOutcome], Any] | None = field(default=None, compare=False)
    on_failure: Callable[[str, BaseException], Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RecoveryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("backoff_initial_s", "backoff_max_s", "poll_interval_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"RecoveryPolicy.{name} must be >= 0, got {getattr(self, name)}")
        if self.checkpoint_strategy != "latest":
            try:
                parsed = parse_tinker_path(self.checkpoint_strategy)
            except ValueError as exc:
                raise ValueError(
                    "RecoveryPolicy.checkpoint_strategy must be 'latest' or a tinker://<run>/weights/<name> path, "
                    f"got {self.checkpoint_strategy!r} ({exc})"
                ) from None
            if parsed.checkpoint_type != "training":
                raise ValueError(
                    f"RecoveryPolicy.checkpoint_strategy {self.checkpoint_strategy!r} is a sampler_weights path; "
                    "recovery restores training state, so give a tinker://<run>/weights/<name> path (from save_state)"
                )

    def backoff_s(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1-based)."""
        return backoff_delay(attempt - 1, initial_s=self.backoff_initial_s, max_s=self.backoff_max_s)


class RecoveryExecutor:
    """Rebuilds training clients for corrupted runs, at most ``max_concurrent`` at a time."""

    def __init__(
        self,
        service_client: Client,
        policy: RecoveryPolicy,
        *,
        max_concurrent: int = 1,
        rest_client: RestClient | None = None,
        sleep: Sleep = asyncio.sleep,
        tracer: trace.Tracer | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self.service_client = service_client
        self.policy = policy
        self.rest_client = rest_client or service_client.create_rest_client()
        self._sleep = sleep
        self._tracer = tracer or trace.get_tracer("tinkex.recovery")
        self._slots = asyncio.Semaphore(max_concurrent)

    async def recover(
        self,
        training_run_id: str,
        *,
        previous_client: TrainingClient | None = None,
        reason: str = "corrupted",
    ) -> RecoveryOutcome:
        """Restore ``training_run_id`` from a checkpoint into a new training client, retrying per the policy.

        Raises :class:`RecoveryError` (after ``on_failure``) when every attempt failed.
        """
        policy = self.policy
        with self._tracer.start_as_current_span(
            "recovery", attributes={"tinkex.training_run_id": training_run_id, "recovery.reason": reason}
        ) as span:
            span.add_event("recovery.detected", {"tinkex.training_run_id": training_run_id, "recovery.reason": reason})
            async with self._slots:
                last_error: BaseException | None = None
                for attempt in range(1, policy.max_attempts + 1):
                    try:
                        outcome = await self._attempt(training_run_id, attempt, previous_client)
                    except _NothingToRestore as exc:
                        last_error = exc
                        break
                    except Exception as exc:  # every failure counts as an attempt; the last one is reported
                        last_error = exc
                        if attempt < policy.max_attempts:
                            delay = policy.backoff_s(attempt)
                            logger.warning(
                                "recovery of %s: attempt %d of %d failed (%s: %s); next in %.1f s",
                                training_run_id, attempt, policy.max_attempts, type(exc).__name__, exc, delay,
                            )
                            await self._sleep(delay)
                        continue
                    span.add_event(
                        "recovery.succeeded",
                        {
                            "recovery.attempts": attempt,
                            "recovery.checkpoint": outcome.checkpoint_path,
                            "tinkex.new_training_run_id": outcome.training_client.model_id,
                        },
                    )
                    logger.info(
                        "recovered training run %s from %s as %s",
                        training_run_id, outcome.checkpoint_path, outcome.training_client.model_id,
                    )
                    await _notify(policy.on_recovery, outcome)
                    return outcome
            assert last_error is not None
            message = f"recovery of training run {training_run_id} failed after {attempt} attempt(s): {last_error}"
            span.add_event("recovery.failed", {"recovery.attempts": attempt, "error.type": type(last_error).__name__})
            span.set_status(Status(StatusCode.ERROR, message))
            logger.error("%s", message)
            error = RecoveryError(message, training_run_id, attempt)
            error.__cause__ = last_error  # set before on_failure sees it
            await _notify(policy.on_failure, training_run_id, error)
            raise error

    async def _attempt(
        self, training_run_id: str, attempt: int, previous_client: TrainingClient | None
    ) -> RecoveryOutcome:
        with self._tracer.start_as_current_span(
            "recovery.attempt",
            attributes={"tinkex.training_run_id": training_run_id, "recovery.attempt": attempt},
        ) as span:
            checkpoint = await self._select_checkpoint(training_run_id)
            span.set_attribute("recovery.checkpoint", checkpoint)
            span.set_attribute("recovery.restore_optimizer", self.policy.restore_optimizer)
            if self.policy.restore_optimizer:
                client = await self.service_client.create_training_client_from_state_with_optimizer_async(checkpoint)
            else:
                client = await self.service_client.create_training_client_from_state_async(checkpoint)
            return RecoveryOutcome(training_run_id, checkpoint, client, attempt, previous_client)

    async def _select_checkpoint(self, training_run_id: str) -> str:
        if self.policy.checkpoint_strategy != "latest":
            return self.policy.checkpoint_strategy
        run = await self.rest_client.get_training_run_async(training_run_id)
        if run.last_checkpoint is not None:
            return run.last_checkpoint.tinker_path
        listed = await self.rest_client.list_checkpoints_async(training_run_id)
        training = [c for c in listed.checkpoints if c.checkpoint_type == "training"]
        if not training:
            raise _NothingToRestore(
                f"training run {training_run_id} has no training checkpoint (save_state) to recover from"
            )
        return max(training, key=lambda c: c.time).tinker_path


class _NothingToRestore(LookupError):
    """No training checkpoint exists: retrying cannot help."""


class RecoveryMonitor:
    """Polls watched training runs every ``policy.poll_interval_s`` and recovers those marked ``corrupted``.

    With an ``executor`` the monitor starts a recovery and afterwards watches the new run (the new client's
    ``model_id``) instead of the old one; without one it only detects: it logs, adds a ``recovery.detected``
    span event, stops watching the run and returns its id from :meth:`poll_once`. Poll errors are logged and
    recorded as ``recovery.poll_error`` span events; the watch list is kept.
    """

    def __init__(
        self,
        rest_client: RestClient,
        policy: RecoveryPolicy,
        executor: RecoveryExecutor | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.rest_client = rest_client
        self.policy = policy
        self.executor = executor
        self._sleep = sleep
        self._watched: dict[str, TrainingClient | None] = {}
        self._recoveries: dict[str, asyncio.Task[RecoveryOutcome | None]] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, training_run_id: str, training_client: TrainingClient | None = None) -> None:
        self._watched[training_run_id] = training_client

    def unwatch(self, training_run_id: str) -> None:
        self._watched.pop(training_run_id, None)

    @property
    def watched(self) -> list[str]:
        return list(self._watched)

    async def poll_once(self) -> list[str]:
        """Check every watched run once; hand each newly corrupted one on. Returns their ids."""
        if not self.policy.enabled:
            return []
        detected = []
        for run_id, client in list(self._watched.items()):
            if run_id in self._recoveries:
                continue
            try:
                run = await self.rest_client.get_training_run_async(run_id)
            except Exception as exc:  # a failed poll must not stop monitoring
                logger.warning("recovery monitor: polling %s failed: %s: %s", run_id, type(exc).__name__, exc)
                trace.get_current_span().add_event(
                    "recovery.poll_error", {"tinkex.training_run_id": run_id, "error.type": type(exc).__name__}
                )
                continue
            if not run.corrupted:
                continue
            detected.append(run_id)
            if self.executor is None:
                logger.warning("training run %s is corrupted (no RecoveryExecutor configured)", run_id)
                trace.get_current_span().add_event("recovery.detected", {"tinkex.training_run_id": run_id})
                self.unwatch(run_id)
                continue
            task = asyncio.create_task(self._recover(self.executor, run_id, client))
            self._recoveries[run_id] = task
            task.add_done_callback(lambda _, run_id=run_id: self._recoveries.pop(run_id, None))
        return detected

    async def _recover(
        self, executor: RecoveryExecutor, run_id: str, client: TrainingClient | None
    ) -> RecoveryOutcome | None:
        try:
            outcome = await executor.recover(run_id, previous_client=client)
        except RecoveryError:
            self.unwatch(run_id)  # on_failure has been told; polling the run again would fail the same way
            return None
        self.unwatch(run_id)
        self.watch(outcome.training_client.model_id, outcome.training_client)
        return outcome

    async def run(self) -> None:
        """Poll until cancelled; returns at once when the policy is disabled."""
        if not self.policy.enabled:
            logger.info("recovery monitor not started: RecoveryPolicy.enabled is False")
            return
        while True:
            await self.poll_once()
            await self._sleep(self.policy.poll_interval_s)

    def start(self) -> asyncio.Task[None]:
        """Run :meth:`run` as a task of the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="tinkex-recovery-monitor")
        return self._task

    async def wait_idle(self) -> list[RecoveryOutcome]:
        """Wait for the recoveries in progress; returns the successful outcomes."""
        results = await asyncio.gather(*self._recoveries.values(), return_exceptions=True)
        return [r for r in results if isinstance(r, RecoveryOutcome)]

    async def stop(self) -> None:
        """Stop polling and cancel recoveries in progress."""
        tasks = [t for t in [self._task, *self._recoveries.values()] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None


async def _notify(callback: Callable[..., Any] | None, *args: Any) -> None:
    if callback is None:
        return
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("recovery callback %r raised", callback)
