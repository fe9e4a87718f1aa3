"""LocalServer's 0.38 decisions as pure functions, by tables: session search, identity, custom-loss graphs, and
the safetensors files of an export."""

from __future__ import annotations

import json
import math
import struct
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from tinkex import types as t
from tinkex.testing import custom_loss_graph, session_search
from tinkex.testing.checkpoint_files import safetensors_bytes
from tinkex.testing.identity import principal_for
from tinkex.testing.registry import SessionRecord
from tinkex.testing.tiny_lm import ModelInputError

ME, THEM = "tml:user:me", "tml:user:them"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _session(session_id: str = "sess-1", **fields: Any) -> SessionRecord:
    defaults: dict[str, Any] = {"tags": [], "user_metadata": {"team": "rl"}, "owner": ME, "project_id": "proj-a",
                                "display_name": "Nightly RL run", "created_at": T0}
    defaults.update(fields)
    tags, metadata = defaults.pop("tags"), defaults.pop("user_metadata")
    return SessionRecord(session_id, tags, metadata, **defaults)


@pytest.mark.parametrize(
    ("request_fields", "session_fields", "expected"),
    [
        ({}, {}, True),
        ({}, {"owner": THEM}, False),  # own sessions by default
        ({"owner": t.AccessibleSearchOwner()}, {"owner": THEM}, True),
        ({"owner": t.UserSearchOwner(owner_urns=[THEM])}, {"owner": THEM}, True),
        ({"owner": t.UserSearchOwner(owner_urns=[THEM])}, {}, False),
        ({"display_name": "rl NIGHTLY"}, {}, True),  # every word, any case, any order
        ({"display_name": "nightly sft"}, {}, False),
        ({"display_name": "x"}, {"display_name": None}, False),
        ({"session_id": "sess-1"}, {"display_name": None}, True),
        ({"session_id": "sess-2", "display_name": "nightly"}, {}, True),  # either one
        ({"session_id": "sess-2", "display_name": "sweep"}, {}, False),
        ({"project_ids": ["proj-a", "proj-b"]}, {}, True),
        ({"project_ids": ["proj-b"]}, {}, False),
        ({"user_metadata": {"team": "rl"}}, {}, True),
        ({"user_metadata": {"team": "sft"}}, {}, False),
        ({"user_metadata": {"owner": "x"}}, {}, False),
        ({"statuses": [t.ActiveSessionStatusQuery()]}, {}, True),
        ({"statuses": [t.ActiveSessionStatusQuery()]}, {"finish_reason": "success"}, False),
        ({"statuses": [t.ClientFinishedSessionStatusQuery()]}, {"finish_reason": "errored"}, True),
        ({"statuses": [t.ClientFinishedSessionStatusQuery(reasons=["success"])]}, {"finish_reason": "errored"}, False),
        ({"statuses": [t.CancelledSessionStatusQuery(), t.FailedSessionStatusQuery()]}, {}, False),
    ],
)
def test_search_matches(request_fields: dict[str, Any], session_fields: dict[str, Any], expected: bool) -> None:
    request = t.SessionSearchRequest(**request_fields)
    assert session_search.matches(_session(**session_fields), request, ME) is expected


def test_search_pages_newest_first_and_the_cursor_resumes_after_the_last() -> None:
    sessions = [_session(f"sess-{i}", created_at=T0 + timedelta(minutes=i)) for i in range(5)]
    sessions.append(_session("sess-9", created_at=T0 + timedelta(minutes=4)))  # same time: id breaks the tie
    first, cursor = session_search.page(sessions, 3, None)
    assert [s.session_id for s in first] == ["sess-9", "sess-4", "sess-3"]
    assert cursor is not None and cursor.last_session_id == "sess-3"
    rest, end = session_search.page(sessions, 3, cursor)
    assert [s.session_id for s in rest] == ["sess-2", "sess-1", "sess-0"] and end is None
    assert session_search.page([], 3, None) == ([], None)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, t.SessionActive()),
        ({"finish_reason": "interrupted", "finish_detail": "ctrl-c"},
         t.ClientSessionFinished(reason=t.ClientSessionFinishInterrupted(), detail="ctrl-c")),
    ],
)
def test_search_reports_the_status(fields: dict[str, Any], expected: Any) -> None:
    assert session_search.status_of(_session(**fields)) == expected


def test_a_key_acts_as_a_stable_principal_that_never_contains_the_key() -> None:
    key = "tml-0123456789abcdef-secret"
    principal = principal_for(key)
    assert principal == principal_for(key) and principal != principal_for(key + "x")
    rendered = json.dumps(principal.whoami_body())
    secret = key.removeprefix("tml-")
    assert not any(secret[i : i + 6] in rendered for i in range(len(secret) - 5))
    assert principal.whoami_body()["user_urn"] == principal.user_urn


