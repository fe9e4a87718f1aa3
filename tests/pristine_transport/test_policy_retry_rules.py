"""Retry rules as pure decisions: does an answer match a rule (matching_rule), and what the rule makes of it
(decide_rule: wait how long, warn now, give up), by tables; and how a manifest states and validates them."""

from __future__ import annotations

from typing import Any

import pytest

from pristine_transport.manifest import ManifestError, MatchSpec, RetryPolicySpec, RetryRuleSpec, load_manifest
from pristine_transport.policy import RuleEpisode, RuleVerdict, decide_rule, matching_rule

POLICY = RetryPolicySpec(initial_delay_s=0.5, max_delay_s=10.0, jitter=0.25)
BUILDING = RetryRuleSpec(statuses=[409, 503], body_contains="in progress", wait_s=30.0, max_attempts=6)
PAUSED = RetryRuleSpec(
    statuses=[402], wait_s=5.0, max_duration_s=3600.0, episode_gap_s=300.0, log="paused", log_interval_s=60.0
)
ON_HOLD = RetryRuleSpec(statuses=[423], body_field=MatchSpec(field="state", value="on_hold"), max_attempts=3)
RULES = {"building": BUILDING, "paused": PAUSED, "on_hold": ON_HOLD}


@pytest.mark.parametrize(
    ("status", "body", "matched"),
    [
        (503, b'{"detail": "archive creation in progress"}', "building"),
        (409, b"still in progress", "building"),
        (503, b'{"detail": "overloaded"}', None),  # the body must contain the text
        (503, None, None),  # a body left unread matches no rule that looks at it
        (402, b"", "paused"),  # no body condition: the status is enough
        (402, None, "paused"),
        (423, b'{"state": "on_hold", "detail": "x"}', "on_hold"),
        (423, b'{"state": "closed"}', None),  # the field's value decides
        (423, b'["on_hold"]', None),  # not an object
        (423, b"not json", None),
        (500, b"in progress", None),  # a status no rule lists
    ],
)
def test_which_rule_an_answer_matches(status: int, body: bytes | None, matched: str | None) -> None:
    found = matching_rule(RULES, status, body)
    assert (found[0] if found is not None else None) == matched


def test_the_first_matching_rule_in_order_wins() -> None:
    broad = RetryRuleSpec(statuses=[503], wait_s=1.0, max_attempts=2)
    assert matching_rule({"building": BUILDING, "broad": broad}, 503, b"in progress") == ("building", BUILDING)
    assert matching_rule({"broad": broad, "building": BUILDING}, 503, b"in progress") == ("broad", broad)


E = RuleEpisode


@pytest.mark.parametrize(
    ("rule", "episode", "now", "matches", "verdict"),
    [
        # a fixed wait, bounded by requests in all: the sixth matching answer is final
        (BUILDING, E(), 10.0, 1, RuleVerdict(30.0, False, E(10.0, 10.0))),
        (BUILDING, E(10.0, 10.0), 40.0, 5, RuleVerdict(30.0, False, E(10.0, 40.0))),
        (BUILDING, E(10.0, 160.0), 190.0, 6, RuleVerdict(None, False, E(10.0, 160.0), "attempts")),
        # bounded by the episode's duration, warned at most once a minute
        (PAUSED, E(), 100.0, 1, RuleVerdict(5.0, True, E(100.0, 100.0))),
        (PAUSED, E(100.0, 100.0), 130.0, 7, RuleVerdict(5.0, False, E(100.0, 100.0))),
        (PAUSED, E(100.0, 100.0), 161.0, 1, RuleVerdict(5.0, True, E(100.0, 161.0))),  # another request, same episode
        (PAUSED, E(100.0, 3650.0), 3701.0, 1, RuleVerdict(None, False, E(100.0, 3650.0), "duration")),
        (PAUSED, E(100.0, 3650.0), 3951.0, 1, RuleVerdict(5.0, True, E(3951.0, 3951.0))),  # 5 min unnoted: new episode
        # no bound on attempts: only the duration ends it
        (PAUSED, E(100.0, 100.0), 150.0, 500, RuleVerdict(5.0, False, E(100.0, 100.0))),
    ],
)
def test_what_a_rule_makes_of_a_matching_answer(
    rule: RetryRuleSpec, episode: RuleEpisode, now: float, matches: int, verdict: RuleVerdict
) -> None:
    assert decide_rule(rule, POLICY, episode, now=now, matches=matches) == verdict


