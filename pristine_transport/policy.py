"""Retry and polling decisions as pure functions: "retry this outcome? after how long? is it progress?".

Everything here is data in, verdict out, with no clock, no I/O and no randomness of its own (``random`` is a
number in [0, 1) handed in), so each rule is tested by a table. The mechanisms that apply the verdicts are
:class:`~pristine_transport.layers.retry.RetryLayer` (one logical HTTP request) and
:class:`~pristine_transport.futures.FutureResolver` (polling a future). There is one backoff formula,
:func:`backoff_delay`, and every wait of either mechanism is computed by it. What an error about a write says
happened to it (ran / did not run / may have run) is :func:`write_outcome`, built on the per-attempt
:func:`may_have_run`. A policy's retry rules (answers waited out on their own terms, such as "still being built")
are :func:`matching_rule` and :func:`decide_rule`.

The defaults follow the official SDK's budget (docs/wire.md §3.1-3.4): re-sends at the Stainless pace
(``max_retries`` of the policy, 0.5 s doubling to 10 s), then further rounds after ``min(2**n, 30)`` s until the
operation has made no progress for 300 s; an empty-body 400 counts as a connection failure while a budget of 16
lasts (one given back per success).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import msgspec

if TYPE_CHECKING:  # only names in annotations: the manifest's load errors are errors.py's, which imports this module
    from pristine_transport.manifest import FuturesSpec, MatchSpec, PollBackoffSpec, RetryPolicySpec, RetryRuleSpec

__all__ = [
    "Attempt",
    "CALL_DEADLINES",
    "DEFAULT_DEADLINES",
    "Deadlines",
    "GiveUp",
    "PollAnswer",
    "PollBody",
    "PollBodyVerdict",
    "PollEnd",
    "PollReading",
    "PollStreaks",
    "PollWait",
    "ReplayAnswer",
    "Retry",
    "RetryBudget",
    "RetryQuota",
    "RetryState",
    "RuleEpisode",
    "RuleVerdict",
    "WriteOutcome",
    "backoff_delay",
    "decide_retry",
    "decide_rule",
    "is_bare_400",
    "is_empty_body",
    "matching_rule",
    "may_have_run",
    "next_poll",
    "poll_delay",
    "poll_body_verdict",
    "poll_is_progress",
    "poll_status_verdict",
    "poll_wait_within_deadline",
    "read_poll_answer",
    "retry_quota_allows",
    "write_outcome",
    "write_outcome_advice",
]

JitterMode = Literal["none", "down", "both"]


def backoff_delay(
    step: int, *, initial_s: float, max_s: float, jitter: float = 0.0, mode: JitterMode = "none", random: float = 0.5
) -> float:
    """``min(initial_s * 2**step, max_s)``, then jittered: ``down`` multiplies by [1 - jitter, 1] (Stainless),
    ``both`` adds ±jitter of itself and clamps to [0, max_s] (the sampling RetryHandler), ``none`` leaves it."""
    base = min(initial_s * 2.0 ** min(step, 1000), max_s)
    if mode == "down":
        return base * (1.0 - jitter * random)
    if mode == "both":
        return min(max(base + base * jitter * (2.0 * random - 1.0), 0.0), max_s)
    return base


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How long a logical request keeps being re-sent after its policy's ``max_retries`` (the official
    ``execute_with_retries``), and the empty-body-400 rule. Rounds go on until the no-progress deadline."""

    rounds: bool = True
    """After ``max_retries`` re-sends, start another round after ``min(round_initial_s * 2**n, round_max_s)``."""
    round_initial_s: float = 1.0
    round_max_s: float = 30.0
    bare_400_retries: int = 16
    """Empty-body 400s (a proxy's rejection) re-sent as connection failures while this many tokens last; each
    success gives one back. 0 turns the rule off."""


