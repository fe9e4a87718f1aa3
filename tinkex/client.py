"""``tinkex.Client``: the official SDK's ``ServiceClient``, so training code ports by changing the import.

The constructor validates the configuration and does no network I/O; it works inside or outside a running
event loop. The session is created on first use with the given ``user_metadata`` and tags (``TINKER_TAGS``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import httpx
from opentelemetry.trace import TracerProvider

from pristine_transport.logs import configure_logging

from .api_future import APIFuture, ConcurrentFuture
from .config import load_tinker_manifest, resolve_config
from .holder import Holder
from .queue_state import QueueStateCallback, QueueStateLogger
from .rest_client import RestClient
from .sampling_client import RetryConfig, SamplingClient, create_sampling_client
from .training_client import TrainingClient
from .types import (
    CreateModelRequest,
    CreateModelResponse,
    GetServerCapabilitiesResponse,
    LoraConfig,
    WeightsInfoRequest,
    WeightsInfoResponse,
)

__all__ = ["Client", "ServiceClient"]


class Client:
    """Entry point: creates training, sampling and REST clients that share one session.

    ``transport`` builds the base HTTP transport under the manifest's layer stack (one per event loop), e.g.
    ``lambda: httpx.AsyncHTTPTransport(http2=True, http1=False)`` for HTTP/2 prior knowledge. Queue-state changes
    of every future reach ``on_queue_state_change(state, reason)`` as they happen. Spans go to ``tracer_provider``
    (default: OpenTelemetry's global one).
    """

    def __init__(
        self,
        user_metadata: Mapping[str, Any] | None = None,
        project_id: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        tags: list[str] | None = None,
        telemetry: bool | None = None,
        default_headers: Mapping[str, str] | None = None,
        transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
        on_queue_state_change: QueueStateCallback | None = None,
        tracer_provider: TracerProvider | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        manifest = load_tinker_manifest()
        config = resolve_config(
            api_key=api_key,
            base_url=base_url,
            tags=tags,
            user_metadata=user_metadata,
            project_id=project_id,
            telemetry=telemetry,
            default_headers=default_headers,
            manifest=manifest,
            env=env,
        )
        self.holder = Holder(config, manifest, transport_factory=transport, env=env, tracer_provider=tracer_provider)
        configure_logging(manifest.logging, env=env, redactor=self.holder.redactor)
        self._on_queue_state_change = on_queue_state_change

    def __repr__(self) -> str:
        return f"tinkex.Client({self.holder.config!r})"

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
    ) -> TrainingClient:
        if not (train_mlp or train_attn or train_unembed):
            raise ValueError("at least one of train_mlp, train_attn, train_unembed must be True")
        request = CreateModelRequest(
            session_id=await self.holder.session_id(),
            model_seq_id=self.holder.next_model_seq_id(),
            base_model=base_model,
            user_metadata=user_metadata,
            lora_config=LoraConfig(
                rank=rank, seed=seed, train_unembed=train_unembed, train_mlp=train_mlp, train_attn=train_attn
            ),
        )
        observer = QueueStateLogger.for_training("Model creation", base_model, self._on_queue_state_change)
        try:
            handle = await self.holder.clients().futures.submit(
                "create_model", result_type=CreateModelResponse, json=request, observer=observer
            )
            created = await handle
        except Exception as exc:
            self.holder.telemetry.exception(exc)
            raise
        return TrainingClient(
            self.holder, created.model_id, base_model=base_model, on_queue_state_change=self._on_queue_state_change
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
    ) -> TrainingClient:
        return self.holder.runtime.run(
            self.create_lora_training_client_async(
                base_model, rank, seed, train_mlp, train_attn, train_unembed, user_metadata
            )
        )

    async def create_training_client_from_state_async(
        self, path: str, user_metadata: dict[str, str] | None = None, *, with_optimizer: bool = False
    ) -> TrainingClient:
        """A new LoRA training client initialised from a training checkpoint (``save_state``'s path)."""
        info = await self.holder.clients().http.call(
            "weights_info", json=WeightsInfoRequest(tinker_path=path), result_type=WeightsInfoResponse
        )
        training = await self.create_lora_training_client_async(
            info.base_model,
            rank=info.lora_rank or 32,
            train_mlp=info.train_mlp if info.train_mlp is not None else True,
            train_attn=info.train_attn if info.train_attn is not None else True,
            train_unembed=info.train_unembed if info.train_unembed is not None else True,
            user_metadata=user_metadata,
        )
        load = training.load_state_with_optimizer_async if with_optimizer else training.load_state_async
        await (await load(path))
        return training

    def create_training_client_from_state(self, path: str, user_metadata: dict[str, str] | None = None) -> TrainingClient:
        return self.holder.runtime.run(self.create_training_client_from_state_async(path, user_metadata))

    async def create_training_client_from_state_with_optimizer_async(
        self, path: str, user_metadata: dict[str, str] | None = None
    ) -> TrainingClient:
        return await self.create_training_client_from_state_async(path, user_metadata, with_optimizer=True)

    def create_training_client_from_state_with_optimizer(
        self, path: str, user_metadata: dict[str, str] | None = None
    ) -> TrainingClient:
        return self.holder.runtime.run(self.create_training_client_from_state_with_optimizer_async(path, user_metadata))

    # sampling --------------------------------------------------------------------------------------------
    async def create_sampling_client_async(
        self, model_path: str | None = None, base_model: str | None = None, retry_config: RetryConfig | None = None
    ) -> SamplingClient:
        return await create_sampling_client(
            self.holder,
            model_path=model_path,
            base_model=base_model,
            retry_config=retry_config,
            on_queue_state_change=self._on_queue_state_change,
        )

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None, retry_config: RetryConfig | None = None
    ) -> SamplingClient:
        return self.holder.runtime.run(self.create_sampling_client_async(model_path, base_model, retry_config))

    # service ---------------------------------------------------------------------------------------------
    def create_rest_client(self) -> RestClient:
        return RestClient(self.holder)

    async def get_server_capabilities_async(self) -> GetServerCapabilitiesResponse:
        return await self.holder.clients().http.call(
            "get_server_capabilities", result_type=GetServerCapabilitiesResponse
        )

    def get_server_capabilities(self) -> GetServerCapabilitiesResponse:
        return self.holder.runtime.run(self.get_server_capabilities_async())

    def get_server_capabilities_future(self) -> APIFuture[GetServerCapabilitiesResponse]:
        return ConcurrentFuture(self.holder.runtime.submit(self.get_server_capabilities_async()))

    # lifecycle -------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the heartbeat, flush telemetry and close connections."""
        self.holder.close()

    async def aclose(self) -> None:
        await self.holder.aclose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is not None:
            self.holder.telemetry.exception(exc, fatal=True)
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self.holder.telemetry.exception(exc, fatal=True)
        await self.aclose()


ServiceClient = Client
