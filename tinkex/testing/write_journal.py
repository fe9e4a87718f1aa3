"""What must survive a restart of LocalServer on the same state directory, as an append-only journal.

``state.json`` (the registry) says what the model state *is*; this journal says what the server *did* and answered:
every executed write (its ledger execution, its future with the result, its replay-cache entry) and every future
that expired since. A new server on the directory reads it back, so

- a future issued before the restart answers its result (or its failure, or 410 if it had expired);
- a re-sent write with the same idempotency key or ``(seq scope, seq_id)`` is answered from the replay cache and
  does not run again;
- the ledger lists what ran before, and so do the account reports (audit log, billing).

Consistency with ``state.json`` after a SIGKILL. A write is journaled the moment it executes, and its reply is sent
only after ``state.json`` has been rewritten (see ``TinkerApp._run``), which records how many journal entries its
state includes (``journal_position``). An execution journaled after that position had not reached ``state.json``
when the server died, so its effect is lost and its client never got an answer. At load it is undone: its
replay-cache entry is dropped (a re-send runs it afresh, once), its future answers a failure saying it did not take
effect, and its ledger execution is marked ``undone`` (excluded from ``duplicates_executed``). So every write takes
effect exactly once however the server dies.

Each entry is one ``os.write`` of one JSON line to a file opened ``O_APPEND``: once written it is in the kernel and
survives the process being killed (not a power cut: a test server does not fsync). A torn last line is ignored and
cut off before the next start appends.

Request ids never repeat across restarts: each start on the directory takes the next *generation* (persisted in
``generation``) and future ids are ``req-<generation>.<n>``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import msgspec

from .account_reports import AccountJournal, AuditRecord, UsageRecord
from .dedup import CachedReply, ReplayCache
from .futures_store import Failure, FutureRecord, FutureStore
from .ledger import Execution, ExecutionIdentity
from .replies import Reply

__all__ = ["JOURNAL_FILE", "Restored", "WriteJournal", "next_generation"]

JOURNAL_FILE = "journal.jsonl"
_GENERATION_FILE = "generation"
UNDONE_MESSAGE = (
    "the server restarted before this operation's effect was saved: it did not take effect; submit it again"
)


class _FutureEntry(msgspec.Struct, frozen=True):
    request_id: str
    endpoint: str
    model_id: str | None
    ready_wall: float
    """Wall-clock time the result is (was) ready: monotonic clocks do not carry across processes."""
    result: bytes | None
    failure_message: str | None
    failure_category: str | None


class _ReplayEntry(msgspec.Struct, frozen=True):
    idempotency_key: str | None
    seq_scope: str | None
    seq_id: int | None
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class _ExecutionEntry(ExecutionIdentity):  # msgspec encodes a dataclass as it did the Struct: an object, by name
    wall_time: float
    outcome: str
    seq_scope: str | None


_SHARED_EXECUTION_FIELDS = tuple(
    entry_field.name for entry_field in fields(_ExecutionEntry) if entry_field.name != "wall_time"
)
"""What an :class:`Execution` and its journal entry hold alike; the entry keeps wall-clock time instead of the
monotonic one (monotonic clocks do not carry across processes), and no flags the load decides."""


class _Executed(msgspec.Struct, frozen=True, tag="executed"):
    position: int
    """1 for the first execution in the directory, then 2, 3 ... (what ``journal_position`` counts)."""
    execution: _ExecutionEntry
    replay: _ReplayEntry
    future: _FutureEntry | None
    """The future's state right after the write: the one it created, or the one it changed (a cancel)."""


class _Expired(msgspec.Struct, frozen=True, tag="expired"):
    request_id: str


class _Undone(msgspec.Struct, frozen=True, tag="undone"):
    first: int
    last: int


class _Account(msgspec.Struct, frozen=True, tag="account"):
    """What the execution at ``position`` added to the account reports (audit log, billing)."""

    position: int
    audit: list[AuditRecord]
    usage: list[UsageRecord]