DEFAULT_BUDGET = RetryBudget()


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Every bound on waiting, settable per client and per call (docs/deadlines.md has the table)."""

    attempt_s: float | None = None
    """One attempt, headers and body together (a trickling body cannot extend it). None: the request's own
    timeout, i.e. the endpoint's ``timeout_s``."""
    no_progress_s: float | None = 300.0
    """A logical operation (a write with its re-sends, backpressure waits included; a future's polling) that
    makes no progress for this long fails. None: no limit."""
    failed_attempts: int | None = 10
    """Consecutive failed attempts of one request of an unlimited (sampling) policy after which it fails
    although other requests of the policy succeed (a "poison" request). None: no cap."""
    budget: RetryBudget = DEFAULT_BUDGET


DEFAULT_DEADLINES = Deadlines()
"""What an SDK operation declares (the future resolver on every submit, a ``deadlines(...)`` scope): the official
budget."""

CALL_DEADLINES = Deadlines(budget=RetryBudget(rounds=False))
"""A bare HTTP call through a retry layer that no operation declared deadlines for: every bound, but only the
policy's own re-sends (the official budget wraps SDK operations, not single HTTP calls)."""


# --- one logical request --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt ended with, as the decision needs it."""

    status: int | None = None
    """The response status; None when no response came (``failure`` says why)."""
    failure: str | None = None
    """The transport failure's class name (``ConnectError``, ``ReadTimeout``, ``AttemptDeadline`` …)."""
    should_retry: str | None = None
    """The server's retry verdict header, lowercased (``true`` / ``false``), if any."""
    bare: bool = False
    """The body is empty (for a 400: a proxy's rejection, not the API's)."""
    retry_after_s: float | None = None
    backpressure: bool = False
    """The answer was the endpoint's backpressure status (a 429 the server sent to slow us down)."""


@dataclass(frozen=True, slots=True)
class RetryState:
    """Where a logical request stands before the decision."""

    retries: int = 0
    """Re-sends so far."""
    round_retries: int = 0
    """Re-sends in the current round (the policy's ``max_retries`` bounds it)."""
    rounds: int = 0
    """Rounds started after the first (the budget's ``min(2**n, 30)`` pauses)."""
    failures_in_a_row: int = 1
    """Failed attempts in a row, this one included."""
    others_succeeded: bool = False
    """Another request of the same (sampling) policy succeeded since this one's failures began."""
    remaining_s: float | None = None
    """Time left before the no-progress deadline; None: no deadline."""
    bare_400_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float
    reason: str
    new_round: bool = False
    takes_bare_400_token: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str | None
    """Why, when a deadline or cap ended it (then the caller raises a deadline error); None: the outcome is
    final by the rules (not retryable, or no re-sends allowed), handed back as it is."""
    deadline: Literal["no_progress", "failed_attempts"] | None = None


_NEVER_REACHED = frozenset(
    {"ConnectError", "ConnectTimeout", "PoolTimeout", "ClientConnectorError", "ConnectionRefusedError", "gaierror"}
)
"""Failures that happen before the request reaches the server (after ``failure_name`` unwrapped httpx-aiohttp's
"disconnect reported as ConnectTimeout")."""


def may_have_run(attempt: Attempt) -> bool:
    """Whether the server may have executed the request in this attempt. False only when it surely did not:
    no connection, the backpressure status, a proxy's empty 400, or a 4xx the API answers before executing."""
    if attempt.status is None:
        return attempt.failure not in _NEVER_REACHED
    if attempt.backpressure or (attempt.status == 400 and attempt.bare):
        return False
    if attempt.status in (408, 409):  # a 409 after a re-send may mean the first one ran
        return True
    return not 400 <= attempt.status < 500


_LATER = frozenset({408, 429})
"""Client-error statuses that refuse a request for now, not as it is."""

WriteOutcome = Literal["ran", "did_not_run", "may_have_run"]
"""What the client can say about a write that did not end in its result: the server executed it, surely did not,
or the client cannot tell."""

