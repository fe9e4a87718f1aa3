import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pristine_transport.manifest import (
    EndpointSpec,
    Manifest,
    ManifestError,
    RetryOverride,
    RetryPolicySpec,
    load_manifest,
)


def minimal(**sections: Any) -> dict[str, Any]:
    return {"name": "demo", "base_url": {"default": "https://api.example.test/prefix"}, **sections}


def problems_of(raw: Any) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifest(raw)
    return caught.value.problems


def test_a_minimal_manifest_loads_with_defaults() -> None:
    manifest = load_manifest(minimal(endpoints={"ping": {"method": "GET", "path": "/ping"}}))
    assert isinstance(manifest, Manifest)
    ping = manifest.endpoint("ping")
    assert ping == EndpointSpec(method="GET", path="/ping")
    assert (ping.timeout_s, ping.connect_timeout_s, ping.response, ping.query_array_format) == (60.0, 5.0, "parsed", "comma")
    assert manifest.idempotency.header == "X-Idempotency-Key"


def test_loads_from_path_and_bytes(tmp_path: Path) -> None:
    raw = minimal(endpoints={"ping": {"method": "GET", "path": "/ping"}})
    file = tmp_path / "m.json"
    file.write_text(json.dumps(raw))
    assert load_manifest(file) == load_manifest(str(file)) == load_manifest(json.dumps(raw).encode())


def test_unknown_endpoint_lookup_names_the_manifest() -> None:
    with pytest.raises(KeyError, match="manifest 'demo' has no endpoint 'nope'"):
        load_manifest(minimal()).endpoint("nope")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"name": "x"}, "base_url: required"),
        ({"base_url": {"default": "https://h"}}, "name: required"),
        ({"name": "x", "base_url": {}}, "base_url.default: required"),
        (minimal(surprise=1), "surprise: unknown key"),
        (minimal(endpoints=[]), "endpoints: expected an object"),
        (minimal(pools="p"), "pools: expected an object"),
        (minimal(endpoints={"a": {"method": "FETCH", "path": "/a"}}), "endpoints.a.method: Invalid enum value 'FETCH'"),
        (minimal(endpoints={"a": {"method": "GET", "path": "/a", "bogus": 1}}), "endpoints.a.bogus: unknown key"),
        (minimal(endpoints={"a": {"method": "GET"}}), "endpoints.a.path: required"),
        (
            minimal(endpoints={"a": {"method": "GET", "path": "/a", "timeout_s": "x"}}),
            "endpoints.a.timeout_s: Expected `float`, got `str`",
        ),
        (
            minimal(endpoints={"a": {"method": "GET", "path": "/a", "backpressure": {"value": "1"}}}),
            "endpoints.a.backpressure.header: required",
        ),
        (minimal(idempotency={"header": 5}), "idempotency.header: Expected `str`, got `int`"),
        (minimal(headers={"X-A": {"secret": True}}), "headers.X-A: needs at least one of value, env, config, platform"),
        (minimal(headers={"X-A": {"platform": "kernel"}}), "headers.X-A.platform: Invalid enum value 'kernel'"),
        (minimal(futures={}), "futures.retrieve_endpoint: required"),
        ({"name": "x", "base_url": {"default": "ftp://h"}}, "base_url.default: must be an http:// or https:// URL, got 'ftp://h'"),
        (minimal(default_retry="fast"), "default_retry: unknown policy 'fast'"),
        (minimal(pools={"p": {"max_concurrency": 0}}), "pools.p.max_concurrency: must be positive or null, got 0"),
        (minimal(pools={"p": {"max_bytes": -5}}), "pools.p.max_bytes: must be positive or null, got -5"),
        (minimal(pools={"p": {"backoff_byte_multiplier": 0}}), "pools.p.backoff_byte_multiplier: must be >= 1"),
        (minimal(retry_policies={"r": {"max_retries": -1}}), "retry_policies.r.max_retries: must be >= 0 or null"),
        (
            minimal(retry_policies={"r": {"max_retries": None}}),
            "retry_policies.r.max_retries: null (unlimited) needs progress_timeout_s",
        ),
        (minimal(retry_policies={"r": {"jitter": 1.5}}), "retry_policies.r.jitter: must be within [0, 1], got 1.5"),
        (
            minimal(retry_policies={"r": {"initial_delay_s": 5, "max_delay_s": 1}}),
            "retry_policies.r.max_delay_s: must be >= initial_delay_s >= 0",
        ),
        (minimal(retry_policies={"r": {"max_in_flight": 0}}), "retry_policies.r.max_in_flight: must be positive or null"),
        (minimal(endpoints={"a": {"method": "GET", "path": "a"}}), "endpoints.a.path: must start with '/', got 'a'"),
        (minimal(endpoints={"a": {"method": "GET", "path": "/a/{1x}"}}), "endpoints.a.path: bad parameter name {1x}"),
        (minimal(endpoints={"a": {"method": "GET", "path": "/a", "pool": "p"}}), "endpoints.a.pool: unknown pool 'p'"),
        (minimal(endpoints={"a": {"method": "GET", "path": "/a", "retry": "r"}}), "endpoints.a.retry: unknown policy 'r'"),
        (
            minimal(endpoints={"a": {"method": "GET", "path": "/a", "retry": {"policy": "r"}}}),
            "endpoints.a.retry.policy: unknown policy 'r'",
        ),
        (
            minimal(
                retry_policies={"r": {}},
                endpoints={"a": {"method": "GET", "path": "/a", "retry": {"policy": "r", "max_retries": -2}}},
            ),
            "endpoints.a.retry.max_retries: must be >= 0 or null",
        ),
        (minimal(endpoints={"a": {"method": "GET", "path": "/a", "timeout_s": 0}}), "endpoints.a.timeout_s: must be positive"),
        (
            minimal(endpoints={"a": {"method": "GET", "path": "/a", "future": {"request_type": "S", "result": "R"}}}),
            "endpoints.a.future: the manifest has no futures block",
        ),
        (minimal(futures={"retrieve_endpoint": "poll"}), "futures.retrieve_endpoint: unknown endpoint 'poll'"),
        (
            minimal(session={"create_endpoint": "c", "heartbeat_endpoint": "h", "end_endpoint": "e"}),
            "session.heartbeat_endpoint: unknown endpoint 'h'",
        ),
        (
            minimal(
                endpoints={"c": {"method": "POST", "path": "/c"}},
                session={"create_endpoint": "c", "heartbeat_endpoint": "c", "interval_s": 0},
            ),
            "session.interval_s: must be positive",
        ),
        (minimal(events={"endpoint": "ev"}), "events.endpoint: unknown endpoint 'ev'"),
        (
            minimal(endpoints={"ev": {"method": "POST", "path": "/ev"}}, events={"endpoint": "ev", "batch_size": 0}),
            "events: batch_size and queue_size must be positive",
        ),
        (minimal(logging={"env": "X_LOG"}), "logging.logger: required"),
    ],
)
def test_each_problem_is_reported_with_its_json_path(raw: dict[str, Any], expected: str) -> None:
    assert expected in problems_of(raw)