_Entry = _Executed | _Expired | _Undone | _Account
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Entry)


def next_generation(state_dir: Path) -> int:
    """Take the next start number of this directory (1 for the first); ids made in it never repeat earlier ones."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / _GENERATION_FILE
    generation = int(path.read_text()) + 1 if path.exists() else 1
    temporary = path.with_suffix(".tmp")
    temporary.write_text(str(generation))
    temporary.replace(path)
    return generation


@dataclass
class Restored:
    """What a journal read back holds; the caller installs it into a fresh server."""

    futures: list[FutureRecord] = field(default_factory=list)
    replay: list[tuple[str | None, tuple[str, int] | None, CachedReply]] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    position: int = 0
    """The last execution's position: the journal continues after it."""
    account: list[tuple[list[AuditRecord], list[UsageRecord]]] = field(default_factory=list)
    newly_undone: list[int] = field(default_factory=list)
    """Positions after the state's ``journal_position``, undone by this load (see the module docstring); the caller
    records them (:meth:`WriteJournal.record_undone`)."""

    def install(self, futures: FutureStore, replay: ReplayCache, account: AccountJournal) -> None:
        for record in self.futures:
            futures.restore(record)
        for key, seq, cached in self.replay:
            replay.store(key, seq, cached)
        for audit, usage in self.account:
            account.record(audit, usage)


