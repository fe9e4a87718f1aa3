"""Tinker's queue states belong to tinkex: the manifest lists their wire values, pristine_transport reports plain
strings, tinkex.queue_state.QueueState gives them meaning and the user's callback gets the enum."""

from pathlib import Path

import pytest

import pristine_transport
from tinkex.config import load_tinker_manifest
from tinkex.queue_state import QueueState, QueueStateLogger


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ("active", QueueState.ACTIVE),
        ("paused_rate_limit", QueueState.PAUSED_RATE_LIMIT),
        ("PAUSED_CAPACITY", QueueState.PAUSED_CAPACITY),
        ("unknown", QueueState.UNKNOWN),
        ("hibernating", QueueState.UNKNOWN),
        ("", QueueState.UNKNOWN),
    ],
)
def test_a_reported_state_is_read_into_the_enum(reported: str, expected: QueueState) -> None:
    assert QueueState.of(reported) is expected


def test_the_manifest_lists_exactly_the_states_tinkex_knows() -> None:
    futures = load_tinker_manifest().futures
    assert futures is not None
    assert set(futures.queue_states) == {state.value for state in QueueState} - {QueueState.UNKNOWN.value}


def test_the_callback_gets_the_enum_from_the_layers_string() -> None:
    seen: list[tuple[QueueState, str | None]] = []
    observer = QueueStateLogger("paused: {reason}", {}, lambda state, reason: seen.append((state, reason)))
    observer.on_queue_state_change("paused_capacity", "busy")
    observer.on_queue_state_change("active", None)
    assert seen == [(QueueState.PAUSED_CAPACITY, "busy"), (QueueState.ACTIVE, None)]
    assert all(type(state) is QueueState for state, _ in seen)


def test_pristine_transport_names_no_tinker_queue_state() -> None:
    package = Path(pristine_transport.__file__).parent
    spelled = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if any(word in path.read_text() for word in ("paused_rate_limit", "paused_capacity", "PAUSED_"))
    ]
    assert spelled == []
