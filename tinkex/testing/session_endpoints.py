"""The session endpoints: create a session and keep it alive (heartbeat), and what official 0.38 added: finish, join
a sampling session, search, move to a project, export a trace, and who the key is (``auth/apikey/me``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

import msgspec

from tinkex import types as t

from . import session_search
from .calls import Call, Result, answers_404, open_session, reject, session_or_404
from .downloads import Downloads
from .identity import principal_for
from .ledger import Execution, Ledger
from .registry import Registry, SessionRecord, metadata_strings
from .replies import Reply, json_reply

__all__ = ["AssignSessionProjectRequest", "SessionEndpoints", "caller_urn", "trace_json"]

_TRACE_URL_LIFETIME = timedelta(hours=1)


class AssignSessionProjectRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Body of ``PUT /api/v1/sessions/{session_id}/project`` (the official SDK posts a literal dict)."""

    project_id: str


def caller_urn(call: Call) -> str:
    """The user the request's key acts as."""
    return principal_for(call.headers.get("x-api-key", "")).user_urn


def trace_json(session_id: str, executions: Sequence[Execution]) -> bytes:
    """Trace Event Format (what Perfetto and chrome://tracing open): one instant event per executed request."""
    mine = [e for e in executions if e.session_id == session_id]
    start = min((e.time for e in mine), default=0.0)
    events = [
        {
            "name": e.endpoint,
            "ph": "i",
            "s": "p",
            "ts": round((e.time - start) * 1e6),
            "pid": 1,
            "tid": 1,
            "args": {"model_id": e.model_id, "seq_id": e.seq_id, "request_id": e.request_id, "outcome": e.outcome},
        }
        for e in mine
    ]
    return json.dumps({"traceEvents": events, "otherData": {"session_id": session_id}}).encode()


class SessionEndpoints:
    def __init__(self, registry: Registry, ledger: Ledger, downloads: Downloads) -> None:
        self.registry = registry
        self.ledger = ledger
        self.downloads = downloads

    def create_session(self, call: Call) -> Result:
        request: t.CreateSessionRequest = call.body
        session = self.registry.create_session(
            request.tags,
            request.user_metadata or {},
            owner=caller_urn(call),
            project_id=request.project_id,
            display_name=request.display_name,
        )
        return Result(json_reply(t.CreateSessionResponse(session_id=session.session_id)), session_id=session.session_id)

    def session_heartbeat(self, call: Call) -> Result:
        request: t.SessionHeartbeatRequest = call.body
        open_session(self.registry, request.session_id)
        return Result(json_reply(t.SessionHeartbeatResponse()))

    def finish_session(self, call: Call) -> Result:
        request: t.FinishSessionRequest = call.body
        with answers_404():
            session = self.registry.finish_session(call.params["session_id"], request.reason.type, request.detail)
        return Result(json_reply({}), session_id=session.session_id)

    def join_sampling_session(self, call: Call) -> Result:
        request: t.JoinSamplingSessionRequest = call.body
        with answers_404():
            sampler = self.registry.sampler(request.sampling_session_id)
        session = open_session(self.registry, sampler.session_id)
        counter = session.sampler_clients.get(sampler.sampler_id, 0) + 1
        session.sampler_clients[sampler.sampler_id] = counter
        return Result(json_reply(t.JoinSamplingSessionResponse(client_counter=counter)), session_id=session.session_id)

    def search_sessions(self, call: Call) -> Result:
        request: t.SessionSearchRequest = call.body
        caller = caller_urn(call)
        found = [s for s in self.registry.sessions.values() if session_search.matches(s, request, caller)]
        chosen, next_cursor = session_search.page(found, request.limit, request.cursor)
        summaries = [self._summary(s) for s in chosen]
        return Result(json_reply(t.SessionSearchResponse(sessions=summaries, next_cursor=next_cursor)))

    def _summary(self, session: SessionRecord) -> t.SessionSummary:
        checkpoints = [c for c in self.registry.live_checkpoints() if c.path.run_id in session.training_run_ids]
        return t.SessionSummary(
            session_id=session.session_id,
            created_at=session.created_at,
            owner=session.owner,
            project_id=session.project_id,
            status=session_search.status_of(session),
            checkpoints_count=len(checkpoints),
            display_name=session.display_name,
            user_metadata=metadata_strings(session.user_metadata),
            checkpoint_storage_bytes=sum(c.size_bytes for c in checkpoints),
        )

    def assign_session_project(self, call: Call) -> Result:
        request: AssignSessionProjectRequest = call.body
        if not request.project_id:
            raise reject(400, "project_id must be a non-empty project id")
        session = session_or_404(self.registry, call.params["session_id"])
        session.project_id = request.project_id
        return Result(Reply(204), session_id=session.session_id)

    def export_session_trace(self, call: Call) -> Result:
        """The session's executed requests as a JSON trace, behind a download URL (ready at once)."""
        session_id = session_or_404(self.registry, call.params["session_id"]).session_id

        def produce() -> bytes:
            return trace_json(session_id, self.ledger.executions())

        url = self.downloads.link(call.base_url, produce, "application/json", f"{session_id}.json", _TRACE_URL_LIFETIME)
        return Result(json_reply({"status": "ready", "url": url}))

    def whoami(self, call: Call) -> Result:
        return Result(json_reply(principal_for(call.headers.get("x-api-key", "")).whoami_body()))