def test_a_zero_duration_waits_once_per_episode() -> None:
    rule = RetryRuleSpec(statuses=[402], wait_s=5.0, max_duration_s=0.0)
    first = decide_rule(rule, POLICY, E(), now=100.0, matches=1)
    assert first.wait_s == 5.0
    assert decide_rule(rule, POLICY, first.episode, now=105.0, matches=2).gave_up == "duration"


@pytest.mark.parametrize(
    ("matches", "retry_after_s", "random", "wait_s"),
    [
        (1, None, 0.0, 0.5),  # the policy's backoff, by the request's matches so far
        (2, None, 0.0, 1.0),
        (3, None, 1.0, 2.0 * 0.75),  # its jitter (standard: down by up to 25%)
        (10, None, 0.0, 10.0),  # capped at max_delay_s
        (1, 7.0, 0.0, 7.0),  # the server's Retry-After when it is within max_retry_after_s
        (1, 600.0, 0.0, 0.5),  # not beyond it
    ],
)
def test_a_rule_without_its_own_wait_takes_the_policys(
    matches: int, retry_after_s: float | None, random: float, wait_s: float
) -> None:
    rule = RetryRuleSpec(statuses=[425], max_attempts=20)
    verdict = decide_rule(rule, POLICY, E(), now=0.0, matches=matches, retry_after_s=retry_after_s, random=random)
    assert verdict.wait_s == pytest.approx(wait_s)


def test_a_rule_without_a_log_text_never_warns_and_notes_every_wait() -> None:
    rule = RetryRuleSpec(statuses=[425], wait_s=1.0, max_duration_s=100.0, log_interval_s=60.0, episode_gap_s=5.0)
    first = decide_rule(rule, POLICY, E(), now=0.0, matches=1)
    second = decide_rule(rule, POLICY, first.episode, now=4.0, matches=2)
    assert (first.warn, second.warn) == (False, False)
    assert second.episode == E(0.0, 4.0)  # noted at every wait, so the episode goes on while waits go on
    assert decide_rule(rule, POLICY, second.episode, now=10.0, matches=1).episode == E(10.0, 10.0)


# --- the manifest -----------------------------------------------------------------------------------------------


def _manifest(rules: dict[str, Any], endpoint_retry: Any = None) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"method": "GET", "path": "/things"}
    if endpoint_retry is not None:
        endpoint["retry"] = endpoint_retry
    return {
        "name": "rules-test",
        "base_url": {"default": "http://rules.test"},
        "retry_policies": {"standard": {"rules": rules}},
        "default_retry": "standard",
        "endpoints": {"things": endpoint},
    }


def test_an_endpoints_override_adds_rules_replaces_one_by_name_and_null_removes_one() -> None:
    paused = {"statuses": [402], "wait_s": 5.0, "max_duration_s": 60.0}
    building = {"statuses": [503], "wait_s": 1.0, "max_attempts": 3}
    added = load_manifest(_manifest({"paused": paused}, {"policy": "standard", "rules": {"building": building}}))
    policy = added.retry_policy_for("things")
    assert policy is not None and list(policy.rules) == ["paused", "building"]
    assert added.retry_policies["standard"].rules.keys() == {"paused"}  # the named policy is left as it was

    removed = load_manifest(_manifest({"paused": paused}, {"policy": "standard", "rules": {"paused": None}}))
    policy = removed.retry_policy_for("things")
    assert policy is not None and policy.rules == {}

    replaced = load_manifest(
        _manifest({"paused": paused}, {"policy": "standard", "rules": {"paused": {**paused, "wait_s": 9.0}}})
    )
    policy = replaced.retry_policy_for("things")
    assert policy is not None and policy.rules["paused"].wait_s == 9.0


def test_every_problem_of_a_rule_is_reported_with_its_path() -> None:
    bad = {"statuses": [200], "wait_s": -1.0, "max_attempts": 0}
    endless = {"statuses": [503], "wait_s": 1.0}
    with pytest.raises(ManifestError) as caught:
        load_manifest(_manifest({"bad": bad, "endless": endless}))
    text = str(caught.value)
    assert "retry_policies.standard.rules.bad.statuses: must list statuses within 300-599" in text
    assert "retry_policies.standard.rules.bad.wait_s: must be >= 0" in text
    assert "retry_policies.standard.rules.bad.max_attempts: must be >= 1" in text
    assert "retry_policies.standard.rules.endless: needs max_attempts or max_duration_s" in text


def test_an_unknown_key_in_a_rule_is_named() -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(_manifest({"typo": {"statuses": [503], "max_attempts": 2, "wait": 1.0}}))
    (problem,) = caught.value.problems
    assert problem.path.startswith("retry_policies.standard.rules") and problem.path.endswith(".wait")
    assert problem.detail == "unknown key" and problem.hint is not None and "wait_s" in problem.hint