ReplayAnswer = Literal["answered", "unknown_key"]
"""The server's answer to a re-send with the same idempotency key: ``answered`` (a 2xx: it replayed the first
execution's answer, or ran it now, so it has run), ``unknown_key`` (an answer that proves the key never reached
execution: did not run). ``None`` where this is used: not re-sent, or no answer came."""


def write_outcome(
    attempts: Sequence[Attempt], *, replay_answer: ReplayAnswer | None = None, future_expired: bool = False
) -> WriteOutcome:
    """Ran, did not run, or may have run: the one verdict every error about a write carries.

    From what the client knows, strongest evidence first: a future that expired was accepted and executed by the
    server (its result is gone, the work is not); a 2xx to any attempt, or to a re-send with the same idempotency
    key, means the server accepted it; a re-send the server did not recognise means nothing ran; otherwise it did
    not run only if no attempt could have reached execution (:func:`may_have_run` of each, the per-attempt rule).
    No attempt at all: nothing was sent."""
    if future_expired or replay_answer == "answered":
        return "ran"
    if any(a.status is not None and 200 <= a.status < 300 for a in attempts):
        return "ran"
    if replay_answer == "unknown_key":
        return "did_not_run"
    return "may_have_run" if any(may_have_run(a) for a in attempts) else "did_not_run"


def write_outcome_advice(
    outcome: WriteOutcome,
    *,
    what: str = "the write",
    future_expired: bool = False,
    changes_state: bool = False,
    refused_with: int | None = None,
) -> str:
    """The sentence an error about a write ends with: the outcome, and what to do next.

    ``changes_state`` marks a write whose effect stays on the server (unlike a read-like request): submitting it
    again would apply it twice. ``refused_with``: the status of the final answer, when it is a 4xx; one that says
    "not now" (408, 429) invites a later re-send, any other one refuses this request as it is."""
    if outcome == "did_not_run" and refused_with is not None and refused_with not in _LATER:
        return (
            f"{what} did not run on the server (refused with HTTP {refused_with}): nothing to undo, but sending it "
            "again unchanged will be refused the same way"
        )
    if outcome == "did_not_run":
        return f"{what} did not run on the server: it is safe to send it again"
    if outcome == "may_have_run":
        return (
            f"{what} may have run on the server: before submitting it anew, check whether it took effect; "
            "a re-send with the same idempotency key is answered from the server's replay cache and "
            "does not run twice"
        )
    if future_expired and changes_state:
        return (
            f"{what} ran on the server but its result expired before it was retrieved: do not submit it again "
            "(its effect is already in place, and a second submission would apply it twice); continue with the "
            "next step from the state it left (only the returned result is lost)"
        )
    if future_expired:
        return (
            f"{what} ran on the server but its result expired before it was retrieved: submit it again only if "
            "you need its result (it will run a second time)"
        )
    return f"{what} ran on the server: do not submit it again"


def is_bare_400(status: int, content: bytes) -> bool:
    """A 400 that says nothing (:func:`is_empty_body`): a proxy's rejection, not the API's."""
    return status == 400 and is_empty_body(content)


def is_empty_body(content: bytes) -> bool:
    """A body that says nothing: empty (the official rule), or JSON whose every value is empty."""
    stripped = content.strip()
    return not stripped or stripped in (b"{}", b"[]", b"null", b'""') or _all_values_empty(stripped)


def _all_values_empty(content: bytes) -> bool:
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return False
    return not any(body.values()) if isinstance(body, dict) else not body


def _retry_reason(
    policy: RetryPolicySpec, budget: RetryBudget, attempt: Attempt, tokens: int
) -> tuple[str, bool] | None:
    """Why this attempt may be re-sent (and whether it spends a bare-400 token), or None."""
    if attempt.status is None:
        return (attempt.failure or "transport failure", False) if policy.retry_connection_errors else None
    if 200 <= attempt.status < 300:
        return None
    if attempt.should_retry == "true":
        return f"status {attempt.status} (server says retry)", False
    if attempt.should_retry == "false":
        return None
    if attempt.status in policy.retry_statuses or (policy.retry_server_errors and attempt.status >= 500):
        return f"status {attempt.status}", False
    if attempt.status == 400 and attempt.bare and budget.bare_400_retries > 0 and tokens > 0:
        return "status 400 with an empty body (counted as a connection failure)", True
    return None


