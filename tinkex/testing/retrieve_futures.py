"""``POST /api/v1/retrieve_futures`` of the local server: one sampling session's completions, batched (docs/wire.md
§1.7, §2).

A client whose ``client/config`` says ``sample_use_retrieve_futures`` polls here once for all its samples instead of
polling ``retrieve_future`` once per sample. The poll names a target, a sampling session and a clone of it
(``cloned_sampler_id``: ``seq_id // 1_000_000_000`` of the clone's samples, 0 for the original client), and the
previous answer's ``cursor``; the answer lists the target's samples that finished or failed since then, each once
per cursor, and a new cursor. The poll is held open until one completes or the long-poll bound passes
(``timeout: 0`` answers at once: a client acknowledging its cursor). ``retrieved_request_ids`` say which results the
client has fetched; they are kept in :attr:`RetrieveFutures.retrieved` for tests (this server keeps payloads until
their futures expire anyway).

A sample belongs to the target its ``asample`` was executed for, read from the ledger's executions (scope
``sample:<sampling_session_id>``, its ``seq_id``), so replays and re-sends of one sample are one completion. The
payload itself is still fetched with ``retrieve_future``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from tinkex import types as t

from .calls import Call, Result
from .config import ServerConfig
from .futures_store import FutureRecord, FutureStore
from .ledger import Ledger
from .replies import json_reply

__all__ = ["CLONE_BLOCK", "RetrieveFutures"]

CLONE_BLOCK = 1_000_000_000
"""A clone's seq_ids lie in one block of this size: ``seq_id // CLONE_BLOCK`` is its ``cloned_sampler_id``."""
_RESCAN_S = 0.005
"""How often a held poll looks for newly finished samples (the store does not announce them)."""

Target = tuple[str, int]
"""(sampling_session_id, cloned_sampler_id)"""


@dataclass
class _TargetLog:
    """What one target has been told: the completions at each cursor not yet acknowledged, and the samples still
    running."""

    last_cursor: int = 0
    reported: set[str] = field(default_factory=set)
    events: list[tuple[int, t.FutureCompletion]] = field(default_factory=list)
    running: list[str] = field(default_factory=list)

    def acknowledge(self, prev_cursor: int) -> None:
        """Completions at or before ``prev_cursor`` were seen by the client: forget them."""
        self.events = [(cursor, completion) for cursor, completion in self.events if cursor > prev_cursor]

    def after(self, prev_cursor: int) -> list[t.FutureCompletion]:
        return [completion for cursor, completion in self.events if cursor > prev_cursor]

    def record(self, completion: t.FutureCompletion) -> None:
        self.last_cursor += 1
        self.events.append((self.last_cursor, completion))
        self.reported.add(completion.request_id)


def completion_of(record: FutureRecord) -> t.FutureCompletion:
    """A finished future's completion: failed when it resolved to an error, else finished with its payload size (an
    expired one too: its ``retrieve_future`` then answers 410, and the client submits it again)."""
    if record.failure is not None:
        return t.FutureFailed(request_id=record.request_id)
    size = len(record.result) if record.result is not None else None
    return t.FutureFinished(request_id=record.request_id, response_payload_uncompressed_size=size)


class RetrieveFutures:
    """The endpoint's state: one :class:`_TargetLog` per target, filled from the ledger's ``asample`` executions."""

    def __init__(self, futures: FutureStore, ledger: Ledger, config: ServerConfig) -> None:
        self.futures = futures
        self.ledger = ledger
        self.config = config
        self._logs: dict[Target, _TargetLog] = {}
        self._scanned = 0
        """``asample`` executions already sorted into their targets' logs."""
        self.retrieved: set[str] = set()
        """Request ids clients said they fetched (``retrieved_request_ids``)."""

    async def retrieve_futures(self, call: Call) -> Result:
        request: t.FuturesRetrieveRequest = call.body
        target = (request.target.sampling_session_id, request.target.cloned_sampler_id)
        log = self._logs.setdefault(target, _TargetLog())
        log.acknowledge(request.prev_cursor)
        self.retrieved.update(request.retrieved_request_ids)
        held_s = self.config.long_poll_timeout
        if request.timeout is not None:
            held_s = min(max(request.timeout, 0.0), held_s)
        deadline = time.monotonic() + held_s
        while True:
            self._sort_new_samples()
            self._collect(log)
            fresh = log.after(request.prev_cursor)
            remaining = deadline - time.monotonic()
            if fresh or remaining <= 0:
                break
            await asyncio.sleep(min(_RESCAN_S, remaining))
        cursor = log.last_cursor if fresh else request.prev_cursor
        return Result(json_reply(t.FuturesRetrieveResponse(completions=fresh, cursor=cursor)))

    def _sort_new_samples(self) -> None:
        """Give each ``asample`` executed since the last look to its target's log as running."""
        executions = self.ledger.executions("asample")
        if len(executions) < self._scanned:  # the ledger was cleared or restored: sort everything again
            self._scanned = 0
        for execution in executions[self._scanned :]:
            scope, seq_id, request_id = execution.seq_scope, execution.seq_id, execution.request_id
            if scope is None or seq_id is None or request_id is None or not scope.startswith("sample:"):
                continue
            target = (scope.removeprefix("sample:"), seq_id // CLONE_BLOCK)
            self._logs.setdefault(target, _TargetLog()).running.append(request_id)
        self._scanned = len(executions)

    def _collect(self, log: _TargetLog) -> None:
        """Move the log's samples that finished (or failed, or are gone) from running to its completions."""
        still_running: list[str] = []
        for request_id in log.running:
            if request_id in log.reported:
                continue
            record = self.futures.get(request_id)
            if record is None:
                continue
            if record.expired or self.futures.is_ready(record):
                log.record(completion_of(record))
            else:
                still_running.append(request_id)
        log.running = still_running
