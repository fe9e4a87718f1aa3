"""The manifest: an HTTP API described as data.

A manifest is JSON. It is decoded into the msgspec Structs below and validated once, at load. Every problem is
collected and raised together in one :class:`ManifestError` whose lines name the JSON path of the offending field
(``endpoints.asample.retry: unknown policy 'fast'``), so a bad manifest never surfaces as a traceback from deep
inside a layer.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import msgspec

from pristine_transport.errors import ManifestError, ManifestProblem

__all__ = [
    "BackpressureSpec",
    "BaseUrlSpec",
    "EndpointDialectSpec",
    "EndpointFutureSpec",
    "EndpointSpec",
    "EventsSpec",
    "FailureSpec",
    "FuturePollHeaders",
    "FuturesSpec",
    "HeaderSource",
    "IdempotencySpec",
    "LoggingSpec",
    "Manifest",
    "ManifestError",
    "ManifestProblem",
    "MatchSpec",
    "MetadataOnlySpec",
    "PollBackoffSpec",
    "PollStatusesSpec",
    "PoolSpec",
    "RetryOverride",
    "RetryHeadersSpec",
    "RetryPolicySpec",
    "RetryRuleSpec",
    "ResubmitSpec",
    "ResultFormatSpec",
    "SessionSpec",
    "TransportSpec",
    "load_manifest",
]

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
PlatformValue = Literal["os", "arch", "runtime", "runtime_version", "async_library"]
RetryKind = Literal["standard", "progress", "sampling"]


class _Spec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class BaseUrlSpec(_Spec):
    default: str
    env: str | None = None
    """Environment variable that overrides ``default``; an empty value counts as unset."""


class HeaderSource(_Spec):
    """Where one header's value comes from. Precedence: ``config`` > ``env`` > ``value`` (explicit > env > default).

    ``value`` may hold ``{key}`` placeholders, filled from the config mapping given to ``build_transport``.
    ``platform`` computes a runtime fact (OS, architecture, Python runtime, async library).
    """

    value: str | None = None
    env: str | None = None
    config: str | None = None
    platform: PlatformValue | None = None
    secret: bool = False
    required: bool = False
    must_start_with: str | None = None


class IdempotencySpec(_Spec):
    header: str = "X-Idempotency-Key"
    prefix: str = ""


class RetryHeadersSpec(_Spec):
    """Wire names of the retry conventions (Stainless SDKs' by default); ``None`` turns one off."""

    attempt: str | None = "x-stainless-retry-count"
    """Request header with the re-sends taken so far (0, 1, …)."""
    read_timeout: str | None = "x-stainless-read-timeout"
    """Request header with the read timeout of the attempt, in seconds."""
    should_retry: str | None = "x-should-retry"
    """Response header by which the server says ``true``/``false`` to a retry, overriding the status rules."""


class PoolSpec(_Spec):
    """Admission limits shared by every endpoint of a pool. ``None`` means unlimited."""

    max_concurrency: int | None = None
    throttled_concurrency: int | None = None
    """Extra count limit that applies only while the pool's backoff window is recent."""
    max_bytes: int | None = None
    """Byte budget; a request may overshoot it once, later ones wait while it is negative."""
    backoff_byte_multiplier: int = 1
    """Bytes are counted this many times while the backoff window is recent."""
    recent_backoff_s: float = 10.0
    """How long after a backoff deadline the window still counts as recent."""


class RetryRuleSpec(_Spec):
    """An answer the retry layer waits out on terms of its own, instead of the policy's status rules: the server
    saying "not yet" (something still being built) or "on hold" (an account paused). A policy's rules are checked
    first (before the server's retry header and ``retry_statuses``) on every non-2xx answer, also under a policy
    that re-sends nothing else (``max_retries`` 0).

    A rule matches an answer whose status is in ``statuses`` and, when set, whose body contains ``body_contains``
    and has ``body_field``'s value at its top level (a body left unread, as a stream's, matches neither). It waits
    ``wait_s`` (null: the policy's backoff, the server's Retry-After included) and sends the request again, until
    the request has had ``max_attempts`` matching answers (requests in all while the rule matches) or the rule's
    episode has lasted ``max_duration_s``; then the matching answer is final. A wait counts as progress for the
    no-progress deadline (a live server asked for it) and not against the policy's ``max_retries``.

    An episode is one stretch of matching answers, shared by every request whose retry layer shares the rule's
    state: it begins at its first match and is over once it has not been noted for ``episode_gap_s`` (noted: a
    warning, at most one per ``log_interval_s``; for a rule without ``log``, every wait)."""

    statuses: list[int]
    body_contains: str | None = None
    body_field: MatchSpec | None = None
    wait_s: float | None = None
    max_attempts: int | None = None
    max_duration_s: float | None = None
    episode_gap_s: float = 300.0
    log: str | None = None
    """What the WARNING says while the rule waits (null: no warning, only the INFO line of every re-send)."""
    log_interval_s: float = 0.0
    """At most one warning per this many seconds of an episode (0: every wait)."""


class RetryPolicySpec(_Spec):
    """``standard``: capped exponential backoff with jitter in [1-jitter, 1], at most ``max_retries`` re-sends.
    ``progress``: symmetric jitter ±jitter, unlimited re-sends (``max_retries`` null) until no request of the
    policy has made progress for ``progress_timeout_s`` (one progress tracker shared by the policy's endpoints).
    ``sampling`` is the name ``progress`` had first (the official SDK's sampler uses it), still read as the same.
    ``rules``: answers waited out on their own terms (:class:`RetryRuleSpec`), by name; ``shared_rules``: names of
    the manifest's ``retry_rules`` the policy has too (written once, used by several policies and endpoints; an own
    rule of the same name wins). :meth:`Manifest.retry_policy_for` gives a policy with both in ``rules``."""

    kind: RetryKind = "standard"
    max_retries: int | None = 10
    initial_delay_s: float = 0.5
    max_delay_s: float = 10.0
    jitter: float = 0.25
    retry_statuses: list[int] = msgspec.field(default_factory=lambda: [408, 409, 429])
    retry_server_errors: bool = True
    retry_connection_errors: bool = True
    respect_retry_after: bool = True
    max_retry_after_s: float = 60.0
    progress_timeout_s: float | None = None
    max_in_flight: int | None = None
    """Concurrent logical requests admitted into the policy at once (null: unlimited)."""
    rules: dict[str, RetryRuleSpec] = msgspec.field(default_factory=dict)
    shared_rules: list[str] = msgspec.field(default_factory=list)


class RetryOverride(_Spec):
    """A named policy with some fields replaced, e.g. ``{"policy": "standard", "max_retries": 0}``. Its ``rules``
    and ``shared_rules`` are added to the policy's (one of the same name replaced; null in ``rules`` removes it),
    not put in their place."""

    policy: str
    kind: RetryKind | msgspec.UnsetType = msgspec.UNSET
    max_retries: int | None | msgspec.UnsetType = msgspec.UNSET
    initial_delay_s: float | msgspec.UnsetType = msgspec.UNSET
    max_delay_s: float | msgspec.UnsetType = msgspec.UNSET
    jitter: float | msgspec.UnsetType = msgspec.UNSET
    retry_statuses: list[int] | msgspec.UnsetType = msgspec.UNSET
    retry_server_errors: bool | msgspec.UnsetType = msgspec.UNSET
    retry_connection_errors: bool | msgspec.UnsetType = msgspec.UNSET
    respect_retry_after: bool | msgspec.UnsetType = msgspec.UNSET
    max_retry_after_s: float | msgspec.UnsetType = msgspec.UNSET
    progress_timeout_s: float | None | msgspec.UnsetType = msgspec.UNSET
    max_in_flight: int | None | msgspec.UnsetType = msgspec.UNSET
    rules: dict[str, RetryRuleSpec | None] | msgspec.UnsetType = msgspec.UNSET
    shared_rules: list[str] | msgspec.UnsetType = msgspec.UNSET


class BackpressureSpec(_Spec):
    """Server-signalled backpressure: the header announces that the client backs off on ``status``; the
    backoff lasts ``small_backoff_s`` for requests up to ``small_request_bytes``, else ``large_backoff_s``."""

    header: str
    value: str = "1"
    status: int = 429
    small_request_bytes: int = 128 * 1024
    small_backoff_s: float = 1.0
    large_backoff_s: float = 5.0


class EndpointFutureSpec(_Spec):
    """The endpoint answers with a future handle, resolved through the manifest's ``futures`` block."""

    request_type: str
    """Sent in the poll's request-type header (e.g. ``Sample``)."""
    result: str
    """Name of the result type; the SDK on top maps names to its own types."""
    resubmit_on_expiry: ResubmitSpec | None = None
    """When the future's poll answers the ``futures`` block's ``expiry_status`` (the result is gone), the request is
    sent again as a new one, as this says; null: the expiry is the caller's error. The SDK that submits applies it."""


class ResubmitSpec(_Spec):
    """How an expired future's request is sent again: at most ``max_resubmits`` times, the n-th after
    ``initial_delay_s * 2**n`` seconds (no cap beyond the count)."""

    max_resubmits: int = 5
    initial_delay_s: float = 0.5


class ResultFormatSpec(_Spec):
    """A format a future's result may be asked for in (a poll's ``Accept``) and arrive in (its ``Content-Type``).

    ``serializer`` names a result codec: ``json`` is built in; any other name is a codec the SDK on top registers
    for ``message`` (what it decodes, e.g. a protobuf message's full name)."""

    content_type: str
    serializer: str = "json"
    message: str | None = None


class EndpointDialectSpec(_Spec):
    """How the endpoint's request travels in one named dialect of the API (a version of its wire format).

    ``serializer`` names a body codec: ``json`` is built in; any other name (e.g. ``protobuf``) is a codec the SDK
    on top registers for ``message`` (what it encodes, e.g. a protobuf message's full name)."""

    endpoint: str | None = None
    """Send to this endpoint instead: the dialect folded this one into it."""
    serializer: str = "json"
    message: str | None = None
    content_type: str | None = None
    """The body's ``Content-Type``; required for any serializer but ``json``."""
    result_formats: list[ResultFormatSpec] = msgspec.field(default_factory=list)
    """The formats a poll of this endpoint's future asks for, in that order (``Accept``); empty: JSON as usual. A
    JSON answer is still read (try-again, failure and metadata-only replies are JSON in every dialect)."""


class EndpointSpec(_Spec):
    method: HttpMethod
    path: str
    pool: str | None = None
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    retry: str | RetryOverride | None = None
    """Policy name, inline override, or null for the manifest's ``default_retry``."""
    idempotency: bool | None = None
    """Null: on for every method but GET/HEAD/OPTIONS."""
    backpressure: BackpressureSpec | None = None
    queue_state: bool = False
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    response: Literal["parsed", "raw", "stream"] = "parsed"
    serializer: Literal["json", "multipart", "raw", "none"] = "json"
    size_estimator: str | None = None
    follow_redirects: bool = False
    query_array_format: Literal["comma", "repeat", "brackets"] = "comma"
    future: EndpointFutureSpec | None = None
    max_response_bytes: int | None = 256 * 1024 * 1024
    """Largest response body accepted, counted after decompression (default 256 MiB); null: unlimited (for
    streamed downloads to disk). Enforced while reading by ``pristine_transport.boundary``."""
    max_response_header_bytes: int | None = 64 * 1024
    """Largest response header block accepted (default 64 KiB); null: unlimited."""
    dialects: dict[str, EndpointDialectSpec] = msgspec.field(default_factory=dict)
    """Per dialect name, how the request is sent there when it differs from this spec (which is every other
    dialect's)."""


class MatchSpec(_Spec):
    field: str
    value: str


class FailureSpec(_Spec):
    field: str = "error"
    category_field: str = "category"
    rate_limit_patterns: list[str] = msgspec.field(default_factory=list)
    """Case-insensitive substrings of a failure message that mean a rate or concurrency limit was hit."""
    capacity_patterns: list[str] = msgspec.field(default_factory=list)
    """Case-insensitive substrings of a failure message that mean the service is out of capacity."""
    cancelled_patterns: list[str] = msgspec.field(default_factory=list)
    """Case-insensitive substrings of a failure message that mean the request was cancelled at the client's
    request (a cancel endpoint was called for it), so its work was abandoned rather than failed."""


class MetadataOnlySpec(_Spec):
    """A 2xx body announcing that the result is ready but large: ``{field: value, size_field: <bytes>}``."""

    field: str
    value: str
    size_field: str
    budget_bytes: int = 5 * 1024 * 1024
    """Response-bytes budget held from a metadata-only reply until the future resolves."""


class FuturePollHeaders(_Spec):
    iteration: str | None = None
    request_type: str | None = None
    roundtrip: str | None = None


class PollBackoffSpec(_Spec):
    """Pacing after a poll that ended in try-again / 408 / 5xx. A poll the server held open for at least
    ``held_poll_s`` is re-sent at once; a fast one after ``min(initial_s * 2**n, max_s)`` with ±``jitter``."""

    initial_s: float = 0.05
    max_s: float = 1.0
    jitter: float = 0.25
    held_poll_s: float = 1.0
    connection_error_max_s: float = 30.0


class PollStatusesSpec(_Spec):
    """What a poll's HTTP status means before its body is read (docs/wire.md §2.2). A 2xx is read by its body (a
    result, a try-again, a failure); the futures block's ``expiry_status`` ends the future as expired; any status
    named nowhere ends it as fatal. Each status has one meaning: naming it twice is a manifest error."""

    shed: list[int] = msgspec.field(default_factory=lambda: [429])
    """The server sheds polls: wait as after a connection failure (whole seconds, doubling up to the backoff's
    ``connection_error_max_s``), then poll again."""
    server_errors_from: int | None = 500
    """This status and every one above it: a server error, not ready yet (paced like a quick try-again); null: no
    status is."""
    not_yet: list[int] = msgspec.field(default_factory=lambda: [408])
    """Not ready yet. A body naming the futures block's ``queue_state_field`` makes it a live server's "queued"
    (progress, for the no-progress deadline); without one it says no more than a timeout."""
    empty_bad_request: list[int] = msgspec.field(default_factory=lambda: [400])
    """With a body that says nothing (empty, or JSON whose every value is empty): a proxy's rejection, polled again
    up to the futures block's ``bad_request_retries`` times in a row. With a body that says something: fatal."""


class FuturesSpec(_Spec):
    retrieve_endpoint: str
    request_id_field: str = "request_id"
    allow_metadata_only_field: str | None = None
    """Poll-body flag telling the server a metadata-only reply is welcome (true until one arrives)."""
    try_again: MatchSpec | None = None
    """A 2xx body that means "not ready yet, poll again"; without it only 408 and 5xx mean that."""
    queue_state_field: str = "queue_state"
    queue_state_reason_field: str = "queue_state_reason"
    queue_states: list[str] = msgspec.field(default_factory=list)
    """The queue states the API reports (lowercase); any other value is reported as ``unknown``. Empty: every
    string value is reported, lowercased. Their meaning is the SDK's."""
    failure: FailureSpec = msgspec.field(default_factory=FailureSpec)
    metadata_only: MetadataOnlySpec | None = None
    expiry_status: int = 410
    bad_request_retries: int = 3
    """Empty-bodied bad requests (``poll_statuses.empty_bad_request``) in a row polled again before the future
    fails."""
    poll_statuses: PollStatusesSpec = msgspec.field(default_factory=PollStatusesSpec)
    poll_headers: FuturePollHeaders = msgspec.field(default_factory=FuturePollHeaders)
    backoff: PollBackoffSpec = msgspec.field(default_factory=PollBackoffSpec)
    warn_after_s: float | None = 300.0
    """A future still unresolved after this long is reported with a WARNING (then after twice as long, and so on),
    so a stuck request is visible long before any deadline; null turns the warnings off."""


class SessionSpec(_Spec):
    create_endpoint: str
    heartbeat_endpoint: str
    end_endpoint: str | None = None
    id_field: str = "session_id"
    interval_s: float = 10.0
    warning_after_s: float = 120.0
    stop_on_status: int | None = None
    """A heartbeat answered with this status ends the loop (the session is gone)."""


class EventsSpec(_Spec):
    endpoint: str
    batch_size: int = 100
    flush_interval_s: float = 10.0
    queue_size: int = 10_000
    flush_timeout_s: float = 30.0
    env_toggle: str | None = None
    failed_batch_retries: int = 3
    """A failed batch is re-sent this many times (1 s apart, doubling) and then dropped with a warning."""


class TransportSpec(_Spec):
    """The default base transport (callers may bring their own). ``None`` limits mean unlimited.

    ``httpx``: httpx's own transport, HTTP/2 by ALPN when ``http2``. ``aiohttp``: aiohttp under httpx (the
    ``httpx-aiohttp`` package), HTTP/1.1 only, but its C parser costs far less client CPU per request.
    ``pyqwest``: reqwest/hyper (Rust) under httpx (the ``pyqwest`` package, official SDK 0.38's choice), HTTP/2 by
    ALPN; the TLS context is its own (system roots), not ``ssl``'s."""

    backend: Literal["httpx", "aiohttp", "pyqwest"] = "httpx"
    backend_env: str | None = None
    """Environment variable that overrides ``backend`` (``httpx``, ``aiohttp`` or ``pyqwest``)."""
    http2: bool = True
    max_connections: int | None = 1000
    max_keepalive_connections: int | None = 20
    keepalive_expiry_s: float | None = 5.0


class LoggingSpec(_Spec):
    logger: str
    env: str | None = None


class Manifest(_Spec):
    name: str
    base_url: BaseUrlSpec
    headers: dict[str, HeaderSource] = msgspec.field(default_factory=dict)
    idempotency: IdempotencySpec = msgspec.field(default_factory=IdempotencySpec)
    retry_headers: RetryHeadersSpec = msgspec.field(default_factory=RetryHeadersSpec)
    pools: dict[str, PoolSpec] = msgspec.field(default_factory=dict)
    retry_policies: dict[str, RetryPolicySpec] = msgspec.field(default_factory=dict)
    retry_rules: dict[str, RetryRuleSpec] = msgspec.field(default_factory=dict)
    """Rules written once, named by policies' and endpoints' ``shared_rules``. A program that drops one from this
    mapping (``msgspec.structs.replace``) turns it off everywhere; a name missing at load is an error."""
    default_retry: str | None = None
    endpoints: dict[str, EndpointSpec] = msgspec.field(default_factory=dict)
    futures: FuturesSpec | None = None
    session: SessionSpec | None = None
    events: EventsSpec | None = None
    logging: LoggingSpec | None = None
    transport: TransportSpec = msgspec.field(default_factory=TransportSpec)

    def endpoint(self, name: str) -> EndpointSpec:
        try:
            return self.endpoints[name]
        except KeyError:
            raise KeyError(f"manifest {self.name!r} has no endpoint {name!r}") from None

    def retry_policy_name_for(self, name: str) -> str | None:
        """The named policy an endpoint's retry builds on (its own, else ``default_retry``), or None."""
        retry = self.endpoint(name).retry
        if retry is None:
            return self.default_retry
        return retry.policy if isinstance(retry, RetryOverride) else retry

    def retry_policy_for(self, name: str) -> RetryPolicySpec | None:
        """The effective retry policy of an endpoint (override applied, shared rules in ``rules``), or None when it
        has none."""
        policy_name = self.retry_policy_name_for(name)
        if policy_name is None:
            return None
        base = self.retry_policies[policy_name]
        retry = self.endpoint(name).retry
        override = retry if isinstance(retry, RetryOverride) else None
        if override is None and not base.shared_rules:
            return base
        rules: dict[str, RetryRuleSpec | None] = {**self._shared(base.shared_rules), **base.rules}
        changes: dict[str, Any] = {}
        if override is not None:
            changes = {f: getattr(override, f) for f in override.__struct_fields__}
            del changes["policy"], changes["rules"], changes["shared_rules"]
            if isinstance(override.shared_rules, list):
                rules.update(self._shared(override.shared_rules))
            if isinstance(override.rules, dict):
                rules.update(override.rules)
        changes["rules"] = {rule: spec for rule, spec in rules.items() if spec is not None}
        changes["shared_rules"] = []
        return msgspec.structs.replace(base, **{k: v for k, v in changes.items() if v is not msgspec.UNSET})

    def _shared(self, names: list[str]) -> dict[str, RetryRuleSpec]:
        return {name: self.retry_rules[name] for name in names if name in self.retry_rules}


_PATH_PARAM = re.compile(r"\{([^{}]*)\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def load_manifest(source: str | Path | bytes | Mapping[str, Any]) -> Manifest:
    """Load and validate a manifest from a path, JSON bytes or an already-parsed mapping."""
    label = "manifest"
    if isinstance(source, (str, Path)):
        label = str(source)
        try:
            raw_bytes = Path(source).read_bytes()
        except OSError as exc:
            raise ManifestError([f"cannot read file: {exc.strerror}"], label) from None
        source = raw_bytes
    if isinstance(source, bytes):
        try:
            raw = msgspec.json.decode(source)
        except msgspec.DecodeError as exc:
            raise ManifestError([f"not valid JSON: {exc}"], label) from None
    else:
        raw = dict(source)
    if not isinstance(raw, dict):
        raise ManifestError(["$: expected a JSON object"], label)
    manifest, problems, dropped = _decode_collecting(raw)
    if manifest is not None:
        problems += _cross_check(manifest, dropped)
    if problems:
        raise ManifestError([ManifestProblem(p, _hint(p, raw)) for p in problems], label)
    assert manifest is not None
    return manifest


_REFERENCES = (("policy", "retry_policies"), ("endpoint", "endpoints"), ("pool", "pools"), ("rule", "retry_rules"))
_STEP = re.compile(r"([^.\[\]]+)((?:\[[^\]]*\])*)")


def _hint(problem: str, raw: Mapping[str, Any]) -> str | None:
    """How to fix ``problem``: for an unknown key, the keys known at that place; for a reference to an undefined
    name, the names defined."""
    path, _, detail = problem.partition(": ")
    if detail == "unknown key":
        known = _known_keys([step.group(0) for step in _STEP.finditer(path)][:-1])
        return f"known keys here: {', '.join(sorted(known))}" if known else None
    for what, section in _REFERENCES:
        if detail.startswith(f"unknown {what} "):
            defined = raw.get(section)
            names = sorted(defined) if isinstance(defined, dict) else []
            return f"{section} defines {', '.join(names)}" if names else f"{section} defines none"
    return None


def _known_keys(steps: list[str]) -> list[str]:
    """The field names of the Struct at ``steps`` (a manifest path split at its dots), or none."""
    spec_type: Any = Manifest
    for step in steps:
        match = _STEP.fullmatch(step)
        if match is None:
            return []
        spec_type = _struct_arm(spec_type)
        if isinstance(spec_type, type) and issubclass(spec_type, msgspec.Struct):
            fields = {f.name: f.type for f in msgspec.structs.fields(spec_type)}
            if match.group(1) not in fields:
                return []
            spec_type = fields[match.group(1)]
        elif get_origin(spec_type) is dict:
            spec_type = get_args(spec_type)[1]
        else:
            return []
        for _ in range(match.group(2).count("[")):  # an entry of a mapping or list: its value type
            container = _struct_arm(spec_type)
            args = get_args(container)
            spec_type = args[-1] if get_origin(container) in (dict, list) else None
    spec_type = _struct_arm(spec_type)
    if isinstance(spec_type, type) and issubclass(spec_type, msgspec.Struct):
        return [f.name for f in msgspec.structs.fields(spec_type)]
    return []


def _struct_arm(spec_type: Any) -> Any:
    """Of a union (``X | None``, ``str | RetryOverride``), its Struct, mapping or list arm; else the type."""
    if get_origin(spec_type) in (Union, UnionType):
        for arm in get_args(spec_type):
            if get_origin(arm) in (dict, list) or (isinstance(arm, type) and issubclass(arm, msgspec.Struct)):
                return arm
    return spec_type


def _decode_collecting(raw: dict[str, Any]) -> tuple[Manifest | None, list[str], dict[str, set[str]]]:
    """Decode field by field, and the named entries of mapping fields one by one, so that every broken entry is
    reported, not only the first. What can be repaired (an unknown key dropped, a bad optional field left at its
    default, a broken entry left out) is, so the semantic checks still run over the rest; the names of entries
    left out are returned, so a reference to one of them is not reported a second time as unknown."""
    fields = msgspec.structs.fields(Manifest)
    known = {field.name for field in fields}
    problems = [f"{key}: unknown key" for key in raw if key not in known]
    repaired: dict[str, Any] = {}
    dropped: dict[str, set[str]] = {}
    buildable = True
    for field in fields:
        if field.name not in raw:
            if field.required:
                problems.append(f"{field.name}: required")
                buildable = False
            continue
        value = raw[field.name]
        if get_origin(field.type) is not dict:
            fixed, found = _repaired(value, field.type, field.name)
            problems += found
            if fixed is not _BROKEN:
                repaired[field.name] = fixed
            elif field.required:
                buildable = False
        elif not isinstance(value, dict):
            problems.append(f"{field.name}: expected an object")
        else:
            entry_type = get_args(field.type)[1]
            entries: dict[str, Any] = {}
            for entry_name, entry in value.items():
                fixed, found = _repaired(entry, entry_type, f"{field.name}.{entry_name}")
                problems += found
                if fixed is _BROKEN:
                    dropped.setdefault(field.name, set()).add(entry_name)
                else:
                    entries[entry_name] = fixed
            repaired[field.name] = entries
    if not buildable:
        return None, problems, dropped
    return msgspec.convert(repaired, Manifest), problems, dropped


_BROKEN: Any = object()
"""What :func:`_repaired` returns for a value it could not repair."""
_MAX_REPAIRS = 50
_PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _repaired(value: Any, spec_type: Any, path: str) -> tuple[Any, list[str]]:
    """``value`` with every problem msgspec finds removed (one at a time: it reports the first), and the problems.

    A field with a problem is dropped (its default applies); an object missing a required field, or a problem that
    cannot be located (inside a mapping msgspec reports as ``[...]``), drops the object holding it. A required
    field missing only because a problem removed it is not reported again."""
    problems: list[str] = []
    value = copy.deepcopy(value)
    removed: set[tuple[str | int, ...]] = set()
    for _ in range(_MAX_REPAIRS):
        try:
            msgspec.convert(value, spec_type)
        except msgspec.ValidationError as exc:
            message = str(exc)
            detail, _, where = message.rpartition(" - at `")
            # msgspec names no location for a problem of the object itself
            detail, steps = (detail, _location(where.rstrip("`"))) if detail else (message, ())
            field_problem = _FIELD_PROBLEM.match(detail)
            if steps is not None and field_problem and field_problem.group(1) == "missing required":
                consequence = (*steps, field_problem.group(2)) in removed
                if not consequence:
                    problems.append(_format_validation_error(path, message))
                target = steps  # the object that lacks the field goes
            else:
                problems.append(_format_validation_error(path, message))
                target = (*steps, field_problem.group(2)) if steps is not None and field_problem else steps
            if not target or not _remove(value, target):
                return _BROKEN, problems
            removed.add(target)
        else:
            return value, problems
    return _BROKEN, problems


def _location(where: str) -> tuple[str | int, ...] | None:
    """msgspec's ``$.a[0].b`` as steps; None when it cannot be followed (``[...]`` stands for an unnamed key)."""
    if not where.startswith("$"):
        return None
    rest, steps = where[1:], []
    while rest:
        step = _PATH_STEP.match(rest)
        if step is None:
            return None
        steps.append(step.group(1) if step.group(1) is not None else int(step.group(2)))
        rest = rest[step.end() :]
    return tuple(steps)


def _remove(value: Any, steps: tuple[str | int, ...]) -> bool:
    """Remove the key (or list item) at ``steps``; False when there is nothing to remove."""
    for step in steps[:-1]:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return False
    try:
        del value[steps[-1]]
    except (KeyError, IndexError, TypeError):
        return False
    return True


_FIELD_PROBLEM = re.compile(r"Object (contains unknown|missing required) field `(.+)`")


def _format_validation_error(prefix: str, message: str) -> str:
    # msgspec reports "... - at `$.a.b`" / "Object contains unknown field `x` - at `$.a`"
    detail, _, where = message.rpartition(" - at `")
    if not detail:
        detail, where = message, "$`"
    where = where.rstrip("`")
    sub = where[1:].lstrip(".") if where.startswith("$") else where
    field_problem = _FIELD_PROBLEM.match(detail)
    if field_problem:
        sub = ".".join(p for p in (sub, field_problem.group(2)) if p)
        detail = "unknown key" if field_problem.group(1) == "contains unknown" else "required"
    path = ".".join(p for p in (prefix, sub) if p)
    return f"{path or '$'}: {detail}"


def _cross_check(m: Manifest, dropped: Mapping[str, set[str]] | None = None) -> list[str]:
    """The semantic problems. Names in ``dropped`` (entries whose own problems were reported) count as defined."""
    problems: list[str] = []
    dropped = dropped or {}
    known_policies = m.retry_policies.keys() | dropped.get("retry_policies", set())
    known_endpoints = m.endpoints.keys() | dropped.get("endpoints", set())
    known_pools = m.pools.keys() | dropped.get("pools", set())

    def policy_exists(name: str, where: str) -> None:
        if name not in known_policies:
            problems.append(f"{where}: unknown policy {name!r}")

    def endpoint_exists(name: str | None, where: str) -> None:
        if name is not None and name not in known_endpoints:
            problems.append(f"{where}: unknown endpoint {name!r}")

    if not m.base_url.default.startswith(("http://", "https://")):
        problems.append(f"base_url.default: must be an http:// or https:// URL, got {m.base_url.default!r}")
    if m.default_retry is not None:
        policy_exists(m.default_retry, "default_retry")
    for header, src in m.headers.items():
        if src.value is None and src.env is None and src.config is None and src.platform is None:
            problems.append(f"headers.{header}: needs at least one of value, env, config, platform")
    for name, pool in m.pools.items():
        for field in ("max_concurrency", "throttled_concurrency", "max_bytes"):
            limit = getattr(pool, field)
            if limit is not None and limit <= 0:
                problems.append(f"pools.{name}.{field}: must be positive or null, got {limit}")
        if pool.backoff_byte_multiplier < 1:
            problems.append(f"pools.{name}.backoff_byte_multiplier: must be >= 1")
    for name, rule in m.retry_rules.items():
        problems += _check_rule(rule, f"retry_rules.{name}")

    def shared_rules_exist(names: list[str] | msgspec.UnsetType, where: str) -> None:
        known = m.retry_rules.keys() | dropped.get("retry_rules", set())
        for index, rule in enumerate(names or ()):
            if rule not in known:
                problems.append(f"{where}.shared_rules[{index}]: unknown rule {rule!r}")

    for name, policy in m.retry_policies.items():
        problems += _check_policy(policy, f"retry_policies.{name}")
        shared_rules_exist(policy.shared_rules, f"retry_policies.{name}")
    for name, ep in m.endpoints.items():
        where = f"endpoints.{name}"
        if not ep.path.startswith("/"):
            problems.append(f"{where}.path: must start with '/', got {ep.path!r}")
        for param in _PATH_PARAM.findall(ep.path):
            if not _IDENTIFIER.match(param):
                problems.append(f"{where}.path: bad parameter name {{{param}}}")
        if ep.pool is not None and ep.pool not in known_pools:
            problems.append(f"{where}.pool: unknown pool {ep.pool!r}")
        if isinstance(ep.retry, str):
            policy_exists(ep.retry, f"{where}.retry")
        elif isinstance(ep.retry, RetryOverride):
            policy_exists(ep.retry.policy, f"{where}.retry.policy")
            shared_rules_exist(ep.retry.shared_rules, f"{where}.retry")
            if ep.retry.policy in m.retry_policies:
                problems += _check_policy(m.retry_policy_for(name), f"{where}.retry")  # type: ignore[arg-type]
        if ep.timeout_s <= 0:
            problems.append(f"{where}.timeout_s: must be positive")
        if ep.future is not None and m.futures is None:
            problems.append(f"{where}.future: the manifest has no futures block")
        resubmit = ep.future.resubmit_on_expiry if ep.future is not None else None
        if resubmit is not None and (resubmit.max_resubmits < 0 or resubmit.initial_delay_s < 0):
            problems.append(f"{where}.future.resubmit_on_expiry: max_resubmits and initial_delay_s must be 0 or more")
        for dialect, spec in ep.dialects.items():
            endpoint_exists(spec.endpoint, f"{where}.dialects.{dialect}.endpoint")
            if spec.serializer != "json" and (spec.content_type is None or spec.message is None):
                problems.append(f"{where}.dialects.{dialect}: serializer {spec.serializer!r} needs message and content_type")
            for index, result in enumerate(spec.result_formats):
                if result.serializer != "json" and result.message is None:
                    problems.append(
                        f"{where}.dialects.{dialect}.result_formats[{index}]: serializer {result.serializer!r} needs message"
                    )
            if spec.result_formats and ep.future is None:
                problems.append(f"{where}.dialects.{dialect}.result_formats: the endpoint answers with no future")
    if m.futures is not None:
        endpoint_exists(m.futures.retrieve_endpoint, "futures.retrieve_endpoint")
        problems += _check_poll_statuses(m.futures)
    if m.session is not None:
        endpoint_exists(m.session.create_endpoint, "session.create_endpoint")
        endpoint_exists(m.session.heartbeat_endpoint, "session.heartbeat_endpoint")
        endpoint_exists(m.session.end_endpoint, "session.end_endpoint")
        if m.session.interval_s <= 0:
            problems.append("session.interval_s: must be positive")
    if m.events is not None:
        endpoint_exists(m.events.endpoint, "events.endpoint")
        if m.events.batch_size <= 0 or m.events.queue_size <= 0:
            problems.append("events: batch_size and queue_size must be positive")
    return problems


def _check_poll_statuses(futures: FuturesSpec) -> list[str]:
    """Every poll status an HTTP status, none a 2xx (a 2xx is read by its body), none with two meanings."""
    problems: list[str] = []
    statuses = futures.poll_statuses
    where = "futures.poll_statuses"
    range_start = statuses.server_errors_from
    if range_start is not None and not 300 <= range_start <= 599:
        problems.append(f"{where}.server_errors_from: must be within 300-599 or null, got {range_start}")
        range_start = None
    listed = [
        (f"{where}.{name}[{index}]", status)
        for name in ("shed", "not_yet", "empty_bad_request")
        for index, status in enumerate(getattr(statuses, name))
    ]
    meaning_of: dict[int, str] = {}
    for path, status in [*listed, ("futures.expiry_status", futures.expiry_status)]:
        if not 100 <= status <= 599:
            problems.append(f"{path}: must be an HTTP status (100-599), got {status}")
        elif 200 <= status < 300:
            problems.append(f"{path}: {status} is a success; a 2xx poll answer is read by its body")
        elif range_start is not None and status >= range_start:
            problems.append(f"{path}: {status} is already a server error (server_errors_from {range_start})")
        elif status in meaning_of:
            problems.append(f"{path}: {status} is already named in {meaning_of[status]}")
        else:
            meaning_of[status] = path.rpartition("[")[0] or path
    if futures.bad_request_retries < 0:
        problems.append(f"futures.bad_request_retries: must be 0 or more, got {futures.bad_request_retries}")
    return problems


def _check_policy(p: RetryPolicySpec, where: str) -> list[str]:
    problems = []
    if p.max_retries is not None and p.max_retries < 0:
        problems.append(f"{where}.max_retries: must be >= 0 or null")
    if p.max_retries is None and p.progress_timeout_s is None:
        problems.append(f"{where}.max_retries: null (unlimited) needs progress_timeout_s")
    if not 0 <= p.jitter <= 1:
        problems.append(f"{where}.jitter: must be within [0, 1], got {p.jitter}")
    if p.initial_delay_s < 0 or p.max_delay_s < p.initial_delay_s:
        problems.append(f"{where}.max_delay_s: must be >= initial_delay_s >= 0")
    if p.max_in_flight is not None and p.max_in_flight <= 0:
        problems.append(f"{where}.max_in_flight: must be positive or null")
    for name, rule in p.rules.items():
        problems += _check_rule(rule, f"{where}.rules.{name}")
    return problems


def _check_rule(rule: RetryRuleSpec, where: str) -> list[str]:
    problems = []
    if not rule.statuses or any(not 300 <= status <= 599 for status in rule.statuses):
        problems.append(f"{where}.statuses: must list statuses within 300-599, got {rule.statuses}")
    if rule.max_attempts is None and rule.max_duration_s is None:
        problems.append(f"{where}: needs max_attempts or max_duration_s (a rule must end)")
    if rule.max_attempts is not None and rule.max_attempts < 1:
        problems.append(f"{where}.max_attempts: must be >= 1 or null")
    for field in ("wait_s", "max_duration_s"):
        value = getattr(rule, field)
        if value is not None and value < 0:
            problems.append(f"{where}.{field}: must be >= 0 or null, got {value}")
    if rule.log_interval_s < 0 or rule.episode_gap_s <= 0:
        problems.append(f"{where}: log_interval_s must be >= 0 and episode_gap_s positive")
    return problems
