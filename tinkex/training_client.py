"""``TrainingClient``: forward / backward / optimizer steps and weights of one LoRA model.

Every training request gets the next request id of this client (wire ``seq_id = request_id + 1``) and is
dispatched only once the previous one has its future id — not once it completes — so ``forward_backward`` and
``optim_step`` can be submitted back to back and the server still sees them in order (official ``_take_turn``).
The ``*_async`` methods run on the caller's loop and return an :class:`APIFuture` (await twice, as in the
official SDK); the sync ones return at once with an ``APIFuture`` computed on the background loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from pristine_transport import extensions
from pristine_transport.futures import FutureHandle, combine

from .api_future import APIFuture, AwaitableFuture, ConcurrentFuture, completed_future
from .chunking import chunk_data, combine_forward_backward_outputs
from .custom_loss import compute_weights, merge_metrics, prepare_forward_data
from .estimate import estimate_datum_bytes
from .queue_state import QueueStateCallback, QueueStateLogger
from .types import (
    AdamParams,
    Datum,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
    ForwardRequest,
    GetInfoRequest,
    GetInfoResponse,
    LoadWeightsRequest,
    LoadWeightsResponse,
    LossFnType,
    OptimStepRequest,
    OptimStepResponse,
    SaveWeightsForSamplerRequest,
    SaveWeightsForSamplerResponse,
    SaveWeightsForSamplerResponseInternal,
    SaveWeightsRequest,
    SaveWeightsResponse,
)

if TYPE_CHECKING:
    from .holder import Holder
    from .sampling_client import RetryConfig, SamplingClient
    from .tokenizer import Tokenizer

__all__ = ["TrainingClient"]

T = TypeVar("T")
CustomLossFn = Callable[[list[Datum], list[Any]], "tuple[Any, dict[str, float]]"]


class _Turns:
    """Dispatch order across loops and threads: request ``n`` waits until request ``n - 1`` was dispatched."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_id = 0
        self._dispatched: dict[int, concurrent.futures.Future[None]] = {}

    def reserve(self, count: int) -> list[int]:
        with self._lock:
            ids = list(range(self._next_id, self._next_id + count))
            self._next_id += count
            for request_id in ids:
                self._dispatched[request_id] = concurrent.futures.Future()
            return ids

    async def wait_for(self, request_id: int) -> None:
        previous = self._dispatched.get(request_id - 1)
        if previous is not None:
            await asyncio.wrap_future(previous)

    def mark_dispatched(self, request_id: int) -> None:
        """Successors may go once this one has a future id, has failed to get one, or will never be sent."""
        dispatched = self._dispatched.get(request_id)  # gone once its successor was marked: marked already
        if dispatched is not None and not dispatched.done():
            dispatched.set_result(None)
        self._dispatched.pop(request_id - 1, None)