def decide_retry(
    policy: RetryPolicySpec, deadlines: Deadlines, state: RetryState, attempt: Attempt, random: float
) -> Retry | GiveUp:
    """Re-send this failed attempt, and after how long; or give up, and why."""
    found = _retry_reason(policy, deadlines.budget, attempt, state.bare_400_tokens)
    if found is None or policy.max_retries == 0:
        return GiveUp(None)
    reason, token = found
    unlimited = policy.max_retries is None
    cap = deadlines.failed_attempts
    if unlimited and cap is not None and state.failures_in_a_row >= cap and state.others_succeeded:
        return GiveUp(
            f"{state.failures_in_a_row} failed attempts in a row while other requests succeed", "failed_attempts"
        )
    new_round = not unlimited and state.round_retries >= (policy.max_retries or 0)
    server_delay = attempt.retry_after_s
    if new_round:
        if not deadlines.budget.rounds or state.remaining_s is None:
            return GiveUp(None)  # the policy's re-sends are spent and no budget extends them
        budget = deadlines.budget
        delay = backoff_delay(state.rounds, initial_s=budget.round_initial_s, max_s=budget.round_max_s)
    else:
        delay = _policy_delay(policy, state.retries if unlimited else state.round_retries, server_delay, random)
    if state.remaining_s is not None and delay >= state.remaining_s:
        return GiveUp(f"no progress for the deadline (next re-send would start after it): {reason}", "no_progress")
    return Retry(delay, reason, new_round=new_round, takes_bare_400_token=token)


def _policy_delay(policy: RetryPolicySpec, step: int, server_delay: float | None, random: float) -> float:
    """The policy's wait before its ``step``-th re-send (from 0): the server's Retry-After when the policy respects
    it and it lies in (0, ``max_retry_after_s``], else the policy's jittered backoff."""
    if policy.respect_retry_after and server_delay is not None and 0 < server_delay <= policy.max_retry_after_s:
        return server_delay
    return backoff_delay(
        step,
        initial_s=policy.initial_delay_s,
        max_s=policy.max_delay_s,
        jitter=policy.jitter,
        mode="down" if policy.kind == "standard" else "both",
        random=random,
    )


# --- retry rules: answers waited out on their own terms ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleEpisode:
    """One stretch of a rule's matching answers (times on the caller's monotonic clock): when its first match
    came and when it was last noted (warned about; for a rule without a log text, waited on)."""

    first_at: float | None = None
    noted_at: float | None = None


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """What a rule makes of one matching answer (see :func:`decide_rule`)."""

    wait_s: float | None
    """Wait this long and send again; None: the answer is final (``gave_up`` says why)."""
    warn: bool
    """Warn now (the rule has a log text and its log interval has passed)."""
    episode: RuleEpisode
    """The episode after this answer, to keep for the next."""
    gave_up: Literal["attempts", "duration"] | None = None


def matching_rule(
    rules: Mapping[str, RetryRuleSpec], status: int, body: bytes | None
) -> tuple[str, RetryRuleSpec] | None:
    """The first of ``rules`` (by name, in order) that this answer matches, or None. ``body`` None: not read (a
    stream), so a rule that looks at the body does not match. A rule applies under a policy that re-sends nothing
    else too (``max_retries`` 0): which requests wait is the manifest's choice of rules per policy."""
    for name, rule in rules.items():
        if status not in rule.statuses:
            continue
        if rule.body_contains is not None and (body is None or rule.body_contains.encode() not in body):
            continue
        if rule.body_field is not None and (body is None or not _has_field_value(body, rule.body_field)):
            continue
        return name, rule
    return None


