"""Manifest validation reports every problem at once: structural ones (unknown keys, wrong types) and the semantic
checks over what is left, each under its manifest field path, in one ManifestError."""

import pickle
from typing import Any

import pytest

from pristine_transport.manifest import ManifestError, ManifestProblem, load_manifest


def minimal(**sections: Any) -> dict[str, Any]:
    return {"name": "demo", "base_url": {"default": "https://api.example.test"}, **sections}


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifest(raw)
    return caught.value.problems


def test_an_unknown_key_and_two_semantic_errors_are_reported_together() -> None:
    raw = minimal(
        endpoints={
            "ping": {"method": "GET", "path": "/ping", "colour": "red"},
            "pong": {"method": "POST", "path": "pong", "timeout_s": 0},
        }
    )
    assert sorted(problems_of(raw)) == [
        "endpoints.ping.colour: unknown key",
        "endpoints.pong.path: must start with '/', got 'pong'",
        "endpoints.pong.timeout_s: must be positive",
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            minimal(surprise=1, default_retry="ghost"),
            ["default_retry: unknown policy 'ghost'", "surprise: unknown key"],
        ),
        (
            minimal(endpoints={"a": {"method": "GET", "path": "/a", "x": 1, "y": 2}}),
            ["endpoints.a.x: unknown key", "endpoints.a.y: unknown key"],
        ),
        (
            # a bad optional field is dropped (its default applies) and the rest of the entry is still checked
            minimal(endpoints={"a": {"method": "GET", "path": "a", "connect_timeout_s": "soon"}}),
            [
                "endpoints.a.connect_timeout_s: Expected `float`, got `str`",
                "endpoints.a.path: must start with '/', got 'a'",
            ],
        ),
        (
            # an entry that cannot be built is left out; a reference to it is not reported again as unknown
            minimal(endpoints={"poll": {"method": "FETCH", "path": "/poll"}}, futures={"retrieve_endpoint": "poll"}),
            ["endpoints.poll.method: Invalid enum value 'FETCH'"],
        ),
        (
            minimal(
                pools={"p": {"max_concurrency": "many", "max_bytes": 0}},
                retry_policies={"r": {"jitter": 2, "colour": 1}},
            ),
            [
                "pools.p.max_bytes: must be positive or null, got 0",
                "pools.p.max_concurrency: Expected `int | null`, got `str`",
                "retry_policies.r.colour: unknown key",
                "retry_policies.r.jitter: must be within [0, 1], got 2.0",
            ],
        ),
        (
            # a nested struct's unknown key and its missing required field, beside a semantic problem
            minimal(
                endpoints={
                    "a": {"method": "GET", "path": "/a", "backpressure": {"value": "1", "extra": True}},
                    "b": {"method": "GET", "path": "/b", "pool": "nowhere"},
                }
            ),
            [
                "endpoints.a.backpressure.extra: unknown key",
                "endpoints.a.backpressure.header: required",
                "endpoints.b.pool: unknown pool 'nowhere'",
            ],
        ),
        # without a required top-level field nothing can be cross-checked: the structural problems alone
        ({"name": "x", "surprise": 1, "default_retry": "ghost"}, ["base_url: required", "surprise: unknown key"]),
    ],
)
def test_every_problem_is_listed_with_its_path(raw: dict[str, Any], expected: list[str]) -> None:
    assert sorted(problems_of(raw)) == expected


def test_the_one_error_counts_and_lists_them_all() -> None:
    raw = minimal(surprise=1, endpoints={"a": {"method": "GET", "path": "a", "timeout_s": -1}})
    with pytest.raises(ManifestError) as caught:
        load_manifest(raw)
    error = caught.value
    assert str(error).startswith("manifest is invalid (3 problems):\n")
    assert [line.split(": ", 1)[0] for line in sorted(error.problems)] == [
        "endpoints.a.path",
        "endpoints.a.timeout_s",
        "surprise",
    ]


def test_the_repo_manifest_still_loads_and_is_not_changed_by_repairs() -> None:
    from pathlib import Path

    import msgspec

    path = Path(__file__).resolve().parents[2] / "manifest.json"
    assert load_manifest(path) == msgspec.convert(msgspec.json.decode(path.read_bytes()), type(load_manifest(path)))


@pytest.mark.parametrize(
    ("raw", "path", "hint"),
    [
        (
            minimal(surprise=1),
            "surprise",
            "known keys here: base_url, default_retry, endpoints, events, futures, "
            "headers, idempotency, logging, name, pools, retry_headers, retry_policies, retry_rules, session, transport",
        ),
        (
            minimal(endpoints={"a": {"method": "GET", "path": "/a", "backpressure": {"header": "h", "colour": 1}}}),
            "endpoints.a.backpressure.colour",
            "known keys here: header, large_backoff_s, small_backoff_s, small_request_bytes, status, value",
        ),
        (
            minimal(
                endpoints={
                    "a": {
                        "method": "POST",
                        "path": "/a",
                        "dialects": {"v2": {"result_formats": [{"content_type": "x", "z": 1}]}},
                    }
                }
            ),
            "endpoints.a.dialects[...].result_formats[0].z",
            "known keys here: content_type, message, serializer",
        ),
        (
            minimal(default_retry="fast", retry_policies={"slow": {}, "std": {}}),
            "default_retry",
            "retry_policies defines slow, std",
        ),
        (
            minimal(endpoints={"a": {"method": "GET", "path": "/a", "pool": "p"}}),
            "endpoints.a.pool",
            "pools defines none",
        ),
        (minimal(futures={"retrieve_endpoint": "poll"}), "futures.retrieve_endpoint", "endpoints defines none"),
        (
            minimal(
                retry_rules={"wait": {"statuses": [409], "max_attempts": 3}},
                retry_policies={"std": {"shared_rules": ["wait", "pause"]}},
            ),
            "retry_policies.std.shared_rules[1]",
            "retry_rules defines wait",
        ),
        (
            minimal(
                retry_policies={"std": {}},
                endpoints={"a": {"method": "GET", "path": "/a", "retry": {"policy": "std", "shared_rules": ["x"]}}},
            ),
            "endpoints.a.retry.shared_rules[0]",
            "retry_rules defines none",
        ),
        (minimal(endpoints={"a": {"method": "GET"}}), "endpoints.a.path", None),
    ],
)
def test_each_problem_carries_its_path_and_a_hint(raw: dict[str, Any], path: str, hint: str | None) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(raw)
    (problem,) = [p for p in caught.value.problems if isinstance(p, ManifestProblem) and p.path == path]
    assert problem.hint == hint
    assert problem == f"{problem.path}: {problem.detail}"
    if hint is not None:
        assert f"  - {problem}\n    hint: {hint}" in str(caught.value)


def test_the_error_pickles_with_its_problems() -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(minimal(surprise=1, default_retry="fast"))
    error = caught.value
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.problems, copy.source) == (str(error), error.problems, error.source)
    assert [(p.path, p.hint) for p in copy.problems] == [(p.path, p.hint) for p in error.problems]
