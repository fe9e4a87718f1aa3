"""``SamplingClient``: sample and compute logprobs from one sampler (a saved sampler checkpoint or a base model).

Each sample is one logical write: its HTTP re-sends (the manifest's sampling policy, the 429 backpressure loop)
carry the same idempotency key and the same ``seq_id``, so a sample whose answer was lost is not executed twice.
A new request (new ``seq_id``, new key) is made only when the server declares the first one's result gone (410
on its future). The dispatch permits of the ``sample`` pool are released once the future id is known; polling
holds none (official semantics).

A ``SamplingClient`` pickles: the copy in another process joins the same session and sampler without creating a
new session, and numbers its requests from a random high base so they never collide with the original's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pristine_transport import extensions
from pristine_transport.futures import FutureExpiredError

from .api_future import APIFuture, ConcurrentFuture
from .estimate import estimate_model_input_bytes
from .queue_state import QueueStateCallback, QueueStateLogger
from .types import (
    CreateSamplingSessionRequest,
    CreateSamplingSessionResponse,
    GetSamplerResponse,
    ModelInput,
    ParsedCheckpointTinkerPath,
    SampleRequest,
    SampleResponse,
    SamplingParams,
)

if TYPE_CHECKING:
    from .holder import Holder
    from .tokenizer import Tokenizer

__all__ = ["RetryConfig", "SamplingClient", "create_sampling_client"]

logger = logging.getLogger("tinkex.sampling")


@dataclass(frozen=True)
class RetryConfig:
    """Per-sample policy on top of the manifest's transport retries.

    ``timeout_s`` is a deadline for one whole sample (None: none), so a stuck request surfaces as a
    ``TimeoutError`` instead of the official SDK's silent two-hour hang; ``max_resubmits`` bounds how often a
    sample whose result the server declared gone (410) is sent again.
    """

    timeout_s: float | None = None
    max_resubmits: int = 5
    resubmit_delay_s: float = 0.5


async def create_sampling_client(
    holder: Holder,
    *,
    model_path: str | None = None,
    base_model: str | None = None,
    retry_config: RetryConfig | None = None,
    on_queue_state_change: QueueStateCallback | None = None,
) -> SamplingClient:
    if model_path is None and base_model is None:
        raise ValueError("create_sampling_client needs model_path= (a tinker://…/sampler_weights/… path) or base_model=")
    if model_path is not None:
        _check_sampler_path(model_path)
    request = CreateSamplingSessionRequest(
        session_id=await holder.session_id(),
        sampling_session_seq_id=holder.next_sampling_session_seq_id(),
        base_model=base_model,
        model_path=model_path,
    )
    response = await holder.clients().http.call(
        "create_sampling_session", json=request, result_type=CreateSamplingSessionResponse
    )
    return SamplingClient(
        holder,
        response.sampling_session_id,
        retry_config=retry_config,
        on_queue_state_change=on_queue_state_change,
    )


def _check_sampler_path(path: str) -> None:
    if not path.startswith("tinker://"):
        raise ValueError(f"model_path must be a tinker:// path, got {path!r}")
    parsed = ParsedCheckpointTinkerPath.from_tinker_path(path)
    if parsed.checkpoint_type == "training":
        raise ValueError(
            f"{path!r} is a training-state checkpoint (saved with save_state); sampling needs a sampler checkpoint: "
            "save one with TrainingClient.save_weights_for_sampler(name) and pass its tinker://…/sampler_weights/… path"
        )


class SamplingClient:
    def __init__(
        self,
        holder: Holder,
        sampling_session_id: str,
        *,
        retry_config: RetryConfig | None = None,
        on_queue_state_change: QueueStateCallback | None = None,
        seq_id_base: int = 0,
    ) -> None:
        self.holder = holder
        self.sampling_session_id = sampling_session_id
        self.retry_config = retry_config or RetryConfig()
        self._seq_ids = itertools.count(seq_id_base)
        self._seq_lock = threading.Lock()
        self._observer = QueueStateLogger.for_sampling(sampling_session_id, on_queue_state_change)

    def __repr__(self) -> str:
        return f"SamplingClient(sampling_session_id={self.sampling_session_id!r})"

    def _next_seq_id(self) -> int:
        with self._seq_lock:
            return next(self._seq_ids)

    # sampling --------------------------------------------------------------------------------------------
    async def sample_async(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> SampleResponse:
        work = self._sample(prompt, num_samples, sampling_params, include_prompt_logprobs, topk_prompt_logprobs)
        try:
            if self.retry_config.timeout_s is None:
                return await work
            deadline = asyncio.timeout(self.retry_config.timeout_s)
            try:
                async with deadline:
                    return await work
            except TimeoutError:
                if not deadline.expired():
                    raise  # the sample's own TimeoutError, not this deadline
                raise TimeoutError(
                    f"sample on sampler {self.sampling_session_id} did not finish within {self.retry_config.timeout_s} s"
                ) from None
        except Exception as exc:
            self.holder.telemetry.exception(exc)
            raise

    def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> APIFuture[SampleResponse]:
        return ConcurrentFuture(
            self.holder.runtime.submit(
                self.sample_async(prompt, num_samples, sampling_params, include_prompt_logprobs, topk_prompt_logprobs)
            )
        )

    async def _sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool,
        topk_prompt_logprobs: int,
    ) -> SampleResponse:
        size = estimate_model_input_bytes(prompt)
        resolver = self.holder.clients().futures
        for resubmit in itertools.count():
            request = SampleRequest(
                num_samples=num_samples,
                prompt=prompt,
                sampling_params=sampling_params,
                sampling_session_id=self.sampling_session_id,
                seq_id=self._next_seq_id(),
                prompt_logprobs=include_prompt_logprobs,
                topk_prompt_logprobs=topk_prompt_logprobs,
            )
            handle = await resolver.submit(
                "asample",
                result_type=SampleResponse,
                json=request,
                observer=self._observer,
                extensions={extensions.SIZE_BYTES: size},
            )
            try:
                return await handle
            except FutureExpiredError:
                if resubmit >= self.retry_config.max_resubmits:
                    raise
                delay = self.retry_config.resubmit_delay_s * 2**resubmit
                logger.info("sample %s expired on the server; sending it again in %.2fs", handle.request_id, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def compute_logprobs_async(self, prompt: ModelInput) -> list[float | None]:
        response = await self.sample_async(prompt, 1, SamplingParams(max_tokens=1), include_prompt_logprobs=True)
        if response.prompt_logprobs is None:
            raise ValueError("compute_logprobs: the server answered without prompt_logprobs")
        return response.prompt_logprobs

    def compute_logprobs(self, prompt: ModelInput) -> APIFuture[list[float | None]]:
        return ConcurrentFuture(self.holder.runtime.submit(self.compute_logprobs_async(prompt)))

    # sampler info ----------------------------------------------------------------------------------------
    async def get_sampler_async(self) -> GetSamplerResponse:
        return await self.holder.clients().http.call(
            "get_sampler", path_params={"sampler_id": self.sampling_session_id}, result_type=GetSamplerResponse
        )

    async def get_base_model_async(self) -> str:
        return (await self.get_sampler_async()).base_model

    def get_base_model(self) -> str:
        return self.holder.runtime.run(self.get_base_model_async())

    async def get_tokenizer_async(self) -> Tokenizer:
        from .tokenizer import get_tokenizer

        return get_tokenizer(await self.get_base_model_async())

    def get_tokenizer(self) -> Tokenizer:
        return self.holder.runtime.run(self.get_tokenizer_async())

    # pickling --------------------------------------------------------------------------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        session = self.holder._session
        if session is None or not session.done():
            raise RuntimeError("a SamplingClient can be pickled once its session exists")
        return (
            _rebuild_sampling_client,
            (self.holder.config, session.result(), self.sampling_session_id, self.retry_config),
        )


_SHADOW_HOLDERS: dict[tuple[str, str], Holder] = {}
_SHADOW_LOCK = threading.Lock()


def _rebuild_sampling_client(config: Any, session_id: str, sampling_session_id: str, retry_config: RetryConfig) -> SamplingClient:
    """Unpickling side: join the session through one shadow holder per (base URL, session) in this process."""
    from .config import load_tinker_manifest
    from .holder import Holder

    with _SHADOW_LOCK:
        key = (config.base_url, session_id)
        holder = _SHADOW_HOLDERS.get(key)
        if holder is None:
            holder = Holder(config, load_tinker_manifest(), session_id=session_id)
            _SHADOW_HOLDERS[key] = holder
    seq_base = 1_000_000_000 * (uuid.uuid4().int % 1_000_000_000 + 1)
    return SamplingClient(holder, sampling_session_id, retry_config=retry_config, seq_id_base=seq_base)