def _node(op: str, name: str, target: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"op": op, "name": name, "target": target, "args": list(args), "kwargs": kwargs}


LOGPROBS = _node("placeholder", "logprobs", "logprobs")
WEIGHTS = _node("placeholder", "weights", "weights")


@pytest.mark.parametrize(
    ("nodes", "problem"),
    [
        ([LOGPROBS], "must end with an output node"),
        ([LOGPROBS, _node("call_function", "e", "builtins.eval", {"ref": "logprobs"}), _node("output", "o", "output")],
         "'builtins.eval' is not in the allowed operations"),
        ([LOGPROBS, _node("call_method", "m", "__class__"), _node("output", "o", "output")], "method '__class__'"),
        ([LOGPROBS, _node("get_attr", "g", "weight"), _node("output", "o", "output")], "op 'get_attr'"),
        ([_node("placeholder", "p", "advantages"), _node("output", "o", "output")], "'advantages' is not a declared input"),
    ],
)
def test_graphs_the_server_cannot_run_are_refused_naming_the_node(nodes: list[dict[str, Any]], problem: str) -> None:
    with pytest.raises(ModelInputError, match=problem.replace("(", r"\(")):
        custom_loss_graph.check_graph(nodes, ["logprobs", "weights"])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([_node("call_method", "s", "sum", {"ref": "logprobs"})], -3.0),
        ([_node("call_function", "m", "operator.mul", {"ref": "logprobs"}, {"ref": "weights"}),
          _node("call_function", "s", "torch.sum", {"ref": "m"})], -2.5),
        ([_node("call_function", "c", "torch.clamp", {"ref": "logprobs"}, min=-1.5),
          _node("call_method", "s", "mean", {"ref": "c"})], -1.25),
        ([_node("call_function", "e", "torch.exp", {"ref": "logprobs"}),
          _node("call_function", "p", "operator.pow", {"ref": "e"}, 2),
          _node("call_function", "s", "torch.sum", {"ref": "p"})], math.exp(-2) + math.exp(-4)),
        ([_node("call_function", "x", "torch.maximum", {"ref": "logprobs"}, {"float": "-inf"}),
          _node("call_method", "s", "sum", {"ref": "x"})], -3.0),
    ],
)
def test_graphs_evaluate_as_torch_would(body: list[dict[str, Any]], expected: float) -> None:
    nodes = [LOGPROBS, WEIGHTS, *body, _node("output", "out", "output", {"ref": body[-1]["name"]})]
    custom_loss_graph.check_graph(nodes, ["logprobs", "weights"])
    inputs = {"logprobs": np.array([-1.0, -2.0]), "weights": np.array([0.5, 1.0])}
    assert custom_loss_graph.evaluate(nodes, inputs) == pytest.approx(expected)


def test_a_failing_node_is_a_user_error_naming_it() -> None:
    nodes = [LOGPROBS, _node("call_function", "d", "operator.truediv", {"ref": "logprobs"}, "x"),
             _node("output", "o", "output", {"ref": "d"})]
    with pytest.raises(ModelInputError, match="node 'd'"):
        custom_loss_graph.evaluate(nodes, {"logprobs": np.array([-1.0])})


def test_the_logprob_gradient_of_an_uploaded_loss_is_its_derivative_per_token() -> None:
    """For L = -sum(w * lp), dL/dlp_i = -w_i: what flows back into the adapter for a cross-entropy-shaped graph."""
    logprobs, weights = np.array([-0.7, -1.3, -0.1]), np.array([1.0, 0.5, 0.0])

    def loss_at(values: np.ndarray) -> float:
        return float(-(values * weights).sum())

    assert custom_loss_graph.logprob_gradient(loss_at, logprobs) == pytest.approx(-weights, abs=1e-6)


def test_safetensors_bytes_follow_the_format() -> None:
    tensors = {"b.lora_B.weight": np.array([[0.25, -1.0]]), "a.lora_A.weight": np.arange(6.0).reshape(2, 3)}
    data = safetensors_bytes(tensors, {"format": "pt"})
    length = struct.unpack("<Q", data[:8])[0]
    assert length % 8 == 0
    header = json.loads(data[8 : 8 + length])
    assert header["__metadata__"] == {"format": "pt"}
    payload = data[8 + length :]
    values = {}
    for name, array in tensors.items():
        start, end = header[name]["data_offsets"]
        assert header[name]["dtype"] == "F32" and header[name]["shape"] == list(array.shape)
        values[name] = np.frombuffer(payload[start:end], dtype="<f4").reshape(array.shape)
        assert values[name] == pytest.approx(array)
    assert len(payload) == 4 * (2 + 6)
