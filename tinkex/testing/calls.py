"""What every endpoint handler takes and gives: the :class:`Call`, its :class:`Result`, and the ways to refuse
one before anything executes (:class:`Rejection`: 404 for unknown names, 410 for a finished session)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .registry import NotFound, Registry, SessionRecord
from .replies import Reply, error_reply

__all__ = ["Call", "Rejection", "Result", "answers_404", "open_session", "refuse_if_finished", "reject", "session_or_404"]


@dataclass
class Call:
    """One request as a handler sees it. ``body`` is the decoded request Struct (``None`` without one)."""

    endpoint: str
    params: Mapping[str, str]
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    base_url: str
    body: Any = None


@dataclass(frozen=True)
class Result:
    reply: Reply
    request_id: str | None = None
    model_id: str | None = None
    session_id: str | None = None
    failed: bool = False


class Rejection(Exception):
    """Raised by a handler to answer an error before anything executed."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def reject(status: int, detail: str) -> Rejection:
    return Rejection(error_reply(status, detail))


@contextmanager
def answers_404(prefix: str = "") -> Iterator[None]:
    """A lookup that names nothing the server knows answers 404 before anything executes."""
    try:
        yield
    except NotFound as exc:
        raise reject(404, f"{prefix}{exc}") from None


def refuse_if_finished(session: SessionRecord) -> None:
    """A session its client finished takes no new work: 410, as its heartbeat gets (the official SDK stops there)."""
    if session.finished:
        raise reject(
            410, f"session {session.session_id} was finished by its client ({session.finish_reason}); "
            "create a new session for new work"
        )


def session_or_404(registry: Registry, session_id: str) -> SessionRecord:
    with answers_404():
        return registry.session(session_id)


def open_session(registry: Registry, session_id: str) -> SessionRecord:
    """The session, if it still takes new work: 404 when unknown, 410 once its client finished it."""
    session = session_or_404(registry, session_id)
    refuse_if_finished(session)
    return session