def _has_field_value(body: bytes, match: MatchSpec) -> bool:
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return False
    return isinstance(decoded, dict) and decoded.get(match.field) == match.value


def decide_rule(
    rule: RetryRuleSpec,
    policy: RetryPolicySpec,
    episode: RuleEpisode,
    *,
    now: float,
    matches: int,
    retry_after_s: float | None = None,
    random: float = 0.5,
) -> RuleVerdict:
    """Wait out this matching answer (and how long), or let it be final. ``matches``: the request's answers that
    matched the rule, this one included. An episode not noted for the rule's ``episode_gap_s`` is over: this answer
    starts a new one. Final once ``matches`` reaches ``max_attempts`` or the episode has lasted longer than
    ``max_duration_s``. The wait is the rule's ``wait_s``, else the policy's (Retry-After or backoff, by
    ``matches``). Warned at most once per ``log_interval_s`` of the episode."""
    if episode.noted_at is not None and now - episode.noted_at > rule.episode_gap_s:
        episode = RuleEpisode()
    if rule.max_attempts is not None and matches >= rule.max_attempts:
        return RuleVerdict(None, False, episode, "attempts")
    if rule.max_duration_s is not None and episode.first_at is not None and now - episode.first_at > rule.max_duration_s:
        return RuleVerdict(None, False, episode, "duration")
    interval = rule.log_interval_s if rule.log is not None else 0.0
    note = episode.noted_at is None or interval <= 0 or now - episode.noted_at > interval
    wait = rule.wait_s if rule.wait_s is not None else _policy_delay(policy, matches - 1, retry_after_s, random)
    return RuleVerdict(
        wait,
        note and rule.log is not None,
        RuleEpisode(
            first_at=episode.first_at if episode.first_at is not None else now,
            noted_at=now if note else episode.noted_at,
        ),
    )


# --- polling a future -------------------------------------------------------------------------------------------
#
# One poll's answer is read by read_poll_answer (its status as the manifest's ``futures.poll_statuses`` says, then a
# 2xx's body), and what follows it is next_poll's (an end, or a wait and the streaks after it), kept within the
# no-progress deadline by poll_wait_within_deadline. The resolver only sends, sleeps and delivers.


class PollAnswer(enum.Enum):
    """What one poll of a not-yet-resolved future got."""

    NO_ANSWER = "no answer"
    """A connection failure or an attempt that timed out: the server may be gone."""
    SHED = "shed"
    """The server sheds polls (``poll_statuses.shed``)."""
    SERVER_ERROR = "server error"
    BARE_400 = "empty bad request"
    """A ``poll_statuses.empty_bad_request`` status with a body that says nothing: a proxy's rejection."""
    QUEUED = "queued"
    """A not-yet status whose body names the queue state: a live server says the work is waiting."""
    NOT_YET = "not yet"
    TRY_AGAIN = "try again"
    METADATA_FIRST = "metadata only"
    """The result is ready but large: fetch it in full next (once)."""
    METADATA_AGAIN = "metadata only, again"
    """Metadata-only although the full result was asked for."""


class PollEnd(enum.Enum):
    """A poll's answer that ends the polling in an error; the value says which rule, in the error's message."""

    EXPIRED = "expired"
    """The server no longer has the result (the manifest's ``expiry_status``)."""
    FATAL = "fatal status"
    """A status that is neither a success nor one ``poll_statuses`` names."""
    REPEATED_BARE_400 = "repeated bare 400"
    """More empty bad requests in a row than the manifest's ``bad_request_retries``."""
    NOT_JSON = "response is not JSON"
    """A 2xx that is neither JSON nor in an asked-for result format."""


