"""The state every resource's endpoints share, and what they all do with it: submit work as a future (executed now,
published after the configured latency, failed by an injected ``request_failed`` fault), expire a future, and the
lookups that answer 404, 400 or 410 before anything executes (runs, checkpoints, supported base models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from tinkex import types as t
from tinkex.types import codec

from . import tiny_lm
from .calls import Call, Result, answers_404, refuse_if_finished, reject
from .config import ServerConfig
from .dedup import ReplayCache
from .downloads import Downloads
from .faults import FaultKind, Faults
from .futures_store import Category, Failure, FutureRecord, FutureStore
from .ledger import Ledger
from .registry import CheckpointRecord, Registry, RunRecord, TinkerPath, parse_tinker_path, split_checkpoint_id, utcnow
from .replies import json_reply
from .write_journal import WriteJournal

__all__ = ["EndpointState", "OperationFailed"]

_REQUEST_FAILED: frozenset[FaultKind] = frozenset({"request_failed"})


class OperationFailed(Exception):
    """The operation was accepted but fails: its future resolves to ``{"error", "category"}``."""

    def __init__(self, message: str, category: Category) -> None:
        super().__init__(message)
        self.category: Category = category


@dataclass
class EndpointState:
    config: ServerConfig
    registry: Registry
    futures: FutureStore
    faults: Faults
    ledger: Ledger
    replay: ReplayCache
    journal: WriteJournal | None
    """Present with a ``state_dir``."""
    vocab_size: int
    """Token ids the model knows: the offline byte-level encoding's, unless the server was given more."""
    downloads: Downloads = field(default_factory=Downloads)
    sequence_lengths: dict[str, tuple[int, int]] = field(default_factory=dict)
    """``sequence_id`` of every sampled sequence -> (prompt length, sampled length), for provenance spans."""

    def base_weights(self, base_model: str) -> tiny_lm.BaseWeights:
        """The frozen model behind ``base_model`` (made from its name, shared by its runs and samplers)."""
        return tiny_lm.base_weights(base_model, self.vocab_size)

    # futures

    def submit(
        self,
        call: Call,
        model_id: str | None,
        compute: Callable[[], msgspec.Struct],
        session_id: str | None = None,
        sample_sequence_ids: list[str] | None = None,
    ) -> Result:
        """Execute ``compute`` now and publish its result (or failure) as a future after the latency."""
        result: bytes | None = None
        failure: Failure | None = None
        injected = self.faults.take(call.endpoint, _REQUEST_FAILED)
        if injected is not None:
            failure = Failure(injected.message, injected.category)
        else:
            try:
                result = codec.encode(compute())
            except tiny_lm.ModelInputError as exc:
                failure = Failure(str(exc), "user")
            except OperationFailed as exc:
                failure = Failure(str(exc), exc.category)
        record = self.futures.create(call.endpoint, model_id, self.config.latency_for(call.endpoint), result, failure)
        handle = t.UntypedAPIFuture(
            request_id=record.request_id, model_id=model_id, sample_sequence_ids=sample_sequence_ids
        )
        return Result(
            json_reply(handle),
            request_id=record.request_id,
            model_id=model_id,
            session_id=session_id,
            failed=failure is not None,
        )

    def expire(self, record: FutureRecord) -> None:
        """The future's result is gone: a re-submission of its write must run again."""
        self.futures.expire(record)
        self.replay.forget_request(record.request_id)
        self.ledger.mark_expired(record.request_id)
        if self.journal is not None:
            self.journal.record_expired(record.request_id)

    # lookups that answer before anything executes

    def run(self, run_id: str) -> RunRecord:
        """The training run (404 when unknown); a request to it counts as its latest."""
        with answers_404():
            run = self.registry.run(run_id)
        run.last_request_time = utcnow()
        return run

    def live_run(self, run_id: str) -> RunRecord:
        """A run that new work may be submitted to (its session is not finished)."""
        run = self.run(run_id)
        session = self.registry.sessions.get(run.session_id)
        if session is not None:
            refuse_if_finished(session)
        return run

    def checkpoint_at(self, field: str, tinker_path: str) -> tuple[TinkerPath, CheckpointRecord]:
        """The checkpoint a request field names: 400 for a malformed path, 404 when nothing is there."""
        with answers_404(f"{field}: "):
            try:
                path = parse_tinker_path(tinker_path)
            except ValueError as exc:
                raise reject(400, f"{field}: {exc}") from None
            return path, self.registry.checkpoint(path)

    def run_in_path(self, call: Call) -> RunRecord:
        """The run a REST path names (``.../training_runs/{run_id}...``)."""
        with answers_404():
            return self.registry.run(call.params["run_id"])

    def checkpoint_in_path(self, call: Call) -> CheckpointRecord:
        """The checkpoint a REST path names (``.../training_runs/{run_id}/checkpoints/{kind}/{name}...``)."""
        run = self.run_in_path(call)
        with answers_404():
            kind, name = split_checkpoint_id(call.params["checkpoint_id"])
            return self.registry.checkpoint(TinkerPath(run.run_id, kind, name))

    def unsupported(self, base_model: str | None) -> str | None:
        """Why ``base_model`` cannot be used, or ``None`` if it can."""
        if base_model in self.registry.base_models:
            return None
        return f"base_model {base_model!r} is not supported; choose one of {list(self.registry.base_models)}"

    def supported(self, base_model: str | None) -> str:
        """``base_model``, or 400 saying which models are."""
        problem = self.unsupported(base_model)
        if problem is not None:
            raise reject(400, problem)
        assert base_model is not None
        return base_model

    @staticmethod
    def trainable(run: RunRecord) -> RunRecord:
        """The run, if its state may change (executed work fails otherwise: a corrupted run, copied weights)."""
        if run.corrupted:
            raise OperationFailed(f"training run {run.run_id} is corrupted; restore it from a checkpoint", "server")
        if not run.trainable:
            raise tiny_lm.ModelInputError(
                f"training run {run.run_id} holds copied weights and cannot be trained; "
                "sample from it or create a training client from its checkpoint"
            )
        return run