class WriteJournal:
    """The append side; used from the server's event loop only."""

    def __init__(self, state_dir: Path, position: int) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / JOURNAL_FILE
        _cut_torn_tail(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.position = position

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def record_execution(
        self,
        execution: Execution,
        key: str | None,
        seq: tuple[str, int] | None,
        reply: Reply,
        future: FutureRecord | None,
    ) -> None:
        self.position += 1
        entry = _Executed(
            position=self.position,
            execution=_execution_entry(execution),
            replay=_ReplayEntry(
                idempotency_key=key,
                seq_scope=seq[0] if seq else None,
                seq_id=seq[1] if seq else None,
                status=reply.status,
                body=reply.body,
                headers=list(reply.headers),
            ),
            future=_future_entry(future) if future is not None else None,
        )
        self._append(entry)

    def record_account(self, audit: list[AuditRecord], usage: list[UsageRecord]) -> None:
        """The account records of the execution journaled last (``AccountJournal.listener``)."""
        self._append(_Account(self.position, audit, usage))

    def record_expired(self, request_id: str) -> None:
        self._append(_Expired(request_id))

    def _append(self, entry: _Entry) -> None:
        os.write(self._fd, _encoder.encode(entry) + b"\n")

    def record_undone(self, first: int, last: int) -> None:
        """Positions ``first..last`` were undone at load; later loads must not take them for live ones although a
        later ``journal_position`` covers them."""
        self._append(_Undone(first, last))

    @staticmethod
    def read(state_dir: Path, state_position: int) -> Restored:
        """Rebuild from the journal; executions after ``state_position`` (and those undone by earlier loads) are
        undone."""
        entries = list(_entries(state_dir / JOURNAL_FILE))
        undone_positions = {
            position
            for entry in entries
            if isinstance(entry, _Undone)
            for position in range(entry.first, entry.last + 1)
        }
        restored = Restored()
        futures: dict[str, FutureRecord] = {}
        replay: list[tuple[str | None, tuple[str, int] | None, CachedReply]] = []
        executions: list[Execution] = []
        created_by_undone: set[str] = set()
        expired_ids: set[str] = set()
        for entry in entries:
            if isinstance(entry, _Expired):
                expired_ids.add(entry.request_id)
                continue
            if isinstance(entry, _Undone):
                continue
            if isinstance(entry, _Account):
                if entry.position not in undone_positions and entry.position <= state_position:
                    restored.account.append((entry.audit, entry.usage))
                continue
            restored.position = entry.position
            undone = entry.position in undone_positions or entry.position > state_position
            if undone and entry.position > state_position and entry.position not in undone_positions:
                restored.newly_undone.append(entry.position)
            execution = _execution(entry.execution, undone)
            executions.append(execution)
            future = entry.future
            if undone:
                # A future this write created never reached its client; one it changed (a cancel) stays as it was.
                if future is not None and future.request_id not in futures:
                    record = _future_record(future)
                    record.result, record.failure = None, Failure(UNDONE_MESSAGE, "server")
                    futures[future.request_id] = record
                    created_by_undone.add(future.request_id)
                continue
            if future is not None:
                futures[future.request_id] = _future_record(future)
            r = entry.replay
            seq = (r.seq_scope, r.seq_id) if r.seq_scope is not None and r.seq_id is not None else None
            cached = CachedReply(Reply(r.status, r.body, tuple(r.headers)), execution.request_id)
            replay.append((r.idempotency_key, seq, cached))
        for request_id in expired_ids:
            record = futures.get(request_id)
            if record is not None and request_id not in created_by_undone:
                record.expired, record.result, record.failure = True, None, None
        # As the live server does on expiry (EndpointState.expire): the work is gone, so a re-send must run again.
        restored.replay = [item for item in replay if item[2].request_id not in expired_ids]
        restored.executions = [
            replace(e, expired=True) if e.request_id in expired_ids and not e.undone else e for e in executions
        ]
        restored.futures = list(futures.values())
        return restored


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line the kill tore (it was never acknowledged), so the next entry starts on a line of its own."""
    if not path.exists():
        return
    with path.open("r+b") as file:
        size = file.seek(0, os.SEEK_END)
        keep = size
        while keep > 0:
            file.seek(max(keep - 4096, 0))
            block = file.read(keep - max(keep - 4096, 0))
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = max(keep - 4096, 0) + newline + 1
                break
            keep = max(keep - 4096, 0)
        if keep != size:
            file.truncate(keep)


def _entries(path: Path) -> Iterator[_Entry]:
    if not path.exists():
        return
    with path.open("rb") as file:
        for line in file:
            if not line.endswith(b"\n"):
                return  # torn by the kill mid-write: never acknowledged
            yield _decoder.decode(line)


def _wall_time(monotonic: float) -> float:
    """This process's monotonic time as wall-clock time, which the next process can read back."""
    return time.time() - (time.monotonic() - monotonic)


def _monotonic_time(wall: float) -> float:
    """A wall-clock time another process journaled, on this process's monotonic clock."""
    return time.monotonic() - (time.time() - wall)


def _future_entry(record: FutureRecord) -> _FutureEntry:
    failure = record.failure
    return _FutureEntry(
        request_id=record.request_id,
        endpoint=record.endpoint,
        model_id=record.model_id,
        ready_wall=_wall_time(record.ready_at),
        result=record.result,
        failure_message=failure.message if failure else None,
        failure_category=failure.category if failure else None,
    )


def _future_record(entry: _FutureEntry) -> FutureRecord:
    failure = None
    if entry.failure_message is not None:
        failure = Failure(entry.failure_message, entry.failure_category)  # type: ignore[arg-type]
    return FutureRecord(
        entry.request_id,
        entry.endpoint,
        entry.model_id,
        _monotonic_time(entry.ready_wall),
        result=entry.result,
        failure=failure,
    )


def _execution_entry(execution: Execution) -> _ExecutionEntry:
    shared = {name: getattr(execution, name) for name in _SHARED_EXECUTION_FIELDS}
    return _ExecutionEntry(**shared, wall_time=_wall_time(execution.time))


def _execution(entry: _ExecutionEntry, undone: bool) -> Execution:
    shared = {name: getattr(entry, name) for name in _SHARED_EXECUTION_FIELDS}
    return Execution(**shared, time=_monotonic_time(entry.wall_time), undone=undone)
