"""The retry policy kind that re-sends until its requests stop making progress is named for what it does
(``progress``); ``sampling``, its first name, still reads as the same kind."""

from typing import Any

import msgspec
import pytest

from pristine_transport.layers.retry import ProgressTracker, RetryLayer
from pristine_transport.manifest import RetryPolicySpec, load_manifest
from pristine_transport.policy import DEFAULT_DEADLINES, Attempt, RetryState, decide_retry
from pristine_transport.stack import build_transport
from tinkex.config import load_tinker_manifest


def _policy(kind: str) -> RetryPolicySpec:
    return msgspec.convert({"kind": kind, "max_retries": None, "progress_timeout_s": 60.0}, RetryPolicySpec)


@pytest.mark.parametrize(
    ("state", "attempt", "random"),
    [
        (RetryState(remaining_s=300), Attempt(status=503), 0.0),
        (RetryState(retries=3, round_retries=3, remaining_s=300), Attempt(status=429), 1.0),
        (RetryState(retries=9, round_retries=9, remaining_s=300), Attempt(failure="ConnectError"), 0.5),
        (RetryState(remaining_s=300), Attempt(status=400), 0.5),
    ],
)
def test_progress_and_sampling_decide_alike(state: RetryState, attempt: Attempt, random: float) -> None:
    decisions = {
        kind: decide_retry(_policy(kind), DEFAULT_DEADLINES, state, attempt, random)
        for kind in ("progress", "sampling")
    }
    assert decisions["progress"] == decisions["sampling"]


def _retry_layer(router: Any, endpoint: str) -> RetryLayer:
    node: Any = router.stacks[endpoint]
    while not isinstance(node, RetryLayer):
        node = node._inner
    return node


@pytest.mark.parametrize(("kind", "shared"), [("progress", True), ("sampling", True), ("standard", False)])
def test_the_endpoints_of_a_progress_policy_share_one_tracker(kind: str, shared: bool) -> None:
    raw = {
        "name": "kinds",
        "base_url": {"default": "https://kinds.example.invalid"},
        "retry_policies": {"p": {"kind": kind, "max_retries": None, "progress_timeout_s": 5.0}},
        "endpoints": {
            "e": {"method": "POST", "path": "/e", "retry": "p"},
            "f": {"method": "POST", "path": "/f", "retry": "p"},
        },
    }
    router = build_transport(load_manifest(raw), env={})
    first, second = _retry_layer(router, "e")._progress, _retry_layer(router, "f")._progress
    assert isinstance(first, ProgressTracker) and isinstance(second, ProgressTracker)
    assert (first is second) is shared


def test_tinker_names_its_policy_sampling_and_its_kind_progress() -> None:
    policy = load_tinker_manifest().retry_policies["sampling"]
    assert policy.kind == "progress"
