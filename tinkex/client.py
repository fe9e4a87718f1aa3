"""``tinkex.Client``: the official SDK's ``ServiceClient``, so training code ports by changing the import.

The constructor validates the configuration and does no network I/O; it works inside or outside a running
event loop. The session is created on first use with the given ``user_metadata``, tags (``TINKER_TAGS``) and
``display_name``.

The creation methods have both official forms: the 0.38 one returns at once with a future of the client
(``.result()`` / ``await``), which 0.16 code can also use as the client itself (:mod:`tinkex.client_futures`);
the ``*_async`` twins return the client. ``close(status, detail)`` (0.38) finishes the session on the server;
``close()`` without a status (tinkex's own form) only releases local resources.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import httpx
from opentelemetry.trace import TracerProvider

from pristine_transport.errors import APIStatusError
from pristine_transport.logs import configure_logging
from pristine_transport.policy import Deadlines

from .api_future import APIFuture, completed_future, in_background
from .config import load_tinker_manifest, resolve_config
from .console import session_console_url
from .holder import Holder
from .queue_state import QueueStateCallback, QueueStateLogger
from .rest_client import RestClient
from .sampling_client import RetryConfig, SamplingClient, create_sampling_client
from .training_client import TrainingClient
from .types import (
    CreateModelRequest,
    CreateModelResponse,
    FinishSessionRequest,
    GetServerCapabilitiesResponse,
    LoraConfig,
    OptimizerConfig,
    WeightsInfoRequest,
    WeightsInfoResponse,
)

if TYPE_CHECKING:
    from .client_futures import BackcompatSamplingClientFuture, BackcompatTrainingClientFuture
    from .custom_loss_handle import LossHandle, PerDatumLossFn
    from .telemetry import Telemetry
    from .types import CustomLossInputRank

__all__ = ["Client", "ServiceClient"]

logger = logging.getLogger("tinkex")

FinishStatus = Literal["success", "errored", "interrupted"]

FINISH_ON_EXIT_TIMEOUT_S = 30.0
"""How long leaving a ``with`` block waits for the session to be finished (an unreachable server must not hold
the program's exit through every retry); the resources are released either way."""

IGNORED_HTTP_CLIENT_ARGUMENTS = frozenset(
    {"timeout", "max_retries", "default_query", "http_client", "_strict_response_validation"}
)
"""What 0.16 handed its Stainless HTTP client through ``**kwargs`` and 0.38 ignores with a warning; tinkex's retry
and timeout policy is the manifest's, so these are ignored with the same warning."""


class Client:
    """Entry point: creates training, sampling and REST clients that share one session.

    The official keywords: ``user_metadata``, ``project_id`` (else ``TINKER_PROJECT_ID``), ``display_name`` (0.38;
    shown in the console), ``base_url``, ``api_key``, ``default_headers_overrides`` (0.38; headers on every
    request). Other keywords the official SDK accepts and ignores are ignored here too, with a ``FutureWarning``.

    tinkex's own: ``transport`` builds the base HTTP transport under the manifest's layer stack (one per event
    loop), e.g. ``lambda: httpx.AsyncHTTPTransport(http2=True, http1=False)`` for HTTP/2 prior knowledge.
    Queue-state changes of every future reach ``on_queue_state_change(state, reason)`` as they happen. Spans go to
    ``tracer_provider`` (default: OpenTelemetry's global one).

    ``deadlines`` (a :class:`pristine_transport.policy.Deadlines`) bounds every wait of this client and the clients
    it creates (docs/deadlines.md): futures and plain calls (session and sampler creation, REST) alike. Default:
    the official budget, each write re-sent for up to 300 s without progress. A ``with deadlines(...)`` scope
    around a call wins over it.

    ``dialect`` (else ``TINKEX_WIRE_DIALECT``) picks the wire dialect: ``"0.16"`` (JSON bodies, the default),
    ``"0.38"`` (protobuf ``forward``/``forward_backward`` bodies, no handshake) or ``"auto"`` (ask the server with
    ``POST /api/v1/client/config`` first; a 404 or 405 means 0.16, silently).
    """

    def __init__(
        self,
        user_metadata: Mapping[str, Any] | None = None,
        project_id: str | None = None,
        *,
        display_name: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        default_headers_overrides: Mapping[str, str] | None = None,
        tags: list[str] | None = None,
        telemetry: bool | None = None,
        default_headers: Mapping[str, str] | None = None,
        transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
        on_queue_state_change: QueueStateCallback | None = None,
        tracer_provider: TracerProvider | None = None,
        env: Mapping[str, str] | None = None,
        deadlines: Deadlines | None = None,
        dialect: str | None = None,
        **kwargs: Any,
    ) -> None:
        _check_pass_through_arguments(kwargs)
        env = os.environ if env is None else env
        manifest = load_tinker_manifest()
        config = resolve_config(
            api_key=api_key,
            base_url=base_url,
            tags=tags,
            user_metadata=user_metadata,
            project_id=project_id,
            telemetry=telemetry,
            default_headers={**(default_headers or {}), **(default_headers_overrides or {})},
            manifest=manifest,
            env=env,
            deadlines=deadlines,
            dialect=dialect,
        )
        self._holder = Holder(
            config,
            manifest,
            transport_factory=transport,
            env=env,
            tracer_provider=tracer_provider,
            display_name=display_name,
        )
        self._env = env
        configure_logging(manifest.logging, env=env, redactor=self._holder.redactor)
        self._on_queue_state_change = on_queue_state_change
        self._closing: APIFuture[None] | None = None

    @property
    def holder(self) -> Holder:
        """What this client and the clients it creates share (config, session, connections)."""
        return self._holder

    def __repr__(self) -> str:
        return f"tinkex.Client({self._holder.config!r})"

    # training --------------------------------------------------------------------------------------------
    async def create_lora_training_client_async(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, str] | None = None,
        optimizer: OptimizerConfig | None = None,
    ) -> TrainingClient:
        """A new LoRA training model of ``base_model``; ``optimizer`` (0.38) picks its optimizer family
        (``AdamOptimizerConfig()``, the server's default, or e.g. ``DimuonOptimizerConfig()``)."""
        _check_trained_parts(train_mlp, train_attn, train_unembed)
        model_seq_id = self._holder.next_model_seq_id()
        request = CreateModelRequest(
            session_id=await self._holder.session_id(),
            model_seq_id=model_seq_id,
            base_model=base_model,
            user_metadata=user_metadata,
            lora_config=LoraConfig(
                rank=rank, seed=seed, train_unembed=train_unembed, train_mlp=train_mlp, train_attn=train_attn
            ),
            **({"optimizer_config": optimizer} if optimizer is not None else {}),  # [0.38] only when set
        )
        observer = QueueStateLogger.for_training("Model creation", base_model, self._on_queue_state_change)
        try:
            handle = await self._holder.clients().futures.submit(
                "create_model", result_type=CreateModelResponse, json=request, observer=observer
            )
            created = await handle
        except Exception as exc:
            self._holder.telemetry.exception(exc)
            raise
        return TrainingClient(
            self._holder,
            model_seq_id,
            created.model_id,
            base_model=base_model,
            on_queue_state_change=self._on_queue_state_change,
        )

    def create_lora_training_client(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, str] | None = None,
        optimizer: OptimizerConfig | None = None,
    ) -> BackcompatTrainingClientFuture:
        """Returns at once: a future of the client (``.result()`` / ``await``) that also works as the client."""
        from .client_futures import BackcompatTrainingClientFuture

        _check_trained_parts(train_mlp, train_attn, train_unembed)
        return BackcompatTrainingClientFuture(
            in_background(
                self.create_lora_training_client_async(
                    base_model, rank, seed, train_mlp, train_attn, train_unembed, user_metadata, optimizer
                )
            ),
            holder=self._holder,
        )

    async def create_training_client_from_state_async(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
        optimizer: OptimizerConfig | None = None,
        *,
        with_optimizer: bool = False,
    ) -> TrainingClient:
        """A new LoRA training client initialised from a training checkpoint (``save_state``'s path).

        ``base_model`` (0.38) overrides the checkpoint's (it must be compatible), ``weights_access_token`` (0.38)
        reads a checkpoint of another account, ``optimizer`` (0.38) picks the new model's optimizer. The requests
        are 0.16's: ``weights_info``, ``create_model``, then ``load_weights``. A mapping in ``base_model``'s place
        is 0.16's positional ``user_metadata`` (``create_training_client_from_state(path, {"k": "v"})``).
        """
        base_model, user_metadata = _from_state_arguments(base_model, user_metadata)
        info = await self._holder.clients().http.call(
            "weights_info", json=WeightsInfoRequest(tinker_path=path), result_type=WeightsInfoResponse
        )
        training = await self.create_lora_training_client_async(
            base_model if base_model is not None else info.base_model,
            rank=info.lora_rank or 32,
            train_mlp=info.train_mlp if info.train_mlp is not None else True,
            train_attn=info.train_attn if info.train_attn is not None else True,
            train_unembed=info.train_unembed if info.train_unembed is not None else True,
            user_metadata=user_metadata,
            optimizer=optimizer,
        )
        load = training.load_state_with_optimizer_async if with_optimizer else training.load_state_async
        await (await load(path, weights_access_token))
        return training

    def create_training_client_from_state(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
        optimizer: OptimizerConfig | None = None,
    ) -> BackcompatTrainingClientFuture:
        from .client_futures import BackcompatTrainingClientFuture

        return BackcompatTrainingClientFuture(
            in_background(
                self.create_training_client_from_state_async(
                    path, base_model, user_metadata, weights_access_token, optimizer
                )
            ),
            holder=self._holder,
        )

    async def create_training_client_from_state_with_optimizer_async(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
    ) -> TrainingClient:
        return await self.create_training_client_from_state_async(
            path, base_model, user_metadata, weights_access_token, with_optimizer=True
        )

    def create_training_client_from_state_with_optimizer(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
    ) -> BackcompatTrainingClientFuture:
        from .client_futures import BackcompatTrainingClientFuture

        return BackcompatTrainingClientFuture(
            in_background(
                self.create_training_client_from_state_with_optimizer_async(
                    path, base_model, user_metadata, weights_access_token
                )
            ),
            holder=self._holder,
        )

    # sampling --------------------------------------------------------------------------------------------
    async def create_sampling_client_async(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
    ) -> SamplingClient:
        """A sampler of a saved sampler checkpoint (``model_path``) or of ``base_model``. With
        ``record_stability_info`` (0.38) every sample records stability information for its sequences."""
        return await create_sampling_client(
            self._holder,
            model_path=model_path,
            base_model=base_model,
            retry_config=retry_config,
            record_stability_info=record_stability_info,
            on_queue_state_change=self._on_queue_state_change,
        )

    def create_sampling_client(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
    ) -> BackcompatSamplingClientFuture:
        """Returns at once: a future of the client (``.result()`` / ``await``) that also works as the client."""
        from .client_futures import BackcompatSamplingClientFuture

        if model_path is None and base_model is None:
            raise ValueError("create_sampling_client needs model_path= (a tinker://…/sampler_weights/… path) or base_model=")
        return BackcompatSamplingClientFuture(
            in_background(
                self.create_sampling_client_async(model_path, base_model, retry_config, record_stability_info)
            ),
            holder=self._holder,
        )

    # service ---------------------------------------------------------------------------------------------
    def create_rest_client(self) -> RestClient:
        return RestClient(self._holder)

    async def get_server_capabilities_async(self) -> GetServerCapabilitiesResponse:
        return await self._holder.clients().http.call(
            "get_server_capabilities", result_type=GetServerCapabilitiesResponse
        )

    def get_server_capabilities(self) -> GetServerCapabilitiesResponse:
        return self._holder.runtime.run(self.get_server_capabilities_async())

    def get_server_capabilities_future(self) -> APIFuture[GetServerCapabilitiesResponse]:
        return in_background(self.get_server_capabilities_async())

    def copy_weights(
        self, path: str, *, ttl_seconds: int | None = None, weights_access_token: str | None = None
    ) -> APIFuture[str]:
        """Copy weights into this client's project (``project_id``); a future of the copy's tinker path."""
        return self.create_rest_client().copy_weights(
            path,
            self._holder.config.project_id,
            ttl_seconds=ttl_seconds,
            weights_access_token=weights_access_token,
        )

    def create_custom_loss(
        self, fn: PerDatumLossFn, input_ranks: Mapping[str, CustomLossInputRank]
    ) -> APIFuture[LossHandle]:
        """A per-datum custom loss for ``TrainingClient.forward_backward_custom`` (0.38), run client-side.

        ``fn(logprobs, <one tensor per loss_fn_inputs key it names>)`` returns ``(loss, metrics)`` for one datum;
        the losses are summed. ``input_ranks`` gives each parameter's rank (``logprobs`` included): 0, 1 or 2.
        """
        from .custom_loss_handle import make_loss_handle

        async def create() -> LossHandle:
            return make_loss_handle(fn, input_ranks, await self._holder.session_id())

        return in_background(create())

    def get_console_url(self) -> str:
        """The Tinker Console page of this client's session (the sessions list before it exists)."""
        return session_console_url(self._holder.known_session_id(), self._env)

    def get_telemetry(self) -> Telemetry | None:
        return self._holder.telemetry

    # lifecycle -------------------------------------------------------------------------------------------
    def close(self, status: FinishStatus | None = None, detail: str | None = None) -> APIFuture[None]:
        """Release the client: stop the heartbeat, flush telemetry, close connections.

        With a ``status`` (0.38: ``"success"``, ``"errored"`` or ``"interrupted"``, and an optional ``detail``) the
        session is first finished on the server, which then refuses further work on it; the returned future
        completes once it is (``.result()`` / ``await``; a failure to finish is raised there). Without one
        (tinkex's form) the session is left to expire and the future is already done. Closing twice is harmless.
        """
        if self._closing is not None:
            return self._closing
        if status is None:
            self._holder.close()
            self._closing = completed_future(None)
        else:
            request = FinishSessionRequest.for_status(status, detail)
            self._closing = in_background(self._finish_and_release(request))
        return self._closing

    async def aclose(self, status: FinishStatus | None = None, detail: str | None = None) -> None:
        """The async :meth:`close`: releases this loop's connections here, then the rest."""
        if status is not None:
            await self.close(status, detail)
            return
        self._closing = self._closing or completed_future(None)
        await self._holder.aclose()

    async def _finish_and_release(self, request: FinishSessionRequest) -> None:
        try:
            session_id = self._holder.known_session_id()
            if session_id is not None:
                await self._holder.clients().http.call(
                    "finish_session", path_params={"session_id": session_id}, json=request
                )
        finally:
            await asyncio.to_thread(self._holder.close)

    def __enter__(self) -> Client:
        if self._holder.closed:
            raise RuntimeError("this tinkex client is closed")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is not None:
            self._holder.telemetry.exception(exc, fatal=True)
        self._finish_on_exit(_exit_status(exc_type))

    async def __aenter__(self) -> Client:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self._holder.telemetry.exception(exc, fatal=True)
        own_loop_clients = self._holder.known_session_id() is None
        if own_loop_clients:
            await self.aclose()
            return
        try:
            await self.close(_exit_status(exc_type)).result_async(FINISH_ON_EXIT_TIMEOUT_S)
        except Exception as error:  # leaving the block must not hide its own outcome
            _log_finish_failure(error)
            await self._holder.aclose()

    def _finish_on_exit(self, status: FinishStatus) -> None:
        """As the official SDK, leaving the ``with`` block finishes the session with the block's outcome; a
        failure to finish is logged, not raised over the block's own outcome."""
        if self._holder.known_session_id() is None:
            self.close()
            return
        try:
            self.close(status).result(FINISH_ON_EXIT_TIMEOUT_S)
        except Exception as error:
            _log_finish_failure(error)
            self._holder.close()  # released now even if the finish is still retrying


