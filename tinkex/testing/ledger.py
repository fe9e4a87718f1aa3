"""What the server received and what it executed, readable by tests while the server runs.

``received`` holds every HTTP request (retries, polls and rejected ones included); ``executions`` holds every
operation that changed server state. A request answered from the replay cache is received but not executed, so
``duplicates_executed()`` staying empty proves that no re-send ran an operation twice. With a state directory the
executions survive a restart (:mod:`tinkex.testing.write_journal`); ``received`` is this process's only.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace

__all__ = ["Execution", "ExecutionIdentity", "Ledger", "ReceivedRequest"]

_SECRET_HEADERS = frozenset(
    {"x-api-key", "authorization", "cf-access-client-secret", "cookie", "x-tinker-weights-access-token"}
)


@dataclass(frozen=True)
class ReceivedRequest:
    endpoint: str
    method: str
    path: str
    http_version: str
    idempotency_key: str | None
    headers: Mapping[str, str]
    """Lower-case names; secret headers (API key, authorization, Cloudflare secret, weights access token) are not
    kept."""
    time: float
    status: int | None = None
    """The status answered, ``None`` while pending or when the connection was dropped."""
    query: str = ""
    """The raw query string (what follows ``?``), as sent."""


@dataclass(frozen=True)
class ExecutionIdentity:
    """Which operation ran, for whom: what an :class:`Execution` and its write-journal entry
    (:mod:`tinkex.testing.write_journal`, whose JSON lines name these fields) hold alike."""

    endpoint: str
    idempotency_key: str | None
    model_id: str | None
    seq_id: int | None
    session_id: str | None
    request_id: str | None
    """The future id for future endpoints."""


@dataclass(frozen=True)
class Execution(ExecutionIdentity):
    time: float
    outcome: str = "ok"
    """``"ok"`` or ``"failed"`` (the future resolved to a RequestFailed body)."""
    expired: bool = False
    """The future expired (410), so re-running the operation later was legitimate."""
    seq_scope: str | None = None
    """What ``seq_id`` counts within, e.g. ``"train:<model_id>"`` or ``"sample:<sampling_session_id>"``."""
    undone: bool = False
    """The server was killed before this execution's effect was saved and its client never got the answer, so a
    restart on the same state directory undid it (see :mod:`tinkex.testing.write_journal`); re-running it was
    legitimate."""


class Ledger:
    """Thread-safe record of one server's traffic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []
        self._executions: list[Execution] = []

    def record_received(
        self, endpoint: str, method: str, path: str, http_version: str, headers: Mapping[str, str], query: str = ""
    ) -> int:
        """Record an incoming request; returns its index for :meth:`record_status`."""
        kept = {name: value for name, value in headers.items() if name not in _SECRET_HEADERS}
        entry = ReceivedRequest(
            endpoint=endpoint,
            method=method,
            path=path,
            http_version=http_version,
            idempotency_key=kept.get("x-idempotency-key"),
            headers=kept,
            time=time.monotonic(),
            query=query,
        )
        with self._lock:
            self._received.append(entry)
            return len(self._received) - 1

    def record_status(self, index: int, status: int) -> None:
        with self._lock:
            self._received[index] = replace(self._received[index], status=status)

    def record_execution(self, execution: Execution) -> None:
        with self._lock:
            self._executions.append(execution)

    def mark_expired(self, request_id: str) -> None:
        with self._lock:
            self._executions = [replace(e, expired=True) if e.request_id == request_id else e for e in self._executions]

    def received(self, endpoint: str | None = None) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self._received if endpoint is None or r.endpoint == endpoint]

    def executions(self, endpoint: str | None = None, model_id: str | None = None) -> list[Execution]:
        with self._lock:
            return [
                e
                for e in self._executions
                if (endpoint is None or e.endpoint == endpoint) and (model_id is None or e.model_id == model_id)
            ]

    def duplicates_executed(self) -> list[list[Execution]]:
        """Groups of live executions sharing an idempotency key or a ``(scope, seq_id)``; must stay empty."""
        with self._lock:
            live = [e for e in self._executions if not e.expired and not e.undone]
        by_identity: dict[tuple[str, ...], list[Execution]] = defaultdict(list)
        for execution in live:
            if execution.idempotency_key is not None:
                by_identity[("key", execution.idempotency_key)].append(execution)
            if execution.seq_scope is not None and execution.seq_id is not None:
                by_identity[("seq", execution.seq_scope, str(execution.seq_id))].append(execution)
        return [group for group in by_identity.values() if len(group) > 1]

    def restore_executions(self, executions: list[Execution]) -> None:
        """Replace the executions by those read back from the state directory (they include this process's own)."""
        with self._lock:
            self._executions = list(executions)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self._executions.clear()