def poll_status_verdict(status: int, content: bytes, spec: FuturesSpec) -> PollAnswer | PollEnd | None:
    """What a poll's HTTP status says, as the manifest's ``futures`` block has it: None for a 2xx, whose body
    decides (a result, a try-again, a failure); a :class:`PollAnswer` to wait on and poll again; or a
    :class:`PollEnd`. The manifest names each status once, so the order of the checks does not matter."""
    if 200 <= status < 300:
        return None
    meanings = spec.poll_statuses
    if status in meanings.shed:
        return PollAnswer.SHED
    if meanings.server_errors_from is not None and status >= meanings.server_errors_from:
        return PollAnswer.SERVER_ERROR
    if status in meanings.not_yet:
        return PollAnswer.QUEUED if spec.queue_state_field.encode() in content else PollAnswer.NOT_YET
    if status == spec.expiry_status:
        return PollEnd.EXPIRED
    if status in meanings.empty_bad_request and is_empty_body(content):
        return PollAnswer.BARE_400
    return PollEnd.FATAL


class PollBody(enum.Enum):
    """A 2xx poll answer's body that ends the polling."""

    RESULT = "result"
    FAILED = "failed"
    """The manifest's failure field is in the body: the request failed on the server."""
    BAD_METADATA = "metadata-only reply without a valid size"


FailureKind = Literal["failed", "cancelled", "rate_limited", "capacity"]
FailureCategory = Literal["user", "server", "unknown"]
_CATEGORIES: frozenset[str] = frozenset({"user", "server", "unknown"})


@dataclass(frozen=True, slots=True)
class PollBodyVerdict:
    """What a 2xx poll answer's JSON body means (see :func:`poll_body_verdict`)."""

    outcome: PollAnswer | PollBody
    """``TRY_AGAIN``, ``METADATA_FIRST`` or ``METADATA_AGAIN``: wait and poll again; a :class:`PollBody`: the end."""
    last_answer: str = ""
    """How the answer reads in "still unresolved" warnings and deadline errors (empty for an end)."""
    size: int = 0
    """``METADATA_FIRST``: the bytes of the announced result, to hold from the response budget."""
    failure: FailureKind = "failed"
    """``FAILED``: which failure, by the manifest's message patterns."""
    category: FailureCategory = "unknown"
    """``FAILED``: who is at fault, as the body says (anything else is ``unknown``)."""


def poll_body_verdict(body: object, spec: FuturesSpec, *, metadata_only_welcome: bool) -> PollBodyVerdict:
    """What a decoded 2xx poll answer means, as the manifest's ``futures`` block says, checked in this order:
    its try-again match (not ready yet), its metadata-only match (ready but large: fetch it in full, once; a
    repeat once the full result was asked for, i.e. ``metadata_only_welcome`` is False, only backs off), its
    failure field (a failed request), else the result. A body that is not an object is a result."""
    if not isinstance(body, dict):
        return PollBodyVerdict(PollBody.RESULT)
    try_again = spec.try_again
    if try_again is not None and body.get(try_again.field) == try_again.value:
        queue_state = body.get(spec.queue_state_field, "no queue state")
        return PollBodyVerdict(PollAnswer.TRY_AGAIN, f"{try_again.value} ({queue_state})")
    meta = spec.metadata_only
    if meta is not None and body.get(meta.field) == meta.value:
        size = body.get(meta.size_field)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return PollBodyVerdict(PollBody.BAD_METADATA)
        if not metadata_only_welcome:
            return PollBodyVerdict(
                PollAnswer.METADATA_AGAIN, f"{meta.value} again, although the full result was asked for"
            )
        return PollBodyVerdict(PollAnswer.METADATA_FIRST, meta.value, size=size)
    failure = spec.failure
    if failure.field in body:
        raw_category = body.get(failure.category_field)
        category = raw_category.lower() if isinstance(raw_category, str) else "unknown"
        reported = str(body.get(failure.field)).lower()
        kind: FailureKind = "failed"
        if any(pattern.lower() in reported for pattern in failure.cancelled_patterns):
            kind = "cancelled"
        elif any(pattern.lower() in reported for pattern in failure.rate_limit_patterns):
            kind = "rate_limited"
        elif any(pattern.lower() in reported for pattern in failure.capacity_patterns):
            kind = "capacity"
        return PollBodyVerdict(
            PollBody.FAILED,
            failure=kind,
            category=category if category in _CATEGORIES else "unknown",  # type: ignore[arg-type]
        )
    return PollBodyVerdict(PollBody.RESULT)


