"""The Tinker endpoints of the local server (wire spec §1.2–1.5, §1.7, §2, §4.2, §10.6), typed with ``tinkex.types``.

Both dialects decode into the same request types: 0.16's minimal bodies and 0.38's, which carry ``type`` tags and
every default and omit nulls. 0.38's endpoints do their work here too: a finished session refuses new work (410),
``cancel_future`` resolves a future to a cancellation, ``copy_weights`` makes a checkpoint of a new untrainable run,
external weights are downloadable files, sessions are searchable, custom losses run by id.

Each endpoint is an :class:`Operation`: its route, request type, whether it writes (then the app replays
re-sends instead of running them twice, and ``seq_identity`` says which seq_id it counts in), and a handler.
Write handlers are synchronous so that nothing interleaves between the replay-cache check and the execution.
Future endpoints execute at submission and store the encoded result in the :class:`FutureStore`.
"""

from __future__ import annotations

import hmac
import itertools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, TypeVar

import msgspec
import numpy as np
from msgspec import UNSET

from tinkex import types as t
from tinkex.types import codec

from . import custom_loss_graph, dialect, sequence_rules, tiny_lm
from .admin_endpoints import AdminEndpoints
from .calls import Call, Rejection, Result, answers_404, open_session, refuse_if_finished, reject, session_or_404
from .checkpoint_files import external_weights_files
from .config import ServerConfig
from .dedup import ReplayCache
from .downloads import Downloads
from .faults import FaultKind, Faults
from .futures_store import Category, Failure, FutureRecord, FutureStore
from .jwt_tokens import JwtIssuer
from .ledger import Ledger
from .registry import (
    CheckpointRecord,
    CustomLossRecord,
    NotFound,
    Registry,
    RunRecord,
    SamplerRecord,
    SessionRecord,
    TinkerPath,
    parse_tinker_path,
    split_checkpoint_id,
    utcnow,
)
from .replies import Reply, error_reply, json_reply
from .session_endpoints import AssignSessionProjectRequest, SessionEndpoints, caller_urn
from .write_journal import WriteJournal

__all__ = ["CANCELLED_MESSAGE", "Call", "Operation", "Rejection", "Result", "RouteMatch", "TinkerApi"]

_REQUEST_FAILED: frozenset[FaultKind] = frozenset({"request_failed"})
_POLL_OVERRIDES: frozenset[FaultKind] = frozenset({"try_again", "expire"})
_METADATA_ONLY: frozenset[FaultKind] = frozenset({"metadata_only"})
_ARCHIVE_URL_LIFETIME = timedelta(minutes=15)
_EXTERNAL_URL_LIFETIME = timedelta(hours=1)
_ACCESS_SCOPES = ("owned", "accessible")
_MAX_CONTEXT_LENGTH = 32768
_T = TypeVar("_T")

CANCELLED_MESSAGE = "request {request_id} was cancelled by the client (cancel_future)"
"""What a cancelled future resolves to; tinkex's manifest lists "cancelled by the client" as a cancellation."""


class CancelFutureRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /api/v1/cancel_future`` (the official SDK posts a literal dict)."""

    request_id: str



class OperationFailed(Exception):
    """The operation was accepted but fails: its future resolves to ``{"error", "category"}``."""

    def __init__(self, message: str, category: Category) -> None:
        super().__init__(message)
        self.category: Category = category


Handler = Callable[[Call], "Result | Awaitable[Result]"]


@dataclass(frozen=True)
class Operation:
    endpoint: str
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    request_type: type | None = None
    mutates: bool = False
    seq_identity: Callable[[Any], tuple[str, int] | None] | None = None
    polled_endpoint: Callable[[Any], str | None] | None = None
    """For a poll: the endpoint that created the polled future, so fault rules with ``future_endpoint`` match."""
    accepts_protobuf: bool = False
    """The body may also come as protobuf (the 0.38 dialect's ``forward_backward``); see :mod:`.dialect`."""


@dataclass(frozen=True)
class RouteMatch:
    operation: Operation | None
    params: dict[str, str] = field(default_factory=dict)
    path_known: bool = False


def _train_seq(request: Any) -> tuple[str, int] | None:
    if request.seq_id is None:
        return None
    return (f"train:{request.model_id}", request.seq_id)


def _load_seq(request: t.LoadWeightsRequest) -> tuple[str, int] | None:
    """A create-via-load takes the model slot that ``create_model`` would have taken."""
    if request.session_id is not None:
        return None if request.model_seq_id is None else (f"create_model:{request.session_id}", request.model_seq_id)
    return _train_seq(request)


def _copy_seq(request: t.CopyWeightsRequest) -> tuple[str, int] | None:
    if request.session_id is None or request.model_seq_id is None:
        return None
    return (f"create_model:{request.session_id}", request.model_seq_id)


def _explicit(request: msgspec.Struct, name: str) -> Any:
    """A request field as sent: ``UNSET`` when the body did not carry it (reading the attribute gives its default)."""
    return msgspec.structs.asdict(request).get(name, UNSET)


def _sample_seq(request: t.SampleRequest) -> tuple[str, int] | None:
    if request.sampling_session_id is None or request.seq_id is None:
        return None
    return (f"sample:{request.sampling_session_id}", request.seq_id)


def _datum_input(datum: t.Datum, index: int) -> tiny_lm.DatumInput:
    return tiny_lm.DatumInput(
        tokens=_tokens(datum.model_input, f"data[{index}].model_input"),
        loss_inputs={name: tensor.data for name, tensor in datum.loss_fn_inputs.items()},
    )


def _tokens(model_input: t.ModelInput, where: str) -> list[int]:
    """Text tokens as sent; an image occupies ``expected_tokens`` positions of token 0."""
    tokens: list[int] = []
    for index, chunk in enumerate(model_input.chunks):
        if isinstance(chunk, t.EncodedTextChunk):
            tokens.extend(chunk.tokens)
            continue
        expected = chunk.expected_tokens  # type: ignore[attr-defined]
        if expected is None:
            raise tiny_lm.ModelInputError(f"{where}.chunks[{index}] is an image without expected_tokens")
        tokens.extend([0] * expected)
    return tokens


def _float32(values: list[float]) -> t.TensorData:
    """Values rounded to float32, as a real server's float32 tensors would be."""
    return t.TensorData(data=np.asarray(values, dtype=np.float32).tolist(), dtype="float32", shape=[len(values)])


def _sampling_settings(params: t.SamplingParams, seed: str, vocab_size: int) -> tiny_lm.SamplingSettings:
    """The model's sampling settings from the request's: ``stop=None`` keeps the implicit end-of-sequence stop,
    ``stop=[]`` disables it, token ids replace it, strings add to it."""
    stop = params.stop
    eos = tiny_lm.end_of_sequence(vocab_size)
    implicit = frozenset() if eos is None else frozenset({eos})
    if stop is None:
        stop_tokens, stop_strings = implicit, ()
    elif isinstance(stop, str):
        stop_tokens, stop_strings = implicit, (stop,)
    elif stop and all(type(s) is int for s in stop):
        stop_tokens, stop_strings = frozenset(int(s) for s in stop), ()
    else:
        stop_tokens, stop_strings = (implicit if stop else frozenset()), tuple(str(s) for s in stop)
    return tiny_lm.SamplingSettings(
        max_tokens=tiny_lm.DEFAULT_MAX_TOKENS if params.max_tokens is None else params.max_tokens,
        temperature=params.temperature,
        top_k=params.top_k,
        top_p=params.top_p,
        stop_tokens=stop_tokens,
        stop_strings=stop_strings,
        seed=tiny_lm.name_seed(seed),
    )


class TinkerApi:
    """Holds the server state and answers each endpoint."""

    def __init__(
        self,
        config: ServerConfig,
        registry: Registry,
        futures: FutureStore,
        faults: Faults,
        ledger: Ledger,
        replay: ReplayCache,
        journal: WriteJournal | None = None,
        generation: int = 0,
    ) -> None:
        """``journal`` and ``generation`` (the start number on the state directory) come with a ``state_dir``."""
        self.config = config
        self.journal = journal
        self.registry = registry
        self.futures = futures
        self.faults = faults
        self.ledger = ledger
        self.replay = replay
        self.telemetry_batches: list[Any] = []
        self.downloads = Downloads()
        self.session_endpoints = SessionEndpoints(registry, ledger, self.downloads)
        self.admin_endpoints = AdminEndpoints(registry, futures)
        self._sequence_ids = itertools.count(1)
        self._sequence_prefix = f"{generation}." if generation else ""
        """Sequence ids of a restarted server must not repeat the earlier run's."""
        self.sequence_lengths: dict[str, tuple[int, int]] = {}
        """``sequence_id`` of every sampled sequence -> (prompt length, sampled length), for provenance spans."""
        self.wire_flags = dialect.WireFlags(config.client_config, config.dynamic_config)
        self.jwt = JwtIssuer(config.jwt_lifetime)
        """What the 0.38 config endpoints answer; the dynamic flags may change while the server runs."""
        self.operations = self._operations()
        if config.strict_sequence:
            self.operations = sequence_rules.in_strict_sequence(self.operations, ledger)
        self.vocab_size = config.vocab_size or tiny_lm.DEFAULT_VOCAB_SIZE
        """Token ids the model knows: the offline byte-level encoding's, unless the server was given more."""

    def base_weights(self, base_model: str) -> tiny_lm.BaseWeights:
        """The frozen model behind ``base_model`` (made from its name, shared by its runs and samplers)."""
        return tiny_lm.base_weights(base_model, self.vocab_size)

    def _check_vocabulary(self, model_input: t.ModelInput, where: str) -> None:
        """400 before anything runs when a token id is outside the model's vocabulary (the message names it)."""
        for index, chunk in enumerate(model_input.chunks):
            if isinstance(chunk, t.EncodedTextChunk):
                self._check_token_ids(chunk.tokens, f"{where}.chunks[{index}].tokens")

    def _check_token_ids(self, tokens: Any, where: str) -> None:
        try:
            tiny_lm.check_tokens(tokens, self.vocab_size, where)
        except tiny_lm.TokenOutOfVocabulary as exc:
            raise reject(400, str(exc)) from None

    # routing and auth

    def route(self, method: str, path: str) -> RouteMatch:
        path_known = False
        for operation in self.operations:
            match = operation.pattern.fullmatch(path)
            if match is None:
                continue
            if operation.method == method:
                return RouteMatch(operation, match.groupdict(), True)
            path_known = True
        return RouteMatch(None, {}, path_known)

    def check_api_key(self, key: str | None) -> str | None:
        """What is wrong with the caller's key, or ``None``. Never echoes the key."""
        if not key:
            return "missing X-API-Key header"
        if not key.startswith("tml-"):
            return "X-API-Key must start with 'tml-'"
        expected = self.config.api_key
        if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
            return "X-API-Key is not valid for this server"
        return None

    def expire(self, record: FutureRecord) -> None:
        """The future's result is gone: a re-submission of its write must run again."""
        self.futures.expire(record)
        self.replay.forget_request(record.request_id)
        self.ledger.mark_expired(record.request_id)
        if self.journal is not None:
            self.journal.record_expired(record.request_id)

    def _operations(self) -> list[Operation]:
        def op(endpoint: str, method: str, path: str, handler: Handler, **options: Any) -> Operation:
            pattern = re.compile(re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>[^/]+)", path))
            return Operation(endpoint, method, pattern, handler, **options)

        def rest(endpoint: str, method: str, suffix: str, handler: Handler, **options: Any) -> Operation:
            # checkpoint ids carry a "/" (weights/ckpt-1) and are interpolated unencoded.
            path = "/api/v1/training_runs/(?P<run_id>[^/]+)/checkpoints/(?P<checkpoint_id>[^/]+/[^/]+)" + suffix
            return Operation(endpoint, method, re.compile(path), handler, **options)

        v1 = "/api/v1"
        sessions = self.session_endpoints
        admin = self.admin_endpoints
        return [
            op("healthz", "GET", f"{v1}/healthz", self.healthz),
            op("client_config", "POST", f"{v1}/client/config", self.wire_flags.client_config,
               request_type=dialect.ClientConfigRequest),
            op("auth_token", "POST", f"{v1}/auth/token", self.jwt.auth_token),
            op("client_dynamic_config", "POST", f"{v1}/client/dynamic_config", self.wire_flags.dynamic_config,
               request_type=dialect.ClientConfigRequest),
            op("get_server_capabilities", "GET", f"{v1}/get_server_capabilities", self.get_server_capabilities),
            op("create_session", "POST", f"{v1}/create_session", self.create_session,
               request_type=t.CreateSessionRequest, mutates=True),
            op("session_heartbeat", "POST", f"{v1}/session_heartbeat", self.session_heartbeat,
               request_type=t.SessionHeartbeatRequest),
            op("create_sampling_session", "POST", f"{v1}/create_sampling_session", self.create_sampling_session,
               request_type=t.CreateSamplingSessionRequest, mutates=True,
               seq_identity=lambda r: (f"sampling_session:{r.session_id}", r.sampling_session_seq_id)),
            op("telemetry", "POST", f"{v1}/telemetry", self.telemetry, request_type=t.TelemetrySendRequest),
            op("finish_session", "POST", f"{v1}/sessions/{{session_id}}/finish", sessions.finish_session,
               request_type=t.FinishSessionRequest, mutates=True),
            op("join_sampling_session", "POST", f"{v1}/join_sampling_session", sessions.join_sampling_session,
               request_type=t.JoinSamplingSessionRequest, mutates=True),
            op("create_custom_loss", "POST", f"{v1}/create_custom_loss", self.create_custom_loss,
               request_type=t.CreateCustomLossRequest, mutates=True,
               seq_identity=lambda r: (f"custom_loss:{r.session_id}", r.custom_loss_seq_id)),
            op("create_model", "POST", f"{v1}/create_model", self.create_model,
               request_type=t.CreateModelRequest, mutates=True,
               seq_identity=lambda r: (f"create_model:{r.session_id}", r.model_seq_id)),
            op("get_info", "POST", f"{v1}/get_info", self.get_info, request_type=t.GetInfoRequest),
            op("unload_model", "POST", f"{v1}/unload_model", self.unload_model,
               request_type=t.UnloadModelRequest, mutates=True),
            op("forward", "POST", f"{v1}/forward", self.forward,
               request_type=t.ForwardRequest, mutates=True, seq_identity=_train_seq),
            op("forward_backward", "POST", f"{v1}/forward_backward", self.forward_backward,
               request_type=t.ForwardBackwardRequest, mutates=True, seq_identity=_train_seq, accepts_protobuf=True),
            op("optim_step", "POST", f"{v1}/optim_step", self.optim_step,
               request_type=t.OptimStepRequest, mutates=True, seq_identity=_train_seq),
            op("save_weights", "POST", f"{v1}/save_weights", self.save_weights,
               request_type=t.SaveWeightsRequest, mutates=True, seq_identity=_train_seq),
            op("load_weights", "POST", f"{v1}/load_weights", self.load_weights,
               request_type=t.LoadWeightsRequest, mutates=True, seq_identity=_load_seq),
            op("save_weights_for_sampler", "POST", f"{v1}/save_weights_for_sampler",
               self.save_weights_for_sampler, request_type=t.SaveWeightsForSamplerRequest, mutates=True,
               seq_identity=_train_seq),
            op("save_weights_external", "POST", f"{v1}/save_weights_external", self.save_weights_external,
               request_type=t.SaveWeightsExternalRequest, mutates=True, seq_identity=_train_seq),
            op("copy_weights", "POST", f"{v1}/copy_weights", self.copy_weights,
               request_type=t.CopyWeightsRequest, mutates=True, seq_identity=_copy_seq),
            op("weights_info", "POST", f"{v1}/weights_info", self.weights_info, request_type=t.WeightsInfoRequest),
            op("asample", "POST", f"{v1}/asample", self.asample,
               request_type=t.SampleRequest, mutates=True, seq_identity=_sample_seq),
            op("retrieve_future", "POST", f"{v1}/retrieve_future", self.retrieve_future,
               request_type=t.FutureRetrieveRequest, polled_endpoint=self._polled_endpoint),
            op("cancel_future", "POST", f"{v1}/cancel_future", self.cancel_future,
               request_type=CancelFutureRequest, mutates=True),
            rest("external_weights_urls", "GET", "/external_weights_urls", self.external_weights_urls),
            rest("get_checkpoint_archive_url", "GET", "/archive", self.get_checkpoint_archive_url),
            rest("publish_checkpoint", "POST", "/publish", self.publish_checkpoint, mutates=True),
            rest("unpublish_checkpoint", "DELETE", "/publish", self.unpublish_checkpoint, mutates=True),
            rest("set_checkpoint_ttl", "PUT", "/ttl", self.set_checkpoint_ttl,
                 request_type=t.SetCheckpointTtlRequest, mutates=True),
            rest("delete_checkpoint", "DELETE", "", self.delete_checkpoint, mutates=True),
            op("list_checkpoints", "GET", f"{v1}/training_runs/{{run_id}}/checkpoints", self.list_checkpoints),
            op("get_training_run", "GET", f"{v1}/training_runs/{{run_id}}", self.get_training_run),
            op("list_training_runs", "GET", f"{v1}/training_runs", self.list_training_runs),
            op("list_user_checkpoints", "GET", f"{v1}/checkpoints", self.list_user_checkpoints),
            op("search_sessions", "POST", f"{v1}/sessions/search", sessions.search_sessions,
               request_type=t.SessionSearchRequest),
            op("assign_session_project", "PUT", f"{v1}/sessions/{{session_id}}/project", sessions.assign_session_project,
               request_type=AssignSessionProjectRequest, mutates=True),
            op("export_session_trace", "GET", f"{v1}/sessions/{{session_id}}/trace_export", sessions.export_session_trace),
            op("whoami", "GET", f"{v1}/auth/apikey/me", sessions.whoami),
            op("get_audit_log", "GET", f"{v1}/audit", admin.get_audit_log),
            op("get_billing_usage", "GET", f"{v1}/billing/usage/events", admin.get_billing_usage),
            op("get_current_checkpoint_storage_usage", "GET", f"{v1}/billing/usage/checkpoints/current",
               admin.get_current_checkpoint_storage_usage),
            op("get_session", "GET", f"{v1}/sessions/{{session_id}}", self.get_session),
            op("list_sessions", "GET", f"{v1}/sessions", self.list_sessions),
            op("get_sampler", "GET", f"{v1}/samplers/{{sampler_id}}", self.get_sampler),
            op("download", "GET", "/download/{token}", self.download),
        ]

    # lookups that answer 404 before anything executes

    def _run(self, run_id: str) -> RunRecord:
        with answers_404():
            run = self.registry.run(run_id)
        run.last_request_time = utcnow()
        return run

    def _session(self, session_id: str) -> SessionRecord:
        return session_or_404(self.registry, session_id)

    def _open_session(self, session_id: str) -> SessionRecord:
        return open_session(self.registry, session_id)

    def _live_run(self, run_id: str) -> RunRecord:
        """A run that new work may be submitted to (its session is not finished)."""
        run = self._run(run_id)
        session = self.registry.sessions.get(run.session_id)
        if session is not None:
            refuse_if_finished(session)
        return run

    def _checkpoint_at(self, field: str, tinker_path: str) -> tuple[TinkerPath, CheckpointRecord]:
        """The checkpoint a request field names: 400 for a malformed path, 404 when nothing is there."""
        with answers_404(f"{field}: "):
            try:
                path = parse_tinker_path(tinker_path)
            except ValueError as exc:
                raise reject(400, f"{field}: {exc}") from None
            return path, self.registry.checkpoint(path)

    # futures

    def _submit(
        self,
        call: Call,
        model_id: str | None,
        compute: Callable[[], msgspec.Struct],
        session_id: str | None = None,
        sample_sequence_ids: list[str] | None = None,
    ) -> Result:
        """Execute ``compute`` now and publish its result (or failure) as a future after the latency."""
        result: bytes | None = None
        failure: Failure | None = None
        injected = self.faults.take(call.endpoint, _REQUEST_FAILED)
        if injected is not None:
            failure = Failure(injected.message, injected.category)
        else:
            try:
                result = codec.encode(compute())
            except tiny_lm.ModelInputError as exc:
                failure = Failure(str(exc), "user")
            except OperationFailed as exc:
                failure = Failure(str(exc), exc.category)
        record = self.futures.create(call.endpoint, model_id, self.config.latency_for(call.endpoint), result, failure)
        handle = t.UntypedAPIFuture(
            request_id=record.request_id, model_id=model_id, sample_sequence_ids=sample_sequence_ids
        )
        return Result(
            json_reply(handle),
            request_id=record.request_id,
            model_id=model_id,
            session_id=session_id,
            failed=failure is not None,
        )

    def _polled_endpoint(self, request: t.FutureRetrieveRequest) -> str | None:
        record = self.futures.get(request.request_id)
        return record.endpoint if record is not None else None

    async def retrieve_future(self, call: Call) -> Result:
        request: t.FutureRetrieveRequest = call.body
        record = self.futures.get(request.request_id)
        if record is None:
            return Result(error_reply(404, f"unknown request_id {request.request_id!r}"))
        if not record.expired and self.futures.past_ttl(record):
            self.expire(record)
        if record.expired:
            return Result(self._expired_reply(record))
        override = self.faults.take("retrieve_future", _POLL_OVERRIDES, future_endpoint=record.endpoint)
        if override is not None and override.kind == "expire":
            self.expire(record)
            return Result(self._expired_reply(record))
        if override is not None:
            return Result(self._try_again(record, override.queue_state, override.queue_state_reason))
        if not await self.futures.wait_ready(record, self.config.long_poll_timeout):
            return Result(self._try_again(record, "active", None))
        if record.expired:
            return Result(self._expired_reply(record))
        if record.failure is not None:
            category = t.RequestErrorCategory(record.failure.category)
            return Result(json_reply(t.RequestFailedResponse(error=record.failure.message, category=category)))
        assert record.result is not None
        if request.allow_metadata_only:
            threshold = self.config.metadata_only_threshold
            too_large = threshold is not None and len(record.result) > threshold
            if too_large or self.faults.take("retrieve_future", _METADATA_ONLY, future_endpoint=record.endpoint):
                reply = t.FutureMetadataOnlyResponse(response_payload_size=len(record.result))
                return Result(json_reply(reply))
        return Result(dialect.result_reply(record.endpoint, record.result, call.headers.get("accept")))

    @staticmethod
    def _expired_reply(record: FutureRecord) -> Reply:
        return error_reply(
            410,
            f"future {record.request_id} expired: its operation ran but the result is no longer kept "
            "(submitting it again runs it a second time)",
        )

    @staticmethod
    def _try_again(record: FutureRecord, queue_state: str, reason: str | None) -> Reply:
        return json_reply(
            t.TryAgainResponse(request_id=record.request_id, queue_state=queue_state, queue_state_reason=reason)
        )

    # service and session endpoints

    def healthz(self, call: Call) -> Result:
        return Result(json_reply(t.HealthResponse()))

    def get_server_capabilities(self, call: Call) -> Result:
        models = [
            t.SupportedModel(model_name=name, max_context_length=_MAX_CONTEXT_LENGTH, trainable=True, sampleable=True)
            for name in self.registry.base_models
        ]
        return Result(json_reply(t.GetServerCapabilitiesResponse(supported_models=models)))

    def create_session(self, call: Call) -> Result:
        request: t.CreateSessionRequest = call.body
        session = self.registry.create_session(
            request.tags,
            request.user_metadata or {},
            owner=caller_urn(call),
            project_id=request.project_id,
            display_name=request.display_name,
        )
        return Result(json_reply(t.CreateSessionResponse(session_id=session.session_id)), session_id=session.session_id)

    def session_heartbeat(self, call: Call) -> Result:
        request: t.SessionHeartbeatRequest = call.body
        self._open_session(request.session_id)
        return Result(json_reply(t.SessionHeartbeatResponse()))

    def telemetry(self, call: Call) -> Result:
        self.telemetry_batches.append(call.body)
        return Result(json_reply(t.TelemetryResponse()))

    def create_sampling_session(self, call: Call) -> Result:
        request: t.CreateSamplingSessionRequest = call.body
        self._open_session(request.session_id)
        sampler_id = f"{request.session_id}:sample:{request.sampling_session_seq_id}"
        if (request.base_model is None) == (request.model_path is None):
            raise reject(400, "exactly one of base_model and model_path must be set")
        if request.model_path is not None:
            sampler = self._sampler_from_path(sampler_id, request.session_id, request.model_path)
        else:
            base_model = self._supported(request.base_model)
            sampler = SamplerRecord(sampler_id, request.session_id, base_model, None, weights=None)
        self.registry.add_sampler(sampler)
        return Result(
            json_reply(t.CreateSamplingSessionResponse(sampling_session_id=sampler_id)), session_id=request.session_id
        )

    def _unsupported(self, base_model: str | None) -> str | None:
        """Why ``base_model`` cannot be used, or ``None`` if it can."""
        if base_model in self.registry.base_models:
            return None
        return f"base_model {base_model!r} is not supported; choose one of {list(self.registry.base_models)}"

    def _supported(self, base_model: str | None) -> str:
        problem = self._unsupported(base_model)
        if problem is not None:
            raise reject(400, problem)
        assert base_model is not None
        return base_model

    def _sampler_from_path(self, sampler_id: str, session_id: str, model_path: str) -> SamplerRecord:
        path, checkpoint = self._checkpoint_at("model_path", model_path)
        return SamplerRecord(
            sampler_id,
            session_id,
            checkpoint.base_model,
            model_path,
            weights=checkpoint.weights,
            from_training_checkpoint=path.kind == "weights",
        )

    # model endpoints

    def create_model(self, call: Call) -> Result:
        request: t.CreateModelRequest = call.body
        self._open_session(request.session_id)
        model_id = f"{request.session_id}:train:{request.model_seq_id}"

        def compute() -> msgspec.Struct:
            problem = self._unsupported(request.base_model)
            if problem is not None:
                raise tiny_lm.ModelInputError(problem)
            lora = request.lora_config or t.LoraConfig(rank=32)
            targets = [name for name, on in (("attn", lora.train_attn), ("mlp", lora.train_mlp),
                                              ("unembed", lora.train_unembed)) if on]
            # The adapter's random half is seeded by the client's LoRA seed, else by the run id (reproducible).
            state = tiny_lm.ModelState.fresh(
                self.vocab_size, lora.rank, targets, lora.seed if lora.seed is not None else model_id
            )
            metadata = request.user_metadata
            self.registry.add_run(
                RunRecord(
                    run_id=model_id,
                    session_id=request.session_id,
                    base_model=request.base_model,
                    lora_rank=lora.rank,
                    train_unembed=lora.train_unembed,
                    train_mlp=lora.train_mlp,
                    train_attn=lora.train_attn,
                    user_metadata={k: str(v) for k, v in metadata.items()} if metadata else None,
                    last_request_time=utcnow(),
                    state=state,
                )
            )
            return t.CreateModelResponse(model_id=model_id)

        return self._submit(call, model_id, compute, session_id=request.session_id)

    def get_info(self, call: Call) -> Result:
        request: t.GetInfoRequest = call.body
        run = self._run(request.model_id)
        data = t.ModelData(arch="tinkex-tiny-lm", model_name=run.base_model, tokenizer_id=run.base_model)
        info = t.GetInfoResponse(
            model_data=data, model_id=run.run_id, is_lora=True, lora_rank=run.lora_rank, model_name=run.base_model
        )
        return Result(json_reply(info), model_id=run.run_id)

    def unload_model(self, call: Call) -> Result:
        request: t.UnloadModelRequest = call.body
        run = self._live_run(request.model_id)
        return self._submit(
            call, run.run_id, lambda: t.UnloadModelResponse(model_id=run.run_id), session_id=run.session_id
        )

    def _training(self, run: RunRecord) -> RunRecord:
        if run.corrupted:
            raise OperationFailed(f"training run {run.run_id} is corrupted; restore it from a checkpoint", "server")
        if not run.trainable:
            raise tiny_lm.ModelInputError(
                f"training run {run.run_id} holds copied weights and cannot be trained; "
                "sample from it or create a training client from its checkpoint"
            )
        return run

    def _loss(self, call: Call, model_id: str, fb_input: t.ForwardBackwardInput, backward: bool) -> Result:
        run = self._live_run(model_id)
        for index, datum in enumerate(fb_input.data):
            self._check_vocabulary(datum.model_input, f"data[{index}].model_input")
            targets = datum.loss_fn_inputs.get("target_tokens")
            if targets is not None:
                self._check_token_ids(targets.data, f"data[{index}].loss_fn_inputs['target_tokens']")

        def compute() -> msgspec.Struct:
            data = [_datum_input(datum, index) for index, datum in enumerate(fb_input.data)]
            for index, datum in enumerate(fb_input.data):
                self._check_provenance(datum, index)
            state = self._training(run).state
            base = self.base_weights(run.base_model)
            if fb_input.loss_fn == "custom":
                loss = self._custom_loss(run, fb_input.loss_fn_config)
                outputs, metrics = custom_loss_graph.run_loss(base, state, data, loss.nodes, backward)
            else:
                config = {k: float(v) for k, v in (fb_input.loss_fn_config or {}).items()}
                outputs, metrics = tiny_lm.run_builtin_loss(base, state, data, fb_input.loss_fn, config, backward)
            return t.ForwardBackwardOutput(
                loss_fn_output_type="ArrayRecord",
                loss_fn_outputs=[
                    {"logprobs": _float32(o.logprobs), "elementwise_loss": _float32(o.elementwise_loss)}
                    for o in outputs
                ],
                metrics=metrics,
            )

        return self._submit(call, model_id, compute, session_id=run.session_id)

    def forward(self, call: Call) -> Result:
        request: t.ForwardRequest = call.body
        return self._loss(call, request.model_id, request.forward_input, backward=False)

    def forward_backward(self, call: Call) -> Result:
        request: t.ForwardBackwardRequest | t.ForwardRequest = call.body
        if isinstance(request, t.ForwardRequest):
            # 0.38's forward: a protobuf forward_backward body with forward_only. It is a forward in every record
            # but the ledger's HTTP endpoint: the future, its latency and faults, billing.
            call.endpoint = "forward"
            return self.forward(call)
        return self._loss(call, request.model_id, request.forward_backward_input, backward=True)

    def optim_step(self, call: Call) -> Result:
        request: t.OptimStepRequest = call.body
        run = self._live_run(request.model_id)
        params = request.optim_params  # Adam's (0.16 and 0.38) or another family's (0.38 optimizer_params)

        def compute() -> msgspec.Struct:
            settings = tiny_lm.adam_settings(params)  # another optimizer family is refused, by name
            return t.OptimStepResponse(metrics=self._training(run).state.apply_optimizer(settings))

        return self._submit(call, run.run_id, compute, session_id=run.session_id)

    def _checkpoint_name(self, name: str | None, seq_id: int | None) -> str:
        if name is None:
            return f"checkpoint-{seq_id if seq_id is not None else self.registry.new_id('auto')}"
        if not name or "/" in name:
            raise tiny_lm.ModelInputError(f"path {name!r} must be a non-empty checkpoint name without '/'")
        return name

    def save_weights(self, call: Call) -> Result:
        request: t.SaveWeightsRequest = call.body
        run = self._live_run(request.model_id)

        def compute() -> msgspec.Struct:
            name = self._checkpoint_name(request.path, request.seq_id)
            # 0.38 says whether an existing checkpoint may be replaced; 0.16 does not, and always replaced it.
            if _explicit(request, "overwrite") is False and self.registry.exists(TinkerPath(run.run_id, "weights", name)):
                raise tiny_lm.ModelInputError(
                    f"checkpoint tinker://{run.run_id}/weights/{name} already exists; save with overwrite=True "
                    "to replace it"
                )
            saved = self.registry.save_checkpoint(
                self._training(run), "weights", name, request.ttl_seconds, request.user_metadata
            )
            return t.SaveWeightsResponse(path=str(saved.path))

        return self._submit(call, run.run_id, compute, session_id=run.session_id)

    def _loadable(self, tinker_path: str) -> CheckpointRecord:
        """The training checkpoint a load names (a user failure otherwise)."""
        try:
            path = parse_tinker_path(tinker_path)
            checkpoint = self.registry.checkpoint(path)
        except (ValueError, NotFound) as exc:
            raise tiny_lm.ModelInputError(f"path: {exc}") from None
        if path.kind != "weights":
            raise tiny_lm.ModelInputError(
                f"cannot load {tinker_path}: {path.kind} checkpoints are not training state; "
                "load a weights/ path saved with save_state"
            )
        return checkpoint

    def load_weights(self, call: Call) -> Result:
        request: t.LoadWeightsRequest = call.body
        if request.session_id is not None:
            return self._create_via_load(call, request)
        if request.model_id is None:
            raise reject(400, "load_weights needs model_id (load into a model) or session_id and model_seq_id "
                               "(create the model from the checkpoint)")
        run = self._live_run(request.model_id)

        def compute() -> msgspec.Struct:
            checkpoint = self._loadable(request.path)
            if checkpoint.base_model != run.base_model:
                raise tiny_lm.ModelInputError(
                    f"checkpoint {request.path} is for {checkpoint.base_model}, model {run.run_id} is {run.base_model}"
                )
            run.state.restore(checkpoint.weights, with_optimizer=request.optimizer)
            run.corrupted = False
            return t.LoadWeightsResponse(path=request.path)

        return self._submit(call, run.run_id, compute, session_id=run.session_id)

    def _create_via_load(self, call: Call, request: t.LoadWeightsRequest) -> Result:
        """[0.38] The load is the model's first request: the model is made from the checkpoint (no create_model)."""
        session = self._open_session(request.session_id)
        if request.model_seq_id is None:
            raise reject(400, "load_weights with session_id needs model_seq_id")
        model_id = f"{session.session_id}:train:{request.model_seq_id}"
        if model_id in self.registry.runs:
            raise reject(400, f"model_seq_id {request.model_seq_id} of session {session.session_id} is already used")

        def compute() -> msgspec.Struct:
            checkpoint = self._loadable(request.path)
            base_model = request.base_model or checkpoint.base_model
            if base_model != checkpoint.base_model:
                raise tiny_lm.ModelInputError(
                    f"base_model {base_model!r} is not compatible with checkpoint {request.path} "
                    f"({checkpoint.base_model})"
                )
            source = self.registry.runs.get(parse_tinker_path(request.path).run_id)
            metadata = request.user_metadata
            run = RunRecord(
                run_id=model_id,
                session_id=session.session_id,
                base_model=base_model,
                lora_rank=checkpoint.lora_rank,
                train_unembed=source.train_unembed if source else True,
                train_mlp=source.train_mlp if source else True,
                train_attn=source.train_attn if source else True,
                user_metadata={k: str(v) for k, v in metadata.items()} if metadata else None,
                last_request_time=utcnow(),
            )
            run.state.restore(checkpoint.weights, with_optimizer=request.optimizer)
            self.registry.add_run(run)
            return t.LoadWeightsResponse(path=request.path, model_id=model_id)

        return self._submit(call, model_id, compute, session_id=session.session_id)

    def save_weights_for_sampler(self, call: Call) -> Result:
        request: t.SaveWeightsForSamplerRequest = call.body
        run = self._live_run(request.model_id)

        def compute() -> msgspec.Struct:
            self._training(run)
            if (request.path is None) == (request.sampling_session_seq_id is None):
                raise tiny_lm.ModelInputError("exactly one of path and sampling_session_seq_id must be set")
            if request.sampling_session_seq_id is None:
                name = self._checkpoint_name(request.path, request.seq_id)
                saved = self.registry.save_checkpoint(
                    run, "sampler_weights", name, request.ttl_seconds, request.user_metadata
                )
                return t.SaveWeightsForSamplerResponseInternal(path=str(saved.path))
            sampler_id = f"{run.session_id}:sample:{request.sampling_session_seq_id}"
            self.registry.add_sampler(
                SamplerRecord(
                    sampler_id, run.session_id, run.base_model, None, weights=run.state.snapshot(with_optimizer=False)
                )
            )
            return t.SaveWeightsForSamplerResponseInternal(path=None, sampling_session_id=sampler_id)

        return self._submit(call, run.run_id, compute, session_id=run.session_id)

    def save_weights_external(self, call: Call) -> Result:
        request: t.SaveWeightsExternalRequest = call.body
        run = self._live_run(request.model_id)

        def compute() -> msgspec.Struct:
            if request.age_encryption_recipients:
                raise tiny_lm.ModelInputError("age_encryption_recipients: the local server cannot encrypt exports")
            name = self._checkpoint_name(request.path, request.seq_id)
            saved = self.registry.save_checkpoint(run, "external_weights", name, request.ttl_seconds)
            size = sum(len(data) for data in self._external_files(saved).values())
            return t.SaveWeightsExternalResponseInternal(path=str(saved.path), size_bytes=size)

        return self._submit(call, run.run_id, compute, session_id=run.session_id)

    @staticmethod
    def _external_files(checkpoint: CheckpointRecord) -> dict[str, bytes]:
        return external_weights_files(
            checkpoint.base_model, checkpoint.lora_rank, str(checkpoint.path), checkpoint.weights
        )

    def copy_weights(self, call: Call) -> Result:
        """[0.38] The checkpoint under a new training run that can be sampled or loaded, never trained."""
        request: t.CopyWeightsRequest = call.body
        _, source = self._checkpoint_at("source_path", request.source_path)
        if request.session_id is not None:
            if request.model_seq_id is None:
                raise reject(400, "copy_weights with session_id needs model_seq_id")
            session = self._open_session(request.session_id)
            run_id, session_id, project = (
                f"{session.session_id}:train:{request.model_seq_id}", session.session_id, session.project_id
            )
            if run_id in self.registry.runs:
                raise reject(400, f"model_seq_id {request.model_seq_id} of session {session_id} is already used")
        elif request.destination_project_id is not None:
            run_id, session_id, project = self.registry.new_id("copy"), "", request.destination_project_id
        else:
            raise reject(400, "copy_weights needs destination_project_id, or session_id and model_seq_id")
        run = RunRecord(
            run_id=run_id,
            session_id=session_id,
            base_model=source.base_model,
            lora_rank=source.lora_rank,
            train_unembed=True,
            train_mlp=True,
            train_attn=True,
            user_metadata={"copied_from": request.source_path, "project_id": project},
            last_request_time=utcnow(),
            trainable=False,
        )
        run.state.restore(source.weights, with_optimizer=False)
        self.registry.add_run(run)
        copied = self.registry.copy_checkpoint(source, run, request.ttl_seconds)
        return Result(json_reply(t.CopyWeightsResponse(tinker_path=str(copied.path))), session_id=session_id or None)

    def weights_info(self, call: Call) -> Result:
        request: t.WeightsInfoRequest = call.body
        path, _ = self._checkpoint_at("tinker_path", request.tinker_path)
        with answers_404("tinker_path: "):
            run = self.registry.run(path.run_id)
        info = t.WeightsInfoResponse(
            base_model=run.base_model,
            is_lora=True,
            lora_rank=run.lora_rank,
            train_unembed=run.train_unembed,
            train_mlp=run.train_mlp,
            train_attn=run.train_attn,
        )
        return Result(json_reply(info))

    # sampling

    def asample(self, call: Call) -> Result:
        request: t.SampleRequest = call.body
        limit = self.config.sample_inflight_limit
        if limit is not None and "x-tinker-sampling-backpressure" in call.headers:
            in_flight = self.futures.unfinished("asample")
            if in_flight >= limit:
                raise reject(429, f"sampling backpressure: {in_flight} samples in flight (limit {limit})")
        sampler = self._sampler_for(request)
        session = self.registry.sessions.get(sampler.session_id)
        if session is not None:
            refuse_if_finished(session)
        self._check_vocabulary(request.prompt, "prompt")
        sequence_ids = [
            f"{sampler.session_id or 'adhoc'}:seq:{self._sequence_prefix}{next(self._sequence_ids)}"
            for _ in range(max(request.num_samples, 0))
        ]

        def compute() -> msgspec.Struct:
            if sampler.from_training_checkpoint:
                raise tiny_lm.ModelInputError(
                    f"{sampler.model_path} is a training checkpoint (weights/); sample from a sampler_weights/ "
                    "path saved with save_weights_for_sampler"
                )
            prompt = _tokens(request.prompt, "prompt")
            seed = request.sampling_params.seed
            if seed is None:  # reproducible per server seed, sampler and request
                seed = f"{self.config.seed}:{sampler.sampler_id}:{request.seq_id}"
            settings = _sampling_settings(request.sampling_params, str(seed), self.vocab_size)
            base = self.base_weights(sampler.base_model)
            rank, adapter = tiny_lm.snapshot_params(sampler.weights)
            scale = tiny_lm.lora_scale(rank)
            samples = tiny_lm.sample(
                base, adapter, scale, prompt, request.num_samples, settings, tiny_lm.text_decoder(self.vocab_size)
            )
            k = request.topk_prompt_logprobs
            for sequence_id, s in zip(sequence_ids, samples):
                self.sequence_lengths[sequence_id] = (len(prompt), len(s.tokens))
            return t.SampleResponse(
                sequences=[
                    t.SampledSequence(
                        stop_reason=s.stop_reason, tokens=s.tokens, logprobs=s.logprobs, sequence_id=sequence_id
                    )
                    for sequence_id, s in zip(sequence_ids, samples)
                ],
                prompt_logprobs=(
                    tiny_lm.prompt_logprobs(base, adapter, scale, prompt) if request.prompt_logprobs else None
                ),
                topk_prompt_logprobs=tiny_lm.topk_prompt_logprobs(base, adapter, scale, prompt, k) if k > 0 else None,
            )

        return self._submit(
            call, sampler.sampler_id, compute, session_id=sampler.session_id, sample_sequence_ids=sequence_ids
        )

    def _sampler_for(self, request: t.SampleRequest) -> SamplerRecord:
        if request.sampling_session_id is not None:
            with answers_404():
                return self.registry.sampler(request.sampling_session_id)
        if request.model_path is not None:
            return self._sampler_from_path(f"adhoc:{request.model_path}", "", request.model_path)
        if request.base_model is not None:
            return SamplerRecord(f"adhoc:{request.base_model}", "", self._supported(request.base_model), None, None)
        raise reject(400, "one of sampling_session_id, model_path and base_model must be set")

    # REST

    def _query_int(self, call: Call, name: str, default: int) -> int:
        values = call.query.get(name)
        if not values:
            return default
        try:
            value = int(values[-1])
        except ValueError:
            value = -1
        if value < 0:
            raise Rejection(_query_error(name, f"{name} must be a non-negative integer, got {values[-1]!r}"))
        return value

    def _access_scope(self, call: Call) -> str:
        values = call.query.get("access_scope")
        scope = values[-1] if values else "owned"
        if scope not in _ACCESS_SCOPES:
            message = f"access_scope must be 'owned' or 'accessible', got {scope!r}"
            raise Rejection(_query_error("access_scope", message))
        return scope

    def _page(self, call: Call, items: list[_T], default_limit: int) -> tuple[list[_T], t.Cursor]:
        """The ``limit``/``offset`` slice of ``items`` the query asks for, and its cursor."""
        limit, offset = self._query_int(call, "limit", default_limit), self._query_int(call, "offset", 0)
        return items[offset : offset + limit], t.Cursor(offset=offset, limit=limit, total_count=len(items))

    def _checkpoint_struct(self, record: CheckpointRecord) -> t.Checkpoint:
        extra = {"user_metadata": record.user_metadata} if "user_metadata" in t.Checkpoint.__struct_fields__ else {}
        return t.Checkpoint(
            **extra,
            checkpoint_id=record.path.checkpoint_id,
            checkpoint_type=record.checkpoint_type,
            time=record.time,
            tinker_path=str(record.path),
            size_bytes=record.size_bytes,
            public=record.public,
            expires_at=record.expires_at,
        )

    def _training_run_struct(self, run: RunRecord) -> t.TrainingRun:
        last = {c.path.kind: c for c in self.registry.live_checkpoints(run.run_id)}  # the newest of each kind wins
        weights, sampler_weights = last.get("weights"), last.get("sampler_weights")
        return t.TrainingRun(
            training_run_id=run.run_id,
            base_model=run.base_model,
            model_owner="local-user",
            is_lora=True,
            corrupted=run.corrupted,
            lora_rank=run.lora_rank,
            last_request_time=run.last_request_time,
            last_checkpoint=self._checkpoint_struct(weights) if weights else None,
            last_sampler_checkpoint=self._checkpoint_struct(sampler_weights) if sampler_weights else None,
            user_metadata=run.user_metadata,
        )

    def _rest_run(self, call: Call) -> RunRecord:
        with answers_404():
            return self.registry.run(call.params["run_id"])

    def _rest_checkpoint(self, call: Call) -> CheckpointRecord:
        run = self._rest_run(call)
        with answers_404():
            kind, name = split_checkpoint_id(call.params["checkpoint_id"])
            return self.registry.checkpoint(TinkerPath(run.run_id, kind, name))

    def get_training_run(self, call: Call) -> Result:
        self._access_scope(call)
        return Result(json_reply(self._training_run_struct(self._rest_run(call))))

    def list_training_runs(self, call: Call) -> Result:
        self._access_scope(call)
        runs, cursor = self._page(call, list(self.registry.runs.values()), 20)
        page = [self._training_run_struct(run) for run in runs]
        return Result(json_reply(t.TrainingRunsResponse(training_runs=page, cursor=cursor)))

    def list_checkpoints(self, call: Call) -> Result:
        run = self._rest_run(call)
        checkpoints = [self._checkpoint_struct(c) for c in self.registry.live_checkpoints(run.run_id)]
        return Result(json_reply(t.CheckpointsListResponse(checkpoints=checkpoints)))

    def list_user_checkpoints(self, call: Call) -> Result:
        checkpoints, cursor = self._page(call, self.registry.live_checkpoints(), 100)
        page = [self._checkpoint_struct(c) for c in checkpoints]
        return Result(json_reply(t.CheckpointsListResponse(checkpoints=page, cursor=cursor)))

    def delete_checkpoint(self, call: Call) -> Result:
        self.registry.delete_checkpoint(self._rest_checkpoint(call).path)
        return Result(Reply(204))

    def publish_checkpoint(self, call: Call) -> Result:
        self._rest_checkpoint(call).public = True
        return Result(Reply(204))

    def unpublish_checkpoint(self, call: Call) -> Result:
        self._rest_checkpoint(call).public = False
        return Result(Reply(204))

    def set_checkpoint_ttl(self, call: Call) -> Result:
        request: t.SetCheckpointTtlRequest = call.body
        checkpoint = self._rest_checkpoint(call)
        ttl = request.ttl_seconds
        checkpoint.expires_at = utcnow() + timedelta(seconds=ttl) if ttl is not None else None
        return Result(Reply(204))

    def get_session(self, call: Call) -> Result:
        self._access_scope(call)
        with answers_404():
            session = self.registry.session(call.params["session_id"])
        reply = t.GetSessionResponse(training_run_ids=session.training_run_ids, sampler_ids=session.sampler_ids)
        return Result(json_reply(reply))

    def list_sessions(self, call: Call) -> Result:
        self._access_scope(call)
        sessions, _ = self._page(call, list(self.registry.sessions), 20)
        return Result(json_reply(t.ListSessionsResponse(sessions=sessions)))

    def get_sampler(self, call: Call) -> Result:
        with answers_404():
            sampler = self.registry.sampler(call.params["sampler_id"])
        reply = t.GetSamplerResponse(
            sampler_id=sampler.sampler_id, base_model=sampler.base_model, model_path=sampler.model_path
        )
        return Result(json_reply(reply))

    def get_checkpoint_archive_url(self, call: Call) -> Result:
        """302 to a download URL on this server, valid for 15 minutes (§10.6)."""
        checkpoint = self._rest_checkpoint(call)
        path = checkpoint.path
        filename = f"{path.run_id}-{path.name}.tar.gz".replace(":", "_")
        url = self.downloads.link(
            call.base_url, lambda: self.registry.archive(path), "application/gzip", filename, _ARCHIVE_URL_LIFETIME
        )
        expires = datetime.now(timezone.utc) + _ARCHIVE_URL_LIFETIME
        headers = (
            (b"location", url.encode()),
            (b"expires", format_datetime(expires.replace(microsecond=0), usegmt=True).encode()),
        )
        return Result(Reply(302, b"", headers))

    def download(self, call: Call) -> Result:
        return Result(self.downloads.serve(call.params["token"]))

    def external_weights_urls(self, call: Call) -> Result:
        """[0.38] One signed URL per file of an external-weights export."""
        checkpoint = self._rest_checkpoint(call)
        if checkpoint.path.kind != "external_weights":
            raise reject(400, f"{checkpoint.path} is not an external weights checkpoint (external_weights/<name>)")
        urls = {}
        for name in self._external_files(checkpoint):
            def produce(name: str = name, checkpoint: CheckpointRecord = checkpoint) -> bytes:
                return self._external_files(self.registry.checkpoint(checkpoint.path))[name]

            kind = "application/json" if name.endswith(".json") else "application/octet-stream"
            urls[name] = self.downloads.link(call.base_url, produce, kind, name, _EXTERNAL_URL_LIFETIME)
        expires = (datetime.now(timezone.utc) + _EXTERNAL_URL_LIFETIME).replace(microsecond=0)
        return Result(json_reply(t.ExternalWeightsUrlsResponse(urls=urls, expires=expires)))

    # futures (0.38)

    def cancel_future(self, call: Call) -> Result:
        """The future's work is abandoned: a later retrieve answers a failure that says it was cancelled."""
        request: CancelFutureRequest = call.body
        record = self.futures.get(request.request_id)
        if record is None:
            raise reject(404, f"unknown request_id {request.request_id!r}")
        if not record.expired:
            self.futures.cancel(record, Failure(CANCELLED_MESSAGE.format(request_id=record.request_id), "user"))
        return Result(json_reply({}), request_id=record.request_id, model_id=record.model_id)

    # custom losses (0.38)

    def create_custom_loss(self, call: Call) -> Result:
        request: t.CreateCustomLossRequest = call.body
        session = self._open_session(request.session_id)

        def compute() -> msgspec.Struct:
            inputs = [(i.name, int(i.rank)) for i in request.inputs]
            if not inputs or inputs[0][0] != "logprobs":
                raise tiny_lm.ModelInputError("inputs: the first input of a custom loss must be 'logprobs'")
            nodes = [msgspec.to_builtins(node) for node in request.graph.nodes]
            custom_loss_graph.check_graph(nodes, [name for name, _ in inputs])
            loss_id = self.registry.new_id("loss")
            self.registry.custom_losses[loss_id] = CustomLossRecord(
                loss_id=loss_id, session_id=session.session_id, name=request.name, inputs=inputs, nodes=nodes
            )
            return t.CreateCustomLossResponse(loss_id=loss_id)

        return self._submit(call, None, compute, session_id=session.session_id)

    def _custom_loss(self, run: RunRecord, config: Mapping[str, Any] | None) -> CustomLossRecord:
        """The uploaded loss a ``custom`` forward_backward names (by ``loss_id``, or by its name in the session)."""
        wanted = (config or {}).get("loss_id")
        if not isinstance(wanted, str):
            raise tiny_lm.ModelInputError("loss_fn 'custom' needs loss_fn_config {'loss_id': <id from create_custom_loss>}")
        for loss in self.registry.custom_losses.values():
            if loss.session_id == run.session_id and wanted in (loss.loss_id, loss.name):
                return loss
        raise tiny_lm.ModelInputError(f"no custom loss {wanted!r} was uploaded in session {run.session_id}")

    def _check_provenance(self, datum: t.Datum, index: int) -> None:
        """Provenance spans may only name sequences this server sampled, within their lengths."""
        for field_name in ("model_input_spans", "loss_fn_input_spans"):
            spans = getattr(datum, field_name, None)
            for position, span in enumerate(spans or ()):
                known = self.sequence_lengths.get(span.sequence_id)
                where = f"data[{index}].{field_name}[{position}]"
                if known is None:
                    raise tiny_lm.ModelInputError(f"{where}: unknown sequence_id {span.sequence_id!r}")
                prompt_length, sampled_length = known
                limit = sampled_length if isinstance(span, t.SampledProvenanceSpan) else prompt_length
                if span.offset + span.length > limit:
                    raise tiny_lm.ModelInputError(
                        f"{where}: offset {span.offset} + length {span.length} is past the {limit} tokens "
                        f"of sequence {span.sequence_id!r}"
                    )


def _query_error(name: str, message: str) -> Reply:
    return json_reply({"detail": [{"loc": ["query", name], "msg": message, "type": "value_error"}]}, 422)
