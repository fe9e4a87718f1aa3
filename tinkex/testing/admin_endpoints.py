"""The account endpoints of 0.38's ``AdminClient``: the audit log (``GET /api/v1/audit``), hourly billing usage
(``GET /api/v1/billing/usage/events``) and current checkpoint storage
(``GET /api/v1/billing/usage/checkpoints/current``).

They report what this server really did: :meth:`AdminEndpoints.observe` is called by the app for every write it
executes (never for a replayed re-send or a refused request) and turns it into audit and usage records; the
reports themselves are the pure functions of :mod:`tinkex.testing.account_reports`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

import msgspec

from tinkex import types as t

from .account_reports import (
    AccountJournal,
    AuditRecord,
    QueryProblem,
    StoredCheckpoint,
    UsageKind,
    UsageRecord,
    audit_day,
    audit_entries,
    billing_events,
    billing_window,
    storage_items,
)
from .calls import Call, Rejection, Result
from .futures_store import FutureStore
from .registry import Registry, metadata_strings, parse_tinker_path, utcnow
from .replies import json_reply
from .rest_endpoints import query_rejection, query_value
from .session_endpoints import caller_urn

__all__ = ["AdminEndpoints"]

_SAVES = frozenset({"save_weights", "save_weights_for_sampler", "save_weights_external"})
_CHECKPOINT_EVENTS: Mapping[str, str] = {
    "delete_checkpoint": "checkpoint_delete",
    "publish_checkpoint": "checkpoint_publish",
    "unpublish_checkpoint": "checkpoint_unpublish",
    "set_checkpoint_ttl": "checkpoint_ttl_set",
}


class _SavedPath(msgspec.Struct):
    """The part of a save's result the journal needs (a save for a sampling session has no path)."""

    path: str | None = None


class _Attribution(msgspec.Struct, frozen=True):
    base_model: str | None
    user_id: str | None
    session_id: str | None
    project_id: str | None


def _problem_reply(problem: QueryProblem) -> Rejection:
    """400 naming the query parameter (the message names it too)."""
    return query_rejection(problem.field, str(problem), 400)


def _model_input_tokens(model_input: t.ModelInput) -> int:
    return sum(chunk.length for chunk in model_input.chunks)