_PROGRESS = frozenset({PollAnswer.QUEUED, PollAnswer.TRY_AGAIN, PollAnswer.METADATA_FIRST})


def poll_is_progress(answer: PollAnswer) -> bool:
    """A live server saying the work is queued, running or ready counts; failures and repeats do not."""
    return answer in _PROGRESS


def poll_delay(answer: PollAnswer, *, held: bool, streak: int, spec: PollBackoffSpec, random: float) -> float:
    """The wait before the next poll, after ``streak`` answers of the same family in a row (from 1).

    A poll the server held open paces itself (re-poll at once); so does the one re-poll that fetches a
    metadata-only result. Every other quick answer backs off: no answer and shedding by whole seconds up to
    ``connection_error_max_s`` (the official ``min(2**n, 30)``), the rest by ``initial_s`` doubling to ``max_s``."""
    if answer is PollAnswer.METADATA_FIRST:
        return 0.0
    if answer in (PollAnswer.NO_ANSWER, PollAnswer.SHED):
        return backoff_delay(streak - 1, initial_s=1.0, max_s=spec.connection_error_max_s)
    if held:
        return 0.0
    return backoff_delay(
        streak - 1, initial_s=spec.initial_s, max_s=spec.max_s, jitter=spec.jitter, mode="both", random=random
    )


@dataclass(frozen=True, slots=True)
class PollReading:
    """What one poll's answer means (see :func:`read_poll_answer`)."""

    outcome: PollAnswer | PollEnd | PollBody
    """A :class:`PollAnswer`: not ready, poll again; a :class:`PollEnd`: the future fails; a :class:`PollBody`:
    the body ends it (a result, a failure, a bad metadata-only reply)."""
    last_answer: str
    """How the answer reads in "still unresolved" warnings and deadline errors."""
    body: object = None
    """A 2xx read as JSON: the decoded body."""
    verdict: PollBodyVerdict | None = None
    """A 2xx read as JSON: its body's verdict (the metadata size, the failure's kind and category)."""


def read_poll_answer(
    status: int, content: bytes, spec: FuturesSpec, *, metadata_only_welcome: bool, encoded_result: bool = False
) -> PollReading:
    """What a poll's answer means: its status by :func:`poll_status_verdict`, then a 2xx's JSON body by
    :func:`poll_body_verdict`. ``encoded_result``: the reply is in an asked-for non-JSON result format, so a 2xx
    is that result (decoded by the format's codec, not here)."""
    verdict = poll_status_verdict(status, content, spec)
    if verdict is not None:
        return PollReading(verdict, f"HTTP {status}")
    if encoded_result:
        return PollReading(PollBody.RESULT, f"HTTP {status}")
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return PollReading(PollEnd.NOT_JSON, f"HTTP {status}")
    found = poll_body_verdict(body, spec, metadata_only_welcome=metadata_only_welcome)
    return PollReading(found.outcome, found.last_answer or f"HTTP {status}", body, found)


@dataclass(frozen=True, slots=True)
class PollStreaks:
    """Answers of one kind in a row, as the pacing needs them; an answer of another kind ends a streak (a lost
    connection ends none: it says nothing about what the server answers)."""

    no_answer: int = 0
    """Connection failures and timed-out polls in a row."""
    shed: int = 0
    bare_400: int = 0
    """Empty bad requests in a row."""
    quick: int = 0
    """Not-ready answers in a row each followed by a wait: the not-ready backoff's step. An answer re-polled at once
    (a poll the server held open) starts it over."""


