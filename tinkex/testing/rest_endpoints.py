"""The REST resources the ``RestClient`` reads and edits: training runs and their checkpoints (listed, deleted,
published, given a TTL), the user's checkpoints, and sessions (listed, looked up).

Query values are read the FastAPI way: the last value of a repeated parameter wins, and a refused one answers with
``{"detail": [{"loc": ["query", name], ...}]}`` (:func:`query_rejection`, shared with the account endpoints).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from tinkex import types as t

from .calls import Call, Rejection, Result, answers_404
from .endpoint_state import EndpointState
from .registry import CheckpointRecord, RunRecord, utcnow
from .replies import Reply, json_reply

__all__ = ["RestEndpoints", "query_rejection", "query_value"]

_ACCESS_SCOPES = ("owned", "accessible")
_T = TypeVar("_T")


def query_value(call: Call, name: str) -> str | None:
    """The query parameter's value as sent (its last one when repeated), ``None`` when absent."""
    values = call.query.get(name)
    return values[-1] if values else None


def query_rejection(name: str, message: str, status: int = 422) -> Rejection:
    """A refused query parameter, in the FastAPI shape: the reply names the parameter (and so does ``message``)."""
    return Rejection(json_reply({"detail": [{"loc": ["query", name], "msg": message, "type": "value_error"}]}, status))


def _query_int(call: Call, name: str, default: int) -> int:
    value = query_value(call, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise query_rejection(name, f"{name} must be a non-negative integer, got {value!r}")
    return number


def _check_access_scope(call: Call) -> None:
    scope = query_value(call, "access_scope")
    if scope is not None and scope not in _ACCESS_SCOPES:
        raise query_rejection("access_scope", f"access_scope must be 'owned' or 'accessible', got {scope!r}")


def _page(call: Call, items: list[_T], default_limit: int) -> tuple[list[_T], t.Cursor]:
    """The ``limit``/``offset`` slice of ``items`` the query asks for, and its cursor."""
    limit, offset = _query_int(call, "limit", default_limit), _query_int(call, "offset", 0)
    return items[offset : offset + limit], t.Cursor(offset=offset, limit=limit, total_count=len(items))


def _checkpoint_struct(record: CheckpointRecord) -> t.Checkpoint:
    extra = {"user_metadata": record.user_metadata} if "user_metadata" in t.Checkpoint.__struct_fields__ else {}
    return t.Checkpoint(
        **extra,
        checkpoint_id=record.path.checkpoint_id,
        checkpoint_type=record.checkpoint_type,
        time=record.time,
        tinker_path=str(record.path),
        size_bytes=record.size_bytes,
        public=record.public,
        expires_at=record.expires_at,
    )


class RestEndpoints:
    def __init__(self, state: EndpointState) -> None:
        self.state = state
        self.registry = state.registry

    def _training_run_struct(self, run: RunRecord) -> t.TrainingRun:
        last = {c.path.kind: c for c in self.registry.live_checkpoints(run.run_id)}  # the newest of each kind wins
        weights, sampler_weights = last.get("weights"), last.get("sampler_weights")
        return t.TrainingRun(
            training_run_id=run.run_id,
            base_model=run.base_model,
            model_owner="local-user",
            is_lora=True,
            corrupted=run.corrupted,
            lora_rank=run.lora_rank,
            last_request_time=run.last_request_time,
            last_checkpoint=_checkpoint_struct(weights) if weights else None,
            last_sampler_checkpoint=_checkpoint_struct(sampler_weights) if sampler_weights else None,
            user_metadata=run.user_metadata,
        )

    # training runs and checkpoints

    def get_training_run(self, call: Call) -> Result:
        _check_access_scope(call)
        return Result(json_reply(self._training_run_struct(self.state.run_in_path(call))))

    def list_training_runs(self, call: Call) -> Result:
        _check_access_scope(call)
        runs, cursor = _page(call, list(self.registry.runs.values()), 20)
        page = [self._training_run_struct(run) for run in runs]
        return Result(json_reply(t.TrainingRunsResponse(training_runs=page, cursor=cursor)))

    def list_checkpoints(self, call: Call) -> Result:
        run = self.state.run_in_path(call)
        checkpoints = [_checkpoint_struct(c) for c in self.registry.live_checkpoints(run.run_id)]
        return Result(json_reply(t.CheckpointsListResponse(checkpoints=checkpoints)))

    def list_user_checkpoints(self, call: Call) -> Result:
        checkpoints, cursor = _page(call, self.registry.live_checkpoints(), 100)
        page = [_checkpoint_struct(c) for c in checkpoints]
        return Result(json_reply(t.CheckpointsListResponse(checkpoints=page, cursor=cursor)))

    def delete_checkpoint(self, call: Call) -> Result:
        self.registry.delete_checkpoint(self.state.checkpoint_in_path(call).path)
        return Result(Reply(204))

    def publish_checkpoint(self, call: Call) -> Result:
        self.state.checkpoint_in_path(call).public = True
        return Result(Reply(204))

    def unpublish_checkpoint(self, call: Call) -> Result:
        self.state.checkpoint_in_path(call).public = False
        return Result(Reply(204))

    def set_checkpoint_ttl(self, call: Call) -> Result:
        request: t.SetCheckpointTtlRequest = call.body
        checkpoint = self.state.checkpoint_in_path(call)
        ttl = request.ttl_seconds
        checkpoint.expires_at = utcnow() + timedelta(seconds=ttl) if ttl is not None else None
        return Result(Reply(204))

    # sessions

    def get_session(self, call: Call) -> Result:
        _check_access_scope(call)
        with answers_404():
            session = self.registry.session(call.params["session_id"])
        reply = t.GetSessionResponse(training_run_ids=session.training_run_ids, sampler_ids=session.sampler_ids)
        return Result(json_reply(reply))

    def list_sessions(self, call: Call) -> Result:
        _check_access_scope(call)
        sessions, _ = _page(call, list(self.registry.sessions), 20)
        return Result(json_reply(t.ListSessionsResponse(sessions=sessions)))
