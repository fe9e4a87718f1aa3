"""Strict sequence mode of the local server (``ServerConfig.strict_sequence``): the training requests of a model must
arrive with consecutive ``seq_id`` s, as some third-party Tinker-compatible servers demand.

The hosted service orders a model's requests by ``seq_id``; a server that insists they be consecutive answers any
other with 409 (``expected seq_id N, got M``) and runs nothing. A client that leaves a gap (a request refused before
it ran whose ``seq_id`` is never reused) then sees every later request of the model refused: the cascade this mode
reproduces. A re-send of a request that ran (same seq_id) is answered from the replay cache before this check.

:func:`sequence_problem` is the rule, a pure function; :func:`in_strict_sequence` wraps the training operations'
handlers with it, reading what already ran from the ledger (which survives a restart on a state directory).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .calls import Call, Result, reject

if TYPE_CHECKING:
    from .handlers import Handler, Operation
    from .ledger import Ledger

__all__ = ["STRICT_SCOPE_PREFIX", "in_strict_sequence", "sequence_problem"]

STRICT_SCOPE_PREFIX = "train:"
"""The seq scopes kept strict: a training model's requests (``train:<model_id>``)."""

FIRST_SEQ_ID = 1
"""A model's first request carries seq_id 1 (the official client's ``request_id + 1``)."""


def sequence_problem(scope: str, last_ran: int | None, got: int) -> str | None:
    """Why ``got`` may not run next in ``scope`` after ``last_ran`` (None: nothing ran yet), or None if it may."""
    expected = FIRST_SEQ_ID if last_ran is None else last_ran + 1
    if got == expected:
        return None
    model = scope.removeprefix(STRICT_SCOPE_PREFIX)
    return f"seq_id out of order for model {model}: expected seq_id {expected}, got {got}"


def in_strict_sequence(operations: Sequence[Operation], ledger: Ledger) -> list[Operation]:
    """``operations`` with every training write checked by :func:`sequence_problem` before it runs (409)."""
    return [
        dataclasses.replace(op, handler=_strict(op, ledger)) if op.mutates and op.seq_identity is not None else op
        for op in operations
    ]


def _strict(operation: Operation, ledger: Ledger) -> Handler:
    handler, identity = operation.handler, operation.seq_identity
    assert identity is not None

    def checked(call: Call) -> Result:
        seq = identity(call.body)
        if seq is not None and seq[0].startswith(STRICT_SCOPE_PREFIX):
            problem = sequence_problem(seq[0], _last_ran(ledger, seq[0]), seq[1])
            if problem is not None:
                raise reject(409, problem)
        return handler(call)  # type: ignore[return-value]  # write handlers are synchronous

    return checked


def _last_ran(ledger: Ledger, scope: str) -> int | None:
    ran = [e.seq_id for e in ledger.executions() if e.seq_scope == scope and e.seq_id is not None and not e.undone]
    return max(ran, default=None)
