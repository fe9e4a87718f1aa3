"""Fault injection by rule, seeded and reproducible.

A rule names an endpoint (or ``None`` for every endpoint) and what goes wrong there:

- ``kind="respond"``: answer ``status`` with ``headers`` and ``body`` instead of the real reply, or cut the
  connection (``drop_connection``), optionally after ``delay`` seconds. With ``after_execute=True`` the operation
  runs first and only its answer is lost, so a re-send with the same idempotency key or seq_id must be served
  from the server's replay cache. A rule with only ``delay`` slows the request down and changes nothing else.
- ``kind="try_again"``: a ``retrieve_future`` poll answers 200 ``try_again`` with ``queue_state``.
- ``kind="metadata_only"``: a ready result is announced with ``complete_metadata`` whatever its size (only when
  the poll allows metadata-only replies).
- ``kind="expire"``: the polled future expires for good and the poll answers 410.
- ``kind="request_failed"``: the operation's future resolves to ``{"error": message, "category": category}``.

How often a rule fires: ``skip`` matching requests pass first, then it fires ``count`` times; with ``rate`` it
fires on each matching request with that probability (drawn from the server's seeded generator), at most
``count`` times when both are given. Neither means once.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .futures_store import Category

__all__ = ["FaultKind", "FaultPhase", "FaultRule", "Faults", "fault_rules_from_json"]

FaultKind = Literal["respond", "try_again", "metadata_only", "expire", "request_failed"]
FaultPhase = Literal["before", "after"]

_POLL_ONLY_KINDS = frozenset({"try_again", "metadata_only", "expire"})


@dataclass(frozen=True)
class FaultRule:
    """One fault; see the module docstring. Convenience constructors cover the fault runs of docs/wire.md §12.3."""

    endpoint: str | None = None
    status: int | None = None
    body: Any = None
    """JSON-able value, raw ``bytes`` (``b""`` for an empty body), or ``None`` for a default JSON error body."""
    headers: Mapping[str, str] = field(default_factory=dict)
    count: int | None = None
    rate: float | None = None
    skip: int = 0
    delay: float = 0.0
    drop_connection: bool = False
    after_execute: bool = False
    kind: FaultKind = "respond"
    queue_state: str = "active"
    queue_state_reason: str | None = None
    category: Category = "server"
    message: str = "injected failure"
    future_endpoint: str | None = None
    """For ``retrieve_future`` rules: only polls of futures created by this endpoint match."""

    def __post_init__(self) -> None:
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"FaultRule.rate must be within [0, 1], got {self.rate}")
        if self.count is not None and self.count < 0:
            raise ValueError(f"FaultRule.count must be >= 0, got {self.count}")
        if self.kind == "respond" and self.status is None and not self.drop_connection and self.delay <= 0:
            raise ValueError("FaultRule(kind='respond') needs status, drop_connection or delay")
        if self.kind in _POLL_ONLY_KINDS and self.endpoint not in (None, "retrieve_future"):
            raise ValueError(f"FaultRule(kind={self.kind!r}) applies to retrieve_future, not {self.endpoint!r}")

    @property
    def max_fires(self) -> int | None:
        if self.count is None and self.rate is None:
            return 1
        return self.count

    # Constructors for the fault runs of docs/wire.md §12.3.

    @classmethod
    def queue_paused(
        cls,
        state: str = "paused_capacity",
        reason: str | None = None,
        count: int = 1,
        future_endpoint: str | None = None,
    ) -> FaultRule:
        """``retrieve_future`` answers 408 ``{"queue_state", "queue_state_reason"}`` ``count`` times."""
        return cls(
            endpoint="retrieve_future",
            status=408,
            body={"queue_state": state, "queue_state_reason": reason},
            count=count,
            future_endpoint=future_endpoint,
        )

    @classmethod
    def try_again(
        cls, count: int = 1, queue_state: str = "active", reason: str | None = None, future_endpoint: str | None = None
    ) -> FaultRule:
        return cls(
            endpoint="retrieve_future",
            kind="try_again",
            count=count,
            queue_state=queue_state,
            queue_state_reason=reason,
            future_endpoint=future_endpoint,
        )

    @classmethod
    def metadata_only(cls, count: int = 1, future_endpoint: str | None = None) -> FaultRule:
        return cls(endpoint="retrieve_future", kind="metadata_only", count=count, future_endpoint=future_endpoint)

    @classmethod
    def expired(cls, count: int = 1, future_endpoint: str | None = None) -> FaultRule:
        """410 on a poll; the future is gone for good, so the work has to be submitted again."""
        return cls(endpoint="retrieve_future", kind="expire", count=count, future_endpoint=future_endpoint)

    @classmethod
    def request_failed(
        cls,
        endpoint: str,
        category: Category = "server",
        message: str = "injected failure",
        count: int = 1,
    ) -> FaultRule:
        return cls(endpoint=endpoint, kind="request_failed", category=category, message=message, count=count)

    @classmethod
    def retry_after(cls, endpoint: str, status: int = 429, retry_after_ms: int = 100, count: int = 1) -> FaultRule:
        """Stainless-style retryable status carrying ``retry-after-ms``."""
        return cls(endpoint=endpoint, status=status, headers={"retry-after-ms": str(retry_after_ms)}, count=count)

    @classmethod
    def empty_400(cls, endpoint: str, count: int = 1) -> FaultRule:
        """A bare 400 with ``content-length: 0`` (the "rejected by Cloudflare" case of §3.3)."""
        return cls(endpoint=endpoint, status=400, body=b"", count=count)


def fault_rules_from_json(data: Any) -> list[FaultRule]:
    """Rules from a JSON list of objects whose keys are :class:`FaultRule` fields (``python -m tinkex.testing
    --faults FILE``); ``"raw_body": "<text>"`` stands for a raw bytes ``body`` (``""``: an empty body).
    ValueError names the rule and the field that is wrong."""
    if not isinstance(data, list):
        raise ValueError(f"faults must be a JSON list of rule objects, got {type(data).__name__}")
    known = set(FaultRule.__dataclass_fields__)
    rules: list[FaultRule] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"faults[{index}] must be an object, got {type(item).__name__}")
        fields = dict(item)
        if "raw_body" in fields:
            fields["body"] = str(fields.pop("raw_body")).encode("latin-1")
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"faults[{index}]: unknown field(s) {', '.join(unknown)}")
        try:
            rules.append(FaultRule(**fields))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"faults[{index}]: {exc}") from None
    return rules


@dataclass
class _RuleState:
    rule: FaultRule
    seen: int = 0
    fired: int = 0


class Faults:
    """The live rule set of one server. Thread-safe: tests add rules while the server thread consults them."""

    def __init__(self, rules: Iterable[FaultRule] = (), seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._states: list[_RuleState] = [_RuleState(rule) for rule in rules]

    def add(self, *rules: FaultRule) -> None:
        with self._lock:
            self._states.extend(_RuleState(rule) for rule in rules)

    def remove(self, rule: FaultRule) -> None:
        with self._lock:
            self._states = [state for state in self._states if state.rule is not rule]

    def clear(self) -> None:
        with self._lock:
            self._states.clear()

    def fired(self, rule: FaultRule) -> int:
        """How many times ``rule`` has fired so far."""
        with self._lock:
            return sum(state.fired for state in self._states if state.rule is rule)

    def pending(self) -> list[FaultRule]:
        """Rules that can still fire."""
        with self._lock:
            return [s.rule for s in self._states if s.rule.max_fires is None or s.fired < s.rule.max_fires]

    def take(
        self,
        endpoint: str,
        kinds: frozenset[FaultKind],
        phase: FaultPhase = "before",
        future_endpoint: str | None = None,
    ) -> FaultRule | None:
        """The first rule that matches and decides to fire now; firing is counted. Rules are tried in order."""
        with self._lock:
            for state in self._states:
                rule = state.rule
                if rule.kind not in kinds or (rule.endpoint is not None and rule.endpoint != endpoint):
                    continue
                if rule.kind == "respond" and rule.after_execute != (phase == "after"):
                    continue
                if rule.future_endpoint is not None and rule.future_endpoint != future_endpoint:
                    continue
                limit = rule.max_fires
                if limit is not None and state.fired >= limit:
                    continue
                state.seen += 1
                if state.seen <= rule.skip:
                    continue
                if rule.rate is not None and self._random.random() >= rule.rate:
                    continue
                state.fired += 1
                return rule
        return None