class AdminEndpoints:
    def __init__(self, registry: Registry, futures: FutureStore, clock: Callable[[], datetime] = utcnow) -> None:
        self.registry = registry
        self.futures = futures
        self.journal = AccountJournal()
        self._clock = clock

    # reports ---------------------------------------------------------------------------------------------
    def get_audit_log(self, call: Call) -> Result:
        try:
            day = audit_day(query_value(call, "day"), self._clock().date())
            entries = audit_entries(self.journal.audit(), query_value(call, "event_type") or "all", day)
        except QueryProblem as problem:
            raise _problem_reply(problem) from None
        return Result(json_reply(t.AuditLogResponse(entries=entries)))

    def get_billing_usage(self, call: Call) -> Result:
        try:
            starting_on, ending_before = query_value(call, "starting_on"), query_value(call, "ending_before")
            start, end = billing_window(starting_on, ending_before, self._clock())
        except QueryProblem as problem:
            raise _problem_reply(problem) from None
        events = billing_events(self.journal.usage(), start, end)
        sessions = {
            e.session_id: t.BillingUsageSession(user_metadata=self._session_metadata(e.session_id))
            for e in events
            if e.session_id is not None
        }
        return Result(json_reply(t.BillingUsageResponse(data=events, sessions=sessions)))

    def get_current_checkpoint_storage_usage(self, call: Call) -> Result:
        stored = [
            StoredCheckpoint(*self._owner_of_run(c.path.run_id), size_bytes=c.size_bytes)
            for c in self.registry.live_checkpoints()
        ]
        items = storage_items(stored, query_value(call, "project_id") or None)
        return Result(json_reply(t.CurrentCheckpointStorageUsageResponse(data=items)))

    # the journal -----------------------------------------------------------------------------------------
    def observe(self, call: Call, result: Result) -> None:
        """Record what the executed write ``call`` did. A future that failed did no billable or audited work."""
        if result.failed:
            return
        endpoint = call.endpoint
        now = self._clock()
        actor = caller_urn(call)
        audit: list[AuditRecord] = []
        usage: list[UsageRecord] = []

        def checkpoint_event(event: str, tinker_path: str, **details: object) -> None:
            run_id = parse_tinker_path(tinker_path).run_id
            project, _ = self._owner_of_run(run_id)
            audit.append(
                AuditRecord(
                    time=now,
                    event=event,
                    details={"actor": actor, "tinker_path": tinker_path, "model_id": run_id,
                             "project_id": project, **details},
                    model_id=run_id,
                    tinker_path=tinker_path,
                )
            )

        def use(kind: UsageKind, amount: int, who: _Attribution) -> None:
            usage.append(UsageRecord(now, kind, amount, who.base_model, who.user_id, who.session_id, who.project_id))

        body = call.body
        if endpoint in ("forward", "forward_backward"):
            data = (body.forward_backward_input if endpoint == "forward_backward" else body.forward_input).data
            use("training", sum(_model_input_tokens(d.model_input) for d in data), self._run_attribution(body.model_id))
        elif endpoint == "asample":
            who = self._sample_attribution(body, actor)
            use("sampling_prefill", _model_input_tokens(body.prompt), who)
            sampled = self._future_result(result, t.SampleResponse)
            if sampled is not None:
                use("sampling_sample", sum(len(s.tokens) for s in sampled.sequences), who)
        elif endpoint in _SAVES:
            saved = self._future_result(result, _SavedPath)
            if saved is not None and saved.path is not None:
                checkpoint_event("checkpoint_save", saved.path, kind=parse_tinker_path(saved.path).kind)
                use("checkpoint", 1, self._run_attribution(body.model_id))
        elif endpoint in _CHECKPOINT_EVENTS:
            path = f"tinker://{call.params['run_id']}/{call.params['checkpoint_id']}"
            extra = {"ttl_seconds": body.ttl_seconds} if endpoint == "set_checkpoint_ttl" else {}
            checkpoint_event(_CHECKPOINT_EVENTS[endpoint], path, **extra)
        elif endpoint == "copy_weights":
            copied = msgspec.json.decode(result.reply.body, type=t.CopyWeightsResponse)
            checkpoint_event("checkpoint_copy", copied.tinker_path, source_path=body.source_path)
        elif endpoint == "assign_session_project":
            audit.append(
                AuditRecord(
                    time=now,
                    event="project_session_assign",
                    details={"actor": actor, "session_id": call.params["session_id"], "project_id": body.project_id},
                )
            )
        if audit or usage:
            self.journal.record(audit, usage)

    def _future_result(self, result: Result, type_: type[msgspec.Struct]) -> msgspec.Struct | None:
        """The decoded result a future endpoint computed at submission (``None`` if it holds none)."""
        record = self.futures.get(result.request_id) if result.request_id is not None else None
        if record is None or record.result is None:
            return None
        return msgspec.json.decode(record.result, type=type_)  # type: ignore[no-any-return]

    def _owner_of_run(self, run_id: str) -> tuple[str | None, str | None]:
        """``(project_id, owner URN)`` of a training run: its session's, or for a copy made into a project with no
        session, the project it was copied into."""
        run = self.registry.runs.get(run_id)
        if run is None:
            return None, None
        session = self.registry.sessions.get(run.session_id)
        if session is not None:
            return session.project_id, session.owner or None
        return (run.user_metadata or {}).get("project_id"), None

    def _session_attribution(self, session_id: str | None, base_model: str | None, actor: str) -> _Attribution:
        session = self.registry.sessions.get(session_id) if session_id else None
        if session is None:
            return _Attribution(base_model, actor, None, None)
        return _Attribution(base_model, session.owner or actor, session.session_id, session.project_id)

    def _run_attribution(self, model_id: str) -> _Attribution:
        run = self.registry.runs.get(model_id)
        if run is None:
            return _Attribution(None, None, None, None)
        project, owner = self._owner_of_run(model_id)
        return _Attribution(run.base_model, owner, run.session_id or None, project)

    def _sample_attribution(self, request: t.SampleRequest, actor: str) -> _Attribution:
        sampler = self.registry.samplers.get(request.sampling_session_id) if request.sampling_session_id else None
        if sampler is not None:
            return self._session_attribution(sampler.session_id, sampler.base_model, actor)
        base_model = request.base_model
        if base_model is None and request.model_path is not None:
            try:
                checkpoint = self.registry.checkpoints.get(str(parse_tinker_path(request.model_path)))
            except ValueError:  # the sample ran from a path this server reads differently: no model to bill
                checkpoint = None
            base_model = checkpoint.base_model if checkpoint is not None else None
        return _Attribution(base_model, actor, None, None)

    def _session_metadata(self, session_id: str) -> dict[str, str] | None:
        session = self.registry.sessions.get(session_id)
        return metadata_strings(session.user_metadata) if session is not None else None
