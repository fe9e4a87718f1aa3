"""What the server knows: sessions, training runs (one per training model), samplers and checkpoints.

Plain records, independent of the wire types. With a ``state_dir`` the whole registry is written to
``state.json`` after every change (by the caller, off the event loop: see :meth:`Registry.dump`) and read
back at start, so a new server on the same directory lists the same runs and checkpoints.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from tinkex.types import ParsedCheckpointTinkerPath

from .tiny_lm import ModelState

__all__ = [
    "CHECKPOINT_KINDS",
    "CheckpointKind",
    "CustomLossRecord",
    "DEFAULT_PROJECT",
    "FinishReason",
    "CheckpointRecord",
    "NotFound",
    "Registry",
    "RunRecord",
    "SamplerRecord",
    "SessionRecord",
    "TinkerPath",
    "metadata_strings",
    "parse_tinker_path",
]

CheckpointKind = Literal["weights", "sampler_weights", "external_weights"]
CHECKPOINT_KINDS: tuple[CheckpointKind, ...] = ("weights", "sampler_weights", "external_weights")
_CHECKPOINT_TYPES = {"weights": "training", "sampler_weights": "sampler", "external_weights": "external"}
FinishReason = Literal["success", "errored", "interrupted"]
DEFAULT_PROJECT = "default"
"""The project of a session created without one (every session belongs to a project on the hosted service)."""
_STATE_FILE = "state.json"


class NotFound(LookupError):
    """An id or path names nothing the server knows; the message says which."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def metadata_strings(metadata: Mapping[str, Any] | None) -> dict[str, str] | None:
    """User metadata as the API reports it: every value a string, ``None`` when there is none."""
    return {key: str(value) for key, value in metadata.items()} if metadata else None


@dataclass(frozen=True)
class TinkerPath:
    run_id: str
    kind: CheckpointKind
    name: str

    def __str__(self) -> str:
        return f"tinker://{self.run_id}/{self.kind}/{self.name}"

    @property
    def checkpoint_id(self) -> str:
        return f"{self.kind}/{self.name}"


def parse_tinker_path(path: str) -> TinkerPath:
    """``tinker://<run>/<weights|sampler_weights|external_weights>/<name>``; ValueError names what is wrong."""
    parsed = ParsedCheckpointTinkerPath.from_tinker_path(path)
    try:
        kind, name = split_checkpoint_id(parsed.checkpoint_id)
    except NotFound as exc:
        raise ValueError(f"invalid tinker path {path!r}: {exc}") from None
    return TinkerPath(parsed.training_run_id, kind, name)


def split_checkpoint_id(checkpoint_id: str) -> tuple[CheckpointKind, str]:
    kind, _, name = checkpoint_id.partition("/")
    if kind not in CHECKPOINT_KINDS or not name or "/" in name:
        expected = " or ".join(f"{k}/<name>" for k in CHECKPOINT_KINDS)
        raise NotFound(f"checkpoint_id must be {expected}, got {checkpoint_id!r}")
    return kind, name  # type: ignore[return-value]


@dataclass
class SessionRecord:
    session_id: str
    tags: list[str]
    user_metadata: dict[str, Any]
    training_run_ids: list[str] = field(default_factory=list)
    sampler_ids: list[str] = field(default_factory=list)
    owner: str = ""
    """URN of the principal whose key created the session (see :mod:`tinkex.testing.identity`)."""
    project_id: str = DEFAULT_PROJECT
    display_name: str | None = None
    created_at: datetime = field(default_factory=lambda: utcnow())
    finish_reason: FinishReason | None = None
    """Set once the client reported the session done (``sessions/{id}/finish``); it then refuses new work."""
    finish_detail: str | None = None
    sampler_clients: dict[str, int] = field(default_factory=dict)
    """Per sampling session: the last client counter handed out by ``join_sampling_session`` (0 = original)."""

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class CustomLossRecord:
    """A custom loss uploaded by ``create_custom_loss``: usable by ``loss_id`` in its session's forward_backward."""

    loss_id: str
    session_id: str
    name: str
    inputs: list[tuple[str, int]]
    """``(name, rank)`` of each input, ``logprobs`` first."""
    nodes: list[dict[str, Any]]
    """The traced graph's nodes as plain data (``CustomLossNode`` fields)."""


@dataclass
class RunRecord:
    run_id: str
    session_id: str
    base_model: str
    lora_rank: int
    train_unembed: bool
    train_mlp: bool
    train_attn: bool
    user_metadata: dict[str, str] | None
    last_request_time: datetime
    state: ModelState = field(default_factory=ModelState)
    corrupted: bool = False
    trainable: bool = True
    """False for the run that holds a ``copy_weights`` copy: it can be sampled from or loaded, not trained."""