def _check_pass_through_arguments(kwargs: Mapping[str, Any]) -> None:
    """Warn about the official HTTP-client keywords (ignored, as 0.38 does); refuse any other name, which is a
    typo more often than not (0.38 would ignore it too, silently but for a warning)."""
    unknown = sorted(set(kwargs) - IGNORED_HTTP_CLIENT_ARGUMENTS)
    if unknown:
        raise TypeError(f"tinkex.Client got unexpected keyword arguments: {', '.join(unknown)}")
    if kwargs:
        warnings.warn(
            f"tinkex.Client ignores unsupported arguments: {', '.join(sorted(kwargs))} (retries and timeouts "
            "follow tinkex's manifest)",
            FutureWarning,
            stacklevel=3,
        )


def _check_trained_parts(train_mlp: bool, train_attn: bool, train_unembed: bool) -> None:
    """A LoRA model trains at least one of its parts; the sync form checks at the call, before the future."""
    if not (train_mlp or train_attn or train_unembed):
        raise ValueError("at least one of train_mlp, train_attn, train_unembed must be True")


def _from_state_arguments(
    base_model: str | Mapping[str, str] | None, user_metadata: dict[str, str] | None
) -> tuple[str | None, dict[str, str] | None]:
    """0.16's ``(path, user_metadata)`` and 0.38's ``(path, base_model, user_metadata, ...)`` told apart by type:
    a base model is a string, metadata a mapping."""
    if isinstance(base_model, Mapping):
        if user_metadata is not None:
            raise TypeError("user_metadata given twice (positionally in base_model's place, and by keyword)")
        return None, dict(base_model)
    return base_model, user_metadata


def _exit_status(exc_type: type[BaseException] | None) -> FinishStatus:
    if exc_type is None:
        return "success"
    return "errored" if issubclass(exc_type, Exception) else "interrupted"


def _log_finish_failure(error: Exception) -> None:
    if isinstance(error, APIStatusError) and error.status_code == 404:
        logger.info("the server does not finish sessions (no /sessions/{id}/finish); the session will expire")
    else:
        logger.warning("could not finish the session on leaving the client's block: %s", error)


ServiceClient = Client
