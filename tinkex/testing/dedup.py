"""Replay cache: a re-sent write gets the answer of its first execution instead of running again.

Writes are identified by their ``X-Idempotency-Key`` and, independently, by ``(seq_scope, seq_id)``: the official
SDK re-sends a training op with a new key but the same seq_id. Entries whose future expired are forgotten,
because then the client has been told the work is gone and must be redone.
"""

from __future__ import annotations

from dataclasses import dataclass

from .replies import Reply

__all__ = ["CachedReply", "ReplayCache"]

SeqIdentity = tuple[str, int]


@dataclass(frozen=True)
class CachedReply:
    reply: Reply
    request_id: str | None


class ReplayCache:
    def __init__(self) -> None:
        self._by_key: dict[str, CachedReply] = {}
        self._by_seq: dict[SeqIdentity, CachedReply] = {}

    def lookup(self, idempotency_key: str | None, seq: SeqIdentity | None) -> CachedReply | None:
        if idempotency_key is not None and idempotency_key in self._by_key:
            return self._by_key[idempotency_key]
        if seq is not None:
            return self._by_seq.get(seq)
        return None

    def store(self, idempotency_key: str | None, seq: SeqIdentity | None, cached: CachedReply) -> None:
        if idempotency_key is not None:
            self._by_key[idempotency_key] = cached
        if seq is not None:
            self._by_seq[seq] = cached

    def forget_request(self, request_id: str) -> None:
        self._by_key = {k: v for k, v in self._by_key.items() if v.request_id != request_id}
        self._by_seq = {k: v for k, v in self._by_seq.items() if v.request_id != request_id}