@dataclass
class CheckpointRecord:
    path: TinkerPath
    time: datetime
    base_model: str
    lora_rank: int
    weights: dict[str, Any]
    """The adapter snapshot (``ModelState.snapshot``): plain JSON."""
    public: bool = False
    expires_at: datetime | None = None
    user_metadata: dict[str, str] | None = None

    @property
    def checkpoint_type(self) -> Literal["training", "sampler", "external"]:
        return _CHECKPOINT_TYPES[self.path.kind]  # type: ignore[return-value]

    @property
    def size_bytes(self) -> int:
        return len(json.dumps(self.weights))

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass
class SamplerRecord:
    sampler_id: str
    session_id: str
    base_model: str
    model_path: str | None
    weights: dict[str, Any] | None
    """The adapter snapshot the sampler samples from (``ModelState.snapshot``); ``None``: the bare base model."""
    from_training_checkpoint: bool = False
    """Created from a ``weights/`` path: every sample fails with a user error."""


class Registry:
    def __init__(
        self, base_models: tuple[str, ...], seed: int, state_dir: Path | None = None, generation: int = 0
    ) -> None:
        """``generation`` counts starts on ``state_dir``: each draws its ids from its own stream, so ids made after
        a restart do not repeat earlier ones (0, without a state directory, keeps the seed's stream)."""
        self.base_models = base_models
        self._ids = random.Random(seed if generation == 0 else f"{seed}:{generation}")
        self.state_dir = state_dir
        self.journal_position = 0
        """How many executions of the write journal the loaded ``state.json`` includes."""
        self.sessions: dict[str, SessionRecord] = {}
        self.runs: dict[str, RunRecord] = {}
        self.samplers: dict[str, SamplerRecord] = {}
        self.checkpoints: dict[str, CheckpointRecord] = {}
        """By ``str(tinker_path)``, in creation order."""
        self.custom_losses: dict[str, CustomLossRecord] = {}
        if state_dir is not None and (state_dir / _STATE_FILE).exists():
            self._load(json.loads((state_dir / _STATE_FILE).read_text()))

    # sessions, runs, samplers

    def create_session(
        self,
        tags: list[str],
        user_metadata: dict[str, Any],
        *,
        owner: str = "",
        project_id: str | None = None,
        display_name: str | None = None,
    ) -> SessionRecord:
        session_id = self.new_id("sess")
        while session_id in self.sessions:
            session_id = self.new_id("sess")
        record = SessionRecord(
            session_id, tags, user_metadata, owner=owner, project_id=project_id or DEFAULT_PROJECT,
            display_name=display_name,
        )
        self.sessions[session_id] = record
        return record

    def new_id(self, prefix: str) -> str:
        """``<prefix>-<8 hex digits>``, reproducible for a given server seed."""
        return f"{prefix}-{self._ids.getrandbits(32):08x}"

    def finish_session(self, session_id: str, reason: FinishReason, detail: str | None) -> SessionRecord:
        """Record that the client is done; a second finish keeps the first reason (finishing is idempotent)."""
        session = self.session(session_id)
        if session.finish_reason is None:
            session.finish_reason, session.finish_detail = reason, detail
        return session

    def session(self, session_id: str) -> SessionRecord:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise NotFound(f"unknown session_id {session_id!r}") from None

    def run(self, run_id: str) -> RunRecord:
        try:
            return self.runs[run_id]
        except KeyError:
            raise NotFound(f"unknown model_id / training_run_id {run_id!r}") from None

    def sampler(self, sampler_id: str) -> SamplerRecord:
        try:
            return self.samplers[sampler_id]
        except KeyError:
            raise NotFound(f"unknown sampling_session_id / sampler_id {sampler_id!r}") from None

    def add_run(self, record: RunRecord) -> None:
        self.runs[record.run_id] = record
        if record.session_id in self.sessions:  # a copy into a project has no session
            self.session(record.session_id).training_run_ids.append(record.run_id)

    def add_sampler(self, record: SamplerRecord) -> None:
        self.samplers[record.sampler_id] = record
        self.session(record.session_id).sampler_ids.append(record.sampler_id)

    # checkpoints

    def save_checkpoint(
        self,
        run: RunRecord,
        kind: CheckpointKind,
        name: str,
        ttl_seconds: int | None,
        user_metadata: dict[str, str] | None = None,
    ) -> CheckpointRecord:
        now = utcnow()
        record = CheckpointRecord(
            path=TinkerPath(run.run_id, kind, name),
            time=now,
            base_model=run.base_model,
            lora_rank=run.lora_rank,
            weights=run.state.snapshot(with_optimizer=kind == "weights"),
            expires_at=now + timedelta(seconds=ttl_seconds) if ttl_seconds is not None else None,
            user_metadata=user_metadata,
        )
        self.checkpoints.pop(str(record.path), None)
        self.checkpoints[str(record.path)] = record
        return record

    def copy_checkpoint(self, source: CheckpointRecord, run: RunRecord, ttl_seconds: int | None) -> CheckpointRecord:
        """The same weights under ``run`` with the source's kind and name; the source's expiry is not inherited."""
        now = utcnow()
        record = CheckpointRecord(
            path=TinkerPath(run.run_id, source.path.kind, source.path.name),
            time=now,
            base_model=source.base_model,
            lora_rank=source.lora_rank,
            weights=dict(source.weights),
            expires_at=now + timedelta(seconds=ttl_seconds) if ttl_seconds is not None else None,
            user_metadata=source.user_metadata,
        )
        self.checkpoints[str(record.path)] = record
        return record

    def exists(self, path: TinkerPath) -> bool:
        record = self.checkpoints.get(str(path))
        return record is not None and not record.expired(utcnow())

    def checkpoint(self, path: TinkerPath) -> CheckpointRecord:
        record = self.checkpoints.get(str(path))
        if record is None or record.expired(utcnow()):
            raise NotFound(f"no checkpoint at {path}")
        return record

    def delete_checkpoint(self, path: TinkerPath) -> None:
        self.checkpoint(path)
        del self.checkpoints[str(path)]

    def live_checkpoints(self, run_id: str | None = None) -> list[CheckpointRecord]:
        now = utcnow()
        return [
            c for c in self.checkpoints.values() if not c.expired(now) and (run_id is None or c.path.run_id == run_id)
        ]

    def archive(self, path: TinkerPath) -> bytes:
        """A gzip-compressed tar of the checkpoint: its weights and a PEFT-style adapter config."""
        record = self.checkpoint(path)
        files = {
            "adapter_config.json": {"base_model_name_or_path": record.base_model, "r": record.lora_rank},
            "checkpoint.json": {"tinker_path": str(record.path), "weights": record.weights},
        }
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, content in files.items():
                data = json.dumps(content, indent=2).encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = int(record.time.timestamp())
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    # persistence

    def dump(self, journal_position: int = 0) -> str:
        """The registry as JSON; the caller writes it to ``state_dir`` (see :meth:`write_dump`).

        ``journal_position``: how many journaled executions this state includes (see
        :mod:`tinkex.testing.write_journal`)."""
        return json.dumps(
            {
                "journal_position": journal_position,
                "sessions": [
                    {**asdict(s), "created_at": s.created_at.isoformat()} for s in self.sessions.values()
                ],
                "custom_losses": [asdict(loss) for loss in self.custom_losses.values()],
                "runs": [
                    {**asdict(r), "state": r.state.to_json(), "last_request_time": r.last_request_time.isoformat()}
                    for r in self.runs.values()
                ],
                "samplers": [asdict(s) for s in self.samplers.values()],
                "checkpoints": [
                    {
                        "path": str(c.path),
                        "time": c.time.isoformat(),
                        "base_model": c.base_model,
                        "lora_rank": c.lora_rank,
                        "weights": c.weights,
                        "public": c.public,
                        "expires_at": c.expires_at.isoformat() if c.expires_at else None,
                        "user_metadata": c.user_metadata,
                    }
                    for c in self.checkpoints.values()
                ],
            }
        )

    def write_dump(self, dump: str) -> None:
        """Atomically replace ``state.json`` (blocking: call it from a worker thread)."""
        assert self.state_dir is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.state_dir / (_STATE_FILE + ".tmp")
        temporary.write_text(dump)
        temporary.replace(self.state_dir / _STATE_FILE)

    def _load(self, data: dict[str, Any]) -> None:
        self.journal_position = data.get("journal_position", 0)
        for session in data["sessions"]:
            if "created_at" in session:
                session["created_at"] = datetime.fromisoformat(session["created_at"])
            self.sessions[session["session_id"]] = SessionRecord(**session)
        for loss in data.get("custom_losses", []):
            loss["inputs"] = [tuple(pair) for pair in loss["inputs"]]
            self.custom_losses[loss["loss_id"]] = CustomLossRecord(**loss)
        for run in data["runs"]:
            state = ModelState.from_json(run.pop("state"))
            run["last_request_time"] = datetime.fromisoformat(run["last_request_time"])
            self.runs[run["run_id"]] = RunRecord(**run, state=state)
        for sampler in data["samplers"]:
            self.samplers[sampler["sampler_id"]] = SamplerRecord(**sampler)
        for checkpoint in data["checkpoints"]:
            expires_at = checkpoint["expires_at"]
            record = CheckpointRecord(
                path=parse_tinker_path(checkpoint["path"]),
                time=datetime.fromisoformat(checkpoint["time"]),
                base_model=checkpoint["base_model"],
                lora_rank=checkpoint["lora_rank"],
                weights=checkpoint["weights"],
                public=checkpoint["public"],
                expires_at=datetime.fromisoformat(expires_at) if expires_at else None,
                user_metadata=checkpoint.get("user_metadata"),
            )
            self.checkpoints[str(record.path)] = record
