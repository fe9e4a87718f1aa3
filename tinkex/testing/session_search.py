"""``POST /api/v1/sessions/search`` as pure decisions: does a session match a search, and which page is next.

The filters are the ones official 0.38 documents (``SessionSearchRequest``): an exact ``session_id`` or a
``display_name`` whose every word appears in the name (case-insensitive; either one matches when both are given),
projects, exact ``user_metadata`` pairs, the owner (the caller's own sessions, every accessible one, or listed
owner URNs) and the status. Results are newest first and paged by ``(created_at, session_id)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tinkex import types as t

from .registry import SessionRecord

__all__ = ["matches", "page", "status_of"]


def status_of(session: SessionRecord) -> t.SessionStatus:
    if session.finish_reason is None:
        return t.SessionActive()
    reason = t.FinishSessionRequest.for_status(session.finish_reason).reason
    return t.ClientSessionFinished(reason=reason, detail=session.finish_detail)


def _names_match(wanted: str, name: str | None) -> bool:
    if name is None:
        return False
    lowered = name.lower()
    return all(word in lowered for word in wanted.lower().split())


def _status_matches(session: SessionRecord, queries: Sequence[t.SessionStatusQuery]) -> bool:
    for query in queries:
        if isinstance(query, t.ActiveSessionStatusQuery) and session.finish_reason is None:
            return True
        if isinstance(query, t.ClientFinishedSessionStatusQuery) and session.finish_reason is not None:
            if query.reasons is None or session.finish_reason in query.reasons:
                return True
        # cancelled / failed: the local server never cancels or fails a session.
    return False


def matches(session: SessionRecord, request: t.SessionSearchRequest, caller_urn: str) -> bool:
    """Whether ``session`` is in the results of ``request`` made by ``caller_urn``."""
    if request.session_id is not None or request.display_name is not None:
        by_id = request.session_id is not None and session.session_id == request.session_id
        by_name = request.display_name is not None and _names_match(request.display_name, session.display_name)
        if not (by_id or by_name):
            return False
    if request.project_ids is not None and session.project_id not in request.project_ids:
        return False
    metadata = session.user_metadata or {}
    if any(str(metadata.get(key)) != value or key not in metadata for key, value in request.user_metadata.items()):
        return False
    owner = request.owner
    if isinstance(owner, t.OwnSearchOwner) and session.owner != caller_urn:
        return False
    if isinstance(owner, t.UserSearchOwner) and session.owner not in owner.owner_urns:
        return False
    return request.statuses is None or _status_matches(session, request.statuses)


def _order_key(session: SessionRecord) -> tuple[datetime, str]:
    return (session.created_at, session.session_id)


def page(
    found: Sequence[SessionRecord], limit: int, cursor: t.SessionSearchCursor | None
) -> tuple[list[SessionRecord], t.SessionSearchCursor | None]:
    """Newest first, after ``cursor``; the cursor of the next page, or None when nothing is left."""
    ordered = sorted(found, key=_order_key, reverse=True)
    if cursor is not None:
        boundary = (cursor.last_created_at, cursor.last_session_id)
        ordered = [s for s in ordered if _order_key(s) < boundary]
    chosen = ordered[:limit]
    if len(ordered) <= limit or not chosen:
        return chosen, None
    last = chosen[-1]
    return chosen, t.SessionSearchCursor(last_created_at=last.created_at, last_session_id=last.session_id)