def test_file_and_json_level_problems(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "missing.json") == ["cannot read file: No such file or directory"]
    assert problems_of(b"{")[0].startswith("not valid JSON: ")
    assert problems_of(b"[1, 2]") == ["$: expected a JSON object"]


def test_every_structural_problem_is_listed_at_once_in_one_error() -> None:
    raw = minimal(
        surprise=True,
        endpoints={
            "a": {"method": "FETCH", "path": "/a"},
            "b": {"method": "GET", "path": "/b", "extra": 1},
            "c": {"method": "GET"},
        },
        pools={"p": {"max_concurrency": "many"}},
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(raw)
    error = caught.value
    assert sorted(error.problems) == sorted(
        [
            "surprise: unknown key",
            "endpoints.a.method: Invalid enum value 'FETCH'",
            "endpoints.b.extra: unknown key",
            "endpoints.c.path: required",
            "pools.p.max_concurrency: Expected `int | null`, got `str`",
        ]
    )
    assert str(error).startswith("manifest is invalid (5 problems):\n  - ")
    assert all(f"  - {p}" in str(error) for p in error.problems)


def test_every_cross_check_problem_is_listed_at_once() -> None:
    raw = minimal(
        default_retry="nope",
        endpoints={
            "a": {"method": "GET", "path": "a", "pool": "ghost"},
            "b": {"method": "POST", "path": "/b", "retry": "missing", "timeout_s": -1},
        },
    )
    problems = problems_of(raw)
    assert problems == [
        "default_retry: unknown policy 'nope'",
        "endpoints.a.path: must start with '/', got 'a'",
        "endpoints.a.pool: unknown pool 'ghost'",
        "endpoints.b.retry: unknown policy 'missing'",
        "endpoints.b.timeout_s: must be positive",
    ]


def test_the_error_names_its_source_file(tmp_path: Path) -> None:
    file = tmp_path / "broken.json"
    file.write_text(json.dumps({"name": "x"}))
    with pytest.raises(ManifestError, match=r"broken\.json is invalid \(1 problem\):\n  - base_url: required"):
        load_manifest(file)


def test_manifest_error_is_a_value_error() -> None:
    assert issubclass(ManifestError, ValueError)


def _with_policies(**endpoint_fields: Any) -> Manifest:
    return load_manifest(
        minimal(
            retry_policies={
                "standard": {"max_retries": 10, "initial_delay_s": 0.5},
                "sampling": {"kind": "sampling", "max_retries": None, "progress_timeout_s": 120, "jitter": 0.25},
            },
            default_retry="standard",
            endpoints={"a": {"method": "POST", "path": "/a", **endpoint_fields}},
        )
    )


def test_retry_policy_defaults_to_the_manifest_default() -> None:
    manifest = _with_policies()
    assert manifest.retry_policy_for("a") == manifest.retry_policies["standard"]


def test_retry_policy_by_name() -> None:
    manifest = _with_policies(retry="sampling")
    assert manifest.retry_policy_for("a") is manifest.retry_policies["sampling"]


def test_inline_override_replaces_only_the_given_fields() -> None:
    manifest = _with_policies(retry={"policy": "standard", "max_retries": 0, "retry_statuses": [503]})
    policy = manifest.retry_policy_for("a")
    assert isinstance(manifest.endpoint("a").retry, RetryOverride)
    assert policy == msgspec.structs.replace(manifest.retry_policies["standard"], max_retries=0, retry_statuses=[503])
    assert manifest.retry_policies["standard"].max_retries == 10  # the named policy is untouched


def test_override_may_set_a_field_to_null() -> None:
    manifest = _with_policies(retry={"policy": "sampling", "max_in_flight": None, "progress_timeout_s": 5})
    policy = manifest.retry_policy_for("a")
    assert isinstance(policy, RetryPolicySpec)
    assert (policy.kind, policy.max_in_flight, policy.progress_timeout_s) == ("sampling", None, 5)


def test_no_policy_and_no_default_means_no_retry() -> None:
    manifest = load_manifest(minimal(endpoints={"a": {"method": "GET", "path": "/a"}}))
    assert manifest.retry_policy_for("a") is None


SHARED = {
    "pause": {"statuses": [402], "wait_s": 5.0, "max_duration_s": 60.0},
    "building": {"statuses": [409], "max_attempts": 3},
}
OWN_PAUSE = {"statuses": [402], "wait_s": 1.0, "max_attempts": 2}


@pytest.mark.parametrize(
    ("policy", "endpoint_retry", "rules"),
    [
        ({"shared_rules": ["pause"]}, None, {"pause": 5.0}),  # a shared rule is the policy's
        ({"shared_rules": ["pause"], "rules": {"pause": OWN_PAUSE}}, None, {"pause": 1.0}),  # its own one wins
        ({"shared_rules": ["pause"]}, {"policy": "p", "rules": {"pause": None}}, {}),  # an endpoint removes it
        ({}, {"policy": "p", "shared_rules": ["building"]}, {"building": None}),  # an endpoint adds one
        ({"shared_rules": ["pause"]}, {"policy": "p", "shared_rules": ["building"]}, {"pause": 5.0, "building": None}),
    ],
)
def test_shared_rules_are_written_once_and_resolved_per_endpoint(
    policy: dict[str, Any], endpoint_retry: dict[str, Any] | None, rules: dict[str, float | None]
) -> None:
    endpoint: dict[str, Any] = {"method": "POST", "path": "/a"} | ({"retry": endpoint_retry} if endpoint_retry else {})
    manifest = load_manifest(
        minimal(retry_rules=SHARED, retry_policies={"p": policy}, default_retry="p", endpoints={"a": endpoint})
    )
    resolved = manifest.retry_policy_for("a")
    assert resolved is not None and resolved.shared_rules == []
    assert {name: rule.wait_s for name, rule in resolved.rules.items()} == rules


def test_a_shared_rule_dropped_from_the_manifest_is_off_everywhere() -> None:
    manifest = load_manifest(
        minimal(
            retry_rules=SHARED,
            retry_policies={"p": {"shared_rules": ["pause", "building"]}},
            default_retry="p",
            endpoints={"a": {"method": "POST", "path": "/a"}},
        )
    )
    without = msgspec.structs.replace(manifest, retry_rules={"building": manifest.retry_rules["building"]})
    resolved = without.retry_policy_for("a")
    assert resolved is not None and list(resolved.rules) == ["building"]