@dataclass(frozen=True, slots=True)
class PollWait:
    """Poll again after ``delay_s``."""

    delay_s: float
    streaks: PollStreaks
    """The streaks, this answer counted."""
    progress: bool
    """The answer shows the work moving (queued, running, ready): the no-progress deadline starts over."""


def next_poll(
    answer: PollAnswer | PollEnd | PollBody, streaks: PollStreaks, *, held: bool, spec: FuturesSpec, random: float
) -> PollWait | PollEnd | PollBody:
    """What follows a poll's answer: an end is the future's outcome; a not-ready answer is waited on as
    :func:`poll_delay` says, after ``streaks`` and this answer, except that one empty bad request more than
    ``bad_request_retries`` in a row ends the future. ``held``: the server held the poll open."""
    if not isinstance(answer, PollAnswer):
        return answer
    backoff = spec.backoff
    if answer is PollAnswer.NO_ANSWER:
        no_answer = streaks.no_answer + 1
        delay = poll_delay(answer, held=False, streak=no_answer, spec=backoff, random=random)
        return PollWait(delay, replace(streaks, no_answer=no_answer), progress=False)
    if answer is PollAnswer.SHED:
        shed = streaks.shed + 1
        delay = poll_delay(answer, held=held, streak=shed, spec=backoff, random=random)
        return PollWait(delay, PollStreaks(shed=shed, quick=streaks.quick), progress=False)
    bare_400 = streaks.bare_400 + 1 if answer is PollAnswer.BARE_400 else 0
    if bare_400 > spec.bad_request_retries:
        return PollEnd.REPEATED_BARE_400
    delay = poll_delay(answer, held=held, streak=streaks.quick + 1, spec=backoff, random=random)
    quick = streaks.quick + 1 if delay > 0 else 0
    return PollWait(delay, PollStreaks(bare_400=bare_400, quick=quick), progress=poll_is_progress(answer))


def poll_wait_within_deadline(
    delay_s: float, *, now: float, last_progress: float, no_progress_s: float | None
) -> float | None:
    """The wait before the next poll, within the no-progress deadline (``last_progress``: when the work was last
    seen moving, this answer counted): ``delay_s`` when the next poll starts before the deadline; when it would
    not, half the deadline if this very answer was progress (a live server just said "not yet": ask again within
    the deadline), else None: the future fails."""
    if no_progress_s is None or now + delay_s < last_progress + no_progress_s:
        return delay_s
    if last_progress == now:
        return no_progress_s / 2
    return None


# --- a process's retry quota (tower's retry budget) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryQuota:
    """Re-sends capped at a share of recent requests, as tower's retry budget caps them: when a service is down,
    a fleet of clients adds at most ``share`` to its load instead of multiplying it by ``max_retries``. Opt-in, and
    counted once per process by every client in it (:mod:`pristine_transport.retry_quota` keeps the window)."""

    share: float = 0.2
    """Re-sends allowed per request sent in the window (0.2: one re-send per five requests)."""
    floor_per_s: float = 10.0
    """Re-sends per second allowed whatever the traffic, so a quiet process still retries (tower's ``min_per_sec``)."""
    window_s: float = 10.0
    """How far back requests and re-sends are counted (tower's ``ttl``)."""

    def __post_init__(self) -> None:
        if self.share < 0 or self.floor_per_s < 0 or self.window_s <= 0:
            raise ValueError(
                f"RetryQuota needs share >= 0, floor_per_s >= 0 and window_s > 0, got share={self.share}, "
                f"floor_per_s={self.floor_per_s}, window_s={self.window_s}"
            )


def retry_quota_allows(quota: RetryQuota, *, requests: int, retries: int) -> bool:
    """Whether one more re-send fits, given the requests and re-sends of the window: re-sends stay within
    ``floor_per_s * window_s + share * requests``."""
    return retries + 1 <= quota.floor_per_s * quota.window_s + quota.share * requests
