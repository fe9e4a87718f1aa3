"""The Tinker API of the local server (docs/wire.md §1.2–1.5, §1.7, §2, §4.2, §10.6): the route table, which
composes the endpoints of each resource, typed with ``tinkex.types``.

Both dialects decode into the same request types: 0.16's minimal bodies and 0.38's, which carry ``type`` tags and
every default and omit nulls. What each endpoint does lives in its resource's module, all sharing one
:class:`~.endpoint_state.EndpointState` (the registry, futures, faults, ledger and the submit/expire steps):

- :mod:`.service_endpoints`: health, capabilities, telemetry; the 0.38 config and auth endpoints are
  :mod:`.dialect`'s and :mod:`.jwt_tokens`'.
- :mod:`.session_endpoints`: sessions (create, heartbeat, finish, join, search, project, trace, whoami).
- :mod:`.training_endpoints`: models (create, info, unload), forward, forward_backward, optim_step, custom losses.
- :mod:`.weights_endpoints`: saves, loads, copies, weights info, archive and external-weights downloads.
- :mod:`.sampling_endpoints`: sampling sessions, ``asample``, sampler lookups.
- :mod:`.rest_endpoints`: training runs, checkpoints (listed, deleted, published, TTL) and sessions, over REST.
- :mod:`.future_endpoints`: ``retrieve_future`` and ``cancel_future``.
- :mod:`.admin_endpoints`: the account's audit log and billing reports.

Each endpoint is an :class:`Operation`: its route, request type, whether it writes (then the app replays
re-sends instead of running them twice, and ``seq_identity`` says which seq_id it counts in), and a handler.
Write handlers are synchronous so that nothing interleaves between the replay-cache check and the execution.
Future endpoints execute at submission and store the encoded result in the :class:`FutureStore`.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tinkex import types as t

from . import dialect, sequence_rules, tiny_lm
from .admin_endpoints import AdminEndpoints
from .calls import Call, Rejection, Result
from .config import ServerConfig
from .dedup import ReplayCache
from .endpoint_state import EndpointState
from .faults import Faults
from .future_endpoints import CANCELLED_MESSAGE, CancelFutureRequest, FutureEndpoints
from .futures_store import FutureRecord, FutureStore
from .jwt_tokens import JwtIssuer
from .ledger import Ledger
from .registry import Registry
from .rest_endpoints import RestEndpoints
from .retrieve_futures import RetrieveFutures
from .sampling_endpoints import SamplingEndpoints
from .service_endpoints import ServiceEndpoints
from .session_endpoints import AssignSessionProjectRequest, SessionEndpoints
from .training_endpoints import TrainingEndpoints
from .weights_endpoints import WeightsEndpoints
from .write_journal import WriteJournal

__all__ = ["CANCELLED_MESSAGE", "Call", "Operation", "Rejection", "Result", "RouteMatch", "TinkerApi"]


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


# seq identities: the (scope, seq_id) a write counts in

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


def _sample_seq(request: t.SampleRequest) -> tuple[str, int] | None:
    if request.sampling_session_id is None or request.seq_id is None:
        return None
    return (f"sample:{request.sampling_session_id}", request.seq_id)


def _op(endpoint: str, method: str, path: str, handler: Handler, **options: Any) -> Operation:
    """An operation at ``path``, whose ``{name}`` segments become the call's params."""
    pattern = re.compile(re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>[^/]+)", path))
    return Operation(endpoint, method, pattern, handler, **options)


def _checkpoint_op(endpoint: str, method: str, suffix: str, handler: Handler, **options: Any) -> Operation:
    """An operation on a checkpoint under REST: its id carries a "/" (weights/ckpt-1) and is interpolated unencoded."""
    path = "/api/v1/training_runs/(?P<run_id>[^/]+)/checkpoints/(?P<checkpoint_id>[^/]+/[^/]+)" + suffix
    return Operation(endpoint, method, re.compile(path), handler, **options)