class TrainingClient:
    def __init__(
        self,
        holder: Holder,
        model_id: str,
        *,
        base_model: str | None = None,
        on_queue_state_change: QueueStateCallback | None = None,
    ) -> None:
        self.holder = holder
        self.model_id = model_id
        self.base_model = base_model
        self._turns = _Turns()
        self._on_queue_state_change = on_queue_state_change  # handed on to the samplers this client makes
        self._observer = QueueStateLogger.for_training("Training", model_id, on_queue_state_change)

    def __repr__(self) -> str:
        return f"TrainingClient(model_id={self.model_id!r})"

    # dispatch --------------------------------------------------------------------------------------------
    async def _dispatch(
        self,
        request_id: int,
        endpoint: str,
        body: msgspec.Struct,
        result_type: type[T],
        size_bytes: int | None = None,
    ) -> FutureHandle[T]:
        try:
            await self._turns.wait_for(request_id)
            ext = {extensions.SIZE_BYTES: size_bytes} if size_bytes is not None else None
            return await self.holder.clients().futures.submit(
                endpoint, result_type=result_type, json=body, observer=self._observer, extensions=ext
            )
        except Exception as exc:
            self.holder.telemetry.exception(exc)
            raise
        finally:
            self._turns.mark_dispatched(request_id)

    def _future(self, awaitable: Awaitable[Any], transform: Callable[[Any], T] | None = None) -> APIFuture[T]:
        """The user's future of a dispatched request; its failure is reported to telemetry once."""
        return AwaitableFuture(awaitable, transform, on_error=self.holder.telemetry.exception)

    def _in_background(self, work: Coroutine[Any, Any, APIFuture[T]]) -> APIFuture[T]:
        async def resolve() -> T:
            future = await work
            return await future

        return ConcurrentFuture(self.holder.runtime.submit(resolve()))

    # forward / backward ----------------------------------------------------------------------------------
    async def forward_backward_async(
        self, data: list[Datum], loss_fn: LossFnType, loss_fn_config: dict[str, float] | None = None
    ) -> APIFuture[ForwardBackwardOutput]:
        return await self._forward_backward(self._reserve_chunks(data), loss_fn, loss_fn_config, backward=True)

    def forward_backward(
        self, data: list[Datum], loss_fn: LossFnType, loss_fn_config: dict[str, float] | None = None
    ) -> APIFuture[ForwardBackwardOutput]:
        chunks = self._reserve_chunks(data)
        return self._in_background(self._forward_backward(chunks, loss_fn, loss_fn_config, backward=True))

    async def forward_async(
        self, data: list[Datum], loss_fn: LossFnType, loss_fn_config: dict[str, float] | None = None
    ) -> APIFuture[ForwardBackwardOutput]:
        return await self._forward_backward(self._reserve_chunks(data), loss_fn, loss_fn_config, backward=False)

    def forward(
        self, data: list[Datum], loss_fn: LossFnType, loss_fn_config: dict[str, float] | None = None
    ) -> APIFuture[ForwardBackwardOutput]:
        chunks = self._reserve_chunks(data)
        return self._in_background(self._forward_backward(chunks, loss_fn, loss_fn_config, backward=False))

    def _reserve_chunks(self, data: Sequence[Datum]) -> list[tuple[int, list[Datum]]]:
        chunks = chunk_data(list(data))
        return list(zip(self._turns.reserve(len(chunks)), chunks))

    async def _forward_backward(
        self,
        chunks: list[tuple[int, list[Datum]]],
        loss_fn: LossFnType,
        loss_fn_config: dict[str, float] | None,
        *,
        backward: bool,
    ) -> APIFuture[ForwardBackwardOutput]:
        if not chunks:
            return completed_future(combine_forward_backward_outputs([]))
        endpoint = "forward_backward" if backward else "forward"
        handles = []
        try:
            for request_id, chunk in chunks:
                batch = ForwardBackwardInput(data=chunk, loss_fn=loss_fn, loss_fn_config=loss_fn_config)
                body: msgspec.Struct
                if backward:
                    body = ForwardBackwardRequest(forward_backward_input=batch, model_id=self.model_id, seq_id=request_id + 1)
                else:
                    body = ForwardRequest(forward_input=batch, model_id=self.model_id, seq_id=request_id + 1)
                size = sum(estimate_datum_bytes(d) for d in chunk)
                handles.append(await self._dispatch(request_id, endpoint, body, ForwardBackwardOutput, size))
        finally:
            # A failed chunk leaves the later ones unsent; the next request must not wait for them forever.
            for request_id, _ in chunks:
                self._turns.mark_dispatched(request_id)
        return self._future(combine(handles, combine_forward_backward_outputs))

    async def forward_backward_custom_async(
        self, data: list[Datum], loss_fn: CustomLossFn
    ) -> APIFuture[ForwardBackwardOutput]:
        """Client-side custom loss (official SDK flow): forward for logprobs, the user's loss and its gradient
        with respect to the logprobs in torch, then a ``cross_entropy`` forward_backward with ``weights = -grad``."""
        forward_future = await self.forward_async(prepare_forward_data(data), "cross_entropy")
        forward_output = await forward_future
        weighted, metrics = await compute_weights(data, forward_output, loss_fn)
        backward_future = await self.forward_backward_async(weighted, "cross_entropy")
        return AwaitableFuture(backward_future.result_async(), lambda out: merge_metrics(out, metrics))

    def forward_backward_custom(self, data: list[Datum], loss_fn: CustomLossFn) -> APIFuture[ForwardBackwardOutput]:
        return self._in_background(self.forward_backward_custom_async(data, loss_fn))

    # optimizer and weights -------------------------------------------------------------------------------
    async def optim_step_async(self, adam_params: AdamParams) -> APIFuture[OptimStepResponse]:
        return await self._optim_step(self._turns.reserve(1)[0], adam_params)

    def optim_step(self, adam_params: AdamParams) -> APIFuture[OptimStepResponse]:
        return self._in_background(self._optim_step(self._turns.reserve(1)[0], adam_params))

    async def _optim_step(self, request_id: int, adam_params: AdamParams) -> APIFuture[OptimStepResponse]:
        body = OptimStepRequest(adam_params=adam_params, model_id=self.model_id, seq_id=request_id + 1)
        return self._future(await self._dispatch(request_id, "optim_step", body, OptimStepResponse))

    async def save_state_async(self, name: str, ttl_seconds: int | None = None) -> APIFuture[SaveWeightsResponse]:
        return await self._save_state(self._turns.reserve(1)[0], name, ttl_seconds)

    def save_state(self, name: str, ttl_seconds: int | None = None) -> APIFuture[SaveWeightsResponse]:
        return self._in_background(self._save_state(self._turns.reserve(1)[0], name, ttl_seconds))

    async def _save_state(self, request_id: int, name: str, ttl: int | None) -> APIFuture[SaveWeightsResponse]:
        body = SaveWeightsRequest(model_id=self.model_id, path=name, seq_id=request_id + 1, ttl_seconds=ttl)
        return self._future(await self._dispatch(request_id, "save_weights", body, SaveWeightsResponse))

    async def load_state_async(self, path: str) -> APIFuture[LoadWeightsResponse]:
        return await self._load_state(self._turns.reserve(1)[0], path, optimizer=False)

    def load_state(self, path: str) -> APIFuture[LoadWeightsResponse]:
        return self._in_background(self._load_state(self._turns.reserve(1)[0], path, optimizer=False))

    async def load_state_with_optimizer_async(self, path: str) -> APIFuture[LoadWeightsResponse]:
        return await self._load_state(self._turns.reserve(1)[0], path, optimizer=True)

    def load_state_with_optimizer(self, path: str) -> APIFuture[LoadWeightsResponse]:
        return self._in_background(self._load_state(self._turns.reserve(1)[0], path, optimizer=True))

    async def _load_state(self, request_id: int, path: str, *, optimizer: bool) -> APIFuture[LoadWeightsResponse]:
        body = LoadWeightsRequest(model_id=self.model_id, path=path, optimizer=optimizer, seq_id=request_id + 1)
        return self._future(await self._dispatch(request_id, "load_weights", body, LoadWeightsResponse))

    async def save_weights_for_sampler_async(
        self, name: str, ttl_seconds: int | None = None
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        return await self._save_for_sampler(self._turns.reserve(1)[0], name, ttl_seconds)

    def save_weights_for_sampler(self, name: str, ttl_seconds: int | None = None) -> APIFuture[SaveWeightsForSamplerResponse]:
        return self._in_background(self._save_for_sampler(self._turns.reserve(1)[0], name, ttl_seconds))

    async def _save_for_sampler(
        self, request_id: int, name: str, ttl: int | None
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        body = SaveWeightsForSamplerRequest(model_id=self.model_id, path=name, seq_id=request_id + 1, ttl_seconds=ttl)
        handle = await self._dispatch(request_id, "save_weights_for_sampler", body, SaveWeightsForSamplerResponseInternal)

        def named(result: SaveWeightsForSamplerResponseInternal) -> SaveWeightsForSamplerResponse:
            if result.path is None:
                raise ValueError(f"save_weights_for_sampler({name!r}) answered without a path: {result!r}")
            return SaveWeightsForSamplerResponse(path=result.path)

        return self._future(handle, named)

    async def save_weights_and_get_sampling_client_async(
        self, name: str | None = None, retry_config: RetryConfig | None = None
    ) -> SamplingClient:
        """Snapshot the weights for sampling and return a client for them.

        Without ``name`` this is the official ephemeral snapshot (no checkpoint is kept). Unlike the official SDK,
        which silently ignores ``name``, a given name saves a named sampler checkpoint and samples from it.
        """
        from .sampling_client import SamplingClient

        if name is not None:
            saved = await (await self.save_weights_for_sampler_async(name))
            return await self.create_sampling_client_async(saved.path, retry_config)
        request_id = self._turns.reserve(1)[0]
        body = SaveWeightsForSamplerRequest(
            model_id=self.model_id,
            seq_id=request_id + 1,
            sampling_session_seq_id=self.holder.next_sampling_session_seq_id(),
            ttl_seconds=None,
        )
        result: SaveWeightsForSamplerResponseInternal = await self._future(
            await self._dispatch(request_id, "save_weights_for_sampler", body, SaveWeightsForSamplerResponseInternal)
        )
        if result.sampling_session_id is None:
            raise ValueError(f"ephemeral save_weights_for_sampler answered without a sampling_session_id: {result!r}")
        return SamplingClient(
            self.holder,
            result.sampling_session_id,
            retry_config=retry_config,
            on_queue_state_change=self._on_queue_state_change,
        )

    def save_weights_and_get_sampling_client(
        self, name: str | None = None, retry_config: RetryConfig | None = None
    ) -> SamplingClient:
        return self.holder.runtime.run(self.save_weights_and_get_sampling_client_async(name, retry_config))

    async def create_sampling_client_async(self, model_path: str, retry_config: RetryConfig | None = None) -> SamplingClient:
        from .sampling_client import create_sampling_client

        return await create_sampling_client(
            self.holder,
            model_path=model_path,
            retry_config=retry_config,
            on_queue_state_change=self._on_queue_state_change,
        )

    def create_sampling_client(self, model_path: str, retry_config: RetryConfig | None = None) -> SamplingClient:
        return self.holder.runtime.run(self.create_sampling_client_async(model_path, retry_config))

    # info ------------------------------------------------------------------------------------------------
    async def get_info_async(self) -> GetInfoResponse:
        return await self.holder.clients().http.call(
            "get_info", json=GetInfoRequest(model_id=self.model_id), result_type=GetInfoResponse
        )

    def get_info(self) -> GetInfoResponse:
        return self.holder.runtime.run(self.get_info_async())

    async def get_tokenizer_async(self) -> Tokenizer:
        from .tokenizer import get_tokenizer

        info = await self.get_info_async()
        model_name = info.model_data.model_name or info.model_name or self.base_model or ""
        return get_tokenizer(model_name, tokenizer_id=info.model_data.tokenizer_id)

    def get_tokenizer(self) -> Tokenizer:
        return self.holder.runtime.run(self.get_tokenizer_async())