class TinkerApi:
    """Holds the server state, routes each request to its endpoint and checks the caller's key."""

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
        self.state = EndpointState(
            config, registry, futures, faults, ledger, replay, journal,
            vocab_size=config.vocab_size or tiny_lm.DEFAULT_VOCAB_SIZE,
        )
        self.config, self.registry, self.futures, self.journal = config, registry, futures, journal
        self.faults, self.ledger, self.replay = faults, ledger, replay
        self.downloads = self.state.downloads
        self.service = ServiceEndpoints(registry)
        self.telemetry_batches = self.service.telemetry_batches
        self.session_endpoints = SessionEndpoints(registry, ledger, self.downloads)
        self.training = TrainingEndpoints(self.state)
        self.weights = WeightsEndpoints(self.state)
        self.sampling = SamplingEndpoints(self.state, generation)
        self.rest = RestEndpoints(self.state)
        self.future_endpoints = FutureEndpoints(self.state)
        self.admin_endpoints = AdminEndpoints(registry, futures)
        self.batched_futures = RetrieveFutures(futures, ledger, config)
        self.wire_flags = dialect.WireFlags(config.client_config, config.dynamic_config)
        """What the 0.38 config endpoints answer; the dynamic flags may change while the server runs."""
        self.jwt = JwtIssuer(config.jwt_lifetime)
        self.operations = self._operations()
        if config.strict_sequence:
            self.operations = sequence_rules.in_strict_sequence(self.operations, ledger)

    def expire(self, record: FutureRecord) -> None:
        """The future's result is gone: a re-submission of its write must run again."""
        self.state.expire(record)

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

    def _operations(self) -> list[Operation]:
        """The route table: endpoint, method, path, handler and request options, grouped by resource."""
        op, checkpoint_op, v1 = _op, _checkpoint_op, "/api/v1"
        service, sessions, admin = self.service, self.session_endpoints, self.admin_endpoints
        training, weights, sampling = self.training, self.weights, self.sampling
        rest, futures = self.rest, self.future_endpoints
        return [
            # service, config and auth
            op("healthz", "GET", f"{v1}/healthz", service.healthz),
            op("client_config", "POST", f"{v1}/client/config", self.wire_flags.client_config,
               request_type=dialect.ClientConfigRequest),
            op("auth_token", "POST", f"{v1}/auth/token", self.jwt.auth_token),
            op("client_dynamic_config", "POST", f"{v1}/client/dynamic_config", self.wire_flags.dynamic_config,
               request_type=dialect.ClientConfigRequest),
            op("get_server_capabilities", "GET", f"{v1}/get_server_capabilities", service.get_server_capabilities),
            op("telemetry", "POST", f"{v1}/telemetry", service.telemetry, request_type=t.TelemetrySendRequest),
            # sessions
            op("create_session", "POST", f"{v1}/create_session", sessions.create_session,
               request_type=t.CreateSessionRequest, mutates=True),
            op("session_heartbeat", "POST", f"{v1}/session_heartbeat", sessions.session_heartbeat,
               request_type=t.SessionHeartbeatRequest),
            op("finish_session", "POST", f"{v1}/sessions/{{session_id}}/finish", sessions.finish_session,
               request_type=t.FinishSessionRequest, mutates=True),
            op("join_sampling_session", "POST", f"{v1}/join_sampling_session", sessions.join_sampling_session,
               request_type=t.JoinSamplingSessionRequest, mutates=True),
            op("search_sessions", "POST", f"{v1}/sessions/search", sessions.search_sessions,
               request_type=t.SessionSearchRequest),
            op("assign_session_project", "PUT", f"{v1}/sessions/{{session_id}}/project", sessions.assign_session_project,
               request_type=AssignSessionProjectRequest, mutates=True),
            op("export_session_trace", "GET", f"{v1}/sessions/{{session_id}}/trace_export", sessions.export_session_trace),
            op("whoami", "GET", f"{v1}/auth/apikey/me", sessions.whoami),
            # models and training
            op("create_model", "POST", f"{v1}/create_model", training.create_model,
               request_type=t.CreateModelRequest, mutates=True,
               seq_identity=lambda r: (f"create_model:{r.session_id}", r.model_seq_id)),
            op("get_info", "POST", f"{v1}/get_info", training.get_info, request_type=t.GetInfoRequest),
            op("unload_model", "POST", f"{v1}/unload_model", training.unload_model,
               request_type=t.UnloadModelRequest, mutates=True),
            op("forward", "POST", f"{v1}/forward", training.forward,
               request_type=t.ForwardRequest, mutates=True, seq_identity=_train_seq),
            op("forward_backward", "POST", f"{v1}/forward_backward", training.forward_backward,
               request_type=t.ForwardBackwardRequest, mutates=True, seq_identity=_train_seq, accepts_protobuf=True),
            op("optim_step", "POST", f"{v1}/optim_step", training.optim_step,
               request_type=t.OptimStepRequest, mutates=True, seq_identity=_train_seq),
            op("create_custom_loss", "POST", f"{v1}/create_custom_loss", training.create_custom_loss,
               request_type=t.CreateCustomLossRequest, mutates=True,
               seq_identity=lambda r: (f"custom_loss:{r.session_id}", r.custom_loss_seq_id)),
            # weights and checkpoints
            op("save_weights", "POST", f"{v1}/save_weights", weights.save_weights,
               request_type=t.SaveWeightsRequest, mutates=True, seq_identity=_train_seq),
            op("load_weights", "POST", f"{v1}/load_weights", weights.load_weights,
               request_type=t.LoadWeightsRequest, mutates=True, seq_identity=_load_seq),
            op("save_weights_for_sampler", "POST", f"{v1}/save_weights_for_sampler", weights.save_weights_for_sampler,
               request_type=t.SaveWeightsForSamplerRequest, mutates=True, seq_identity=_train_seq),
            op("save_weights_external", "POST", f"{v1}/save_weights_external", weights.save_weights_external,
               request_type=t.SaveWeightsExternalRequest, mutates=True, seq_identity=_train_seq),
            op("copy_weights", "POST", f"{v1}/copy_weights", weights.copy_weights,
               request_type=t.CopyWeightsRequest, mutates=True, seq_identity=_copy_seq),
            op("weights_info", "POST", f"{v1}/weights_info", weights.weights_info, request_type=t.WeightsInfoRequest),
            checkpoint_op("external_weights_urls", "GET", "/external_weights_urls", weights.external_weights_urls),
            checkpoint_op("get_checkpoint_archive_url", "GET", "/archive", weights.get_checkpoint_archive_url),
            op("download", "GET", "/download/{token}", weights.download),
            # sampling
            op("create_sampling_session", "POST", f"{v1}/create_sampling_session", sampling.create_sampling_session,
               request_type=t.CreateSamplingSessionRequest, mutates=True,
               seq_identity=lambda r: (f"sampling_session:{r.session_id}", r.sampling_session_seq_id)),
            op("asample", "POST", f"{v1}/asample", sampling.asample,
               request_type=t.SampleRequest, mutates=True, seq_identity=_sample_seq),
            op("get_sampler", "GET", f"{v1}/samplers/{{sampler_id}}", sampling.get_sampler),
            # futures
            op("retrieve_future", "POST", f"{v1}/retrieve_future", futures.retrieve_future,
               request_type=t.FutureRetrieveRequest, polled_endpoint=futures.polled_endpoint),
            op("retrieve_futures", "POST", f"{v1}/retrieve_futures", self.batched_futures.retrieve_futures,
               request_type=t.FuturesRetrieveRequest),
            op("cancel_future", "POST", f"{v1}/cancel_future", futures.cancel_future,
               request_type=CancelFutureRequest, mutates=True),
            # REST: training runs, checkpoints, sessions
            checkpoint_op("publish_checkpoint", "POST", "/publish", rest.publish_checkpoint, mutates=True),
            checkpoint_op("unpublish_checkpoint", "DELETE", "/publish", rest.unpublish_checkpoint, mutates=True),
            checkpoint_op("set_checkpoint_ttl", "PUT", "/ttl", rest.set_checkpoint_ttl,
                          request_type=t.SetCheckpointTtlRequest, mutates=True),
            checkpoint_op("delete_checkpoint", "DELETE", "", rest.delete_checkpoint, mutates=True),
            op("list_checkpoints", "GET", f"{v1}/training_runs/{{run_id}}/checkpoints", rest.list_checkpoints),
            op("get_training_run", "GET", f"{v1}/training_runs/{{run_id}}", rest.get_training_run),
            op("list_training_runs", "GET", f"{v1}/training_runs", rest.list_training_runs),
            op("list_user_checkpoints", "GET", f"{v1}/checkpoints", rest.list_user_checkpoints),
            op("get_session", "GET", f"{v1}/sessions/{{session_id}}", rest.get_session),
            op("list_sessions", "GET", f"{v1}/sessions", rest.list_sessions),
            # account
            op("get_audit_log", "GET", f"{v1}/audit", admin.get_audit_log),
            op("get_billing_usage", "GET", f"{v1}/billing/usage/events", admin.get_billing_usage),
            op("get_current_checkpoint_storage_usage", "GET", f"{v1}/billing/usage/checkpoints/current",
               admin.get_current_checkpoint_storage_usage),
        ]
