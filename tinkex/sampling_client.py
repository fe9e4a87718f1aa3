"""``SamplingClient``: sample and compute logprobs from one sampler (a saved sampler checkpoint or a base model).

Each sample is one logical write: its HTTP re-sends (the manifest's sampling policy, the 429 backpressure loop)
carry the same idempotency key and the same ``seq_id``, so a sample whose answer was lost is not executed twice.
A new request (new ``seq_id``, new key) is made only when the server declares the first one's result gone (its
future answers the manifest's expiry status), as often as the sampling endpoint's ``resubmit_on_expiry`` says. The
dispatch permits of the ``sample`` pool are released once the future id is known; polling holds none (official
semantics).

The server's sampling flags (``client/config``, decided in :mod:`tinkex.wire.sampling_flags`) choose how: with
``sample_use_retrieve_futures`` a sample waits on its session's batched poller (:mod:`tinkex.session_poller`), then
fetches its result with one ``retrieve_future``; ``sample_no_retries`` sends an expired sample no second time;
``sample_join_sampling_session`` has a copy of the client ask the server for its clone number.

A ``SamplingClient`` pickles: the copy in another process joins the same session and sampler without creating a
new session, and numbers its requests from a high base so they never collide with the original's: a random one, or
the server's clone number when it says ``sample_join_sampling_session``. A client inherited through ``os.fork()``
renumbers the same way in the child (see ``docs/fanout.md``).
``get_sampler_handle()`` / ``SamplingClient.from_sampler_handle(handle)`` (0.38) do the same through a string that
carries no credentials.

The 0.38 sampling keywords (``topk_sample_logprobs``, ``target_prompt_logprobs``, ``prompt_alt_tokens_k``,
``prompt_logprobs_last_n``, the client's ``record_stability_info``) reach the wire only when set.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import itertools
import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from pristine_transport import extensions
from pristine_transport.deadlines import DEADLINES, effective_deadlines
from pristine_transport.future_results import request_id_of
from pristine_transport.futures import FutureExpiredError, FutureResolver
from pristine_transport.manifest import ResubmitSpec
from pristine_transport.policy import backoff_delay

from .api_future import APIFuture, in_background
from .call_spans import SAMPLING_SESSION_ID_ATTRIBUTE, SEQ_ID_ATTRIBUTE
from .estimate import estimate_model_input_bytes
from .holder import fresh_seq_id_base
from .queue_state import QueueState, QueueStateCallback, QueueStateLogger
from .runtime import after_fork_in_child, loop_is_usable
from .sdk_method import detached
from .session_poller import SessionPoller
from .types import (
    CreateSamplingSessionRequest,
    CreateSamplingSessionResponse,
    GetSamplerResponse,
    JoinSamplingSessionRequest,
    JoinSamplingSessionResponse,
    ModelInput,
    ParsedCheckpointTinkerPath,
    SampleRequest,
    SampleResponse,
    SamplingParams,
    SamplingSessionFuturesTarget,
    TensorData,
)
from .validation import check_model_input, check_num_samples, check_sampling_params
from .wire import server_limits
from .wire.dialect import future_options
from .wire.sampling_flags import SAMPLE_ENDPOINT, SampleRules, sample_rules

if TYPE_CHECKING:
    from .config import ClientConfig
    from .holder import Holder, LoopClients
    from .telemetry import Telemetry
    from .tokenizer import Tokenizer

__all__ = ["RetryConfig", "SamplingClient", "create_sampling_client"]

logger = logging.getLogger("tinkex.sampling")


@dataclass(frozen=True)
class RetryConfig:
    """Per-sample policy on top of the manifest's transport retries.

    ``timeout_s`` is a deadline for one whole sample (None: none), so a stuck request surfaces as a
    ``TimeoutError`` instead of the official SDK's silent two-hour hang; ``max_resubmits`` bounds how often a
    sample whose result the server declared gone (410) is sent again, the first time after ``resubmit_delay_s``
    (doubling after each). None: the manifest's ``resubmit_on_expiry`` of the sampling endpoint (5 times, from
    0.5 s). A server's ``sample_no_retries`` allows no re-submission whatever these say.
    """

    timeout_s: float | None = None
    max_resubmits: int | None = None
    resubmit_delay_s: float | None = None


async def create_sampling_client(
    holder: Holder,
    *,
    model_path: str | None = None,
    base_model: str | None = None,
    sampling_session_id: str | None = None,
    retry_config: RetryConfig | None = None,
    record_stability_info: bool = False,
    on_queue_state_change: QueueStateCallback | None = None,
) -> SamplingClient:
    """A client for an existing sampler (``sampling_session_id``) or a new one of ``model_path`` / ``base_model``."""
    if sampling_session_id is None:
        if model_path is None and base_model is None:
            raise ValueError(
                "create_sampling_client needs model_path= (a tinker://…/sampler_weights/… path) or base_model="
            )
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
        sampling_session_id = response.sampling_session_id
    return SamplingClient(
        holder,
        sampling_session_id=sampling_session_id,
        base_model=base_model,
        retry_config=retry_config,
        record_stability_info=record_stability_info,
        on_queue_state_change=on_queue_state_change,
    )


def _check_sampler_path(path: str) -> None:
    """Refuse only what is certainly wrong (as the official SDK: not a tinker:// path; tinkex adds a fix-it message
    for a path that surely names a training-state checkpoint). Any other shape goes to the server, which may
    accept paths this client does not know (more segments, other kinds)."""
    if not path.startswith("tinker://"):
        raise ValueError(f"model_path must be a tinker:// path, got {path!r}")
    try:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(path)
    except ValueError:
        return
    if parsed.checkpoint_type == "training":
        raise ValueError(
            f"{path!r} is a training-state checkpoint (saved with save_state); sampling needs a sampler checkpoint: "
            "save one with TrainingClient.save_weights_for_sampler(name) and pass its tinker://…/sampler_weights/… path"
        )


class SamplingClient:
    """Samples and logprobs from one sampler.

    ``base_model`` is the sampler's base model when the creator knows it (else ``get_base_model`` asks the
    server once). ``shadow=True`` marks a copy that joins an existing sampler from elsewhere (it numbers its
    requests from a high base, chosen at its first sample: see the module's docstring). ``subprocess_sampling``
    (0.16) is accepted for compatibility: tinkex
    never samples on the caller's thread, so there is no sidecar process to choose.
    """

    def __init__(
        self,
        holder: Holder,
        sampling_session_id: str,
        *,
        base_model: str | None = None,
        shadow: bool = False,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
        subprocess_sampling: bool | None = None,
        on_queue_state_change: QueueStateCallback | None = None,
        seq_id_base: int | None = None,
    ) -> None:
        self.holder = holder
        self.sampling_session_id = sampling_session_id
        self.retry_config = retry_config or RetryConfig()
        self.record_stability_info = record_stability_info
        self._base_model = base_model
        self._seq_lock = threading.Lock()
        self._number_from(seq_id_base if seq_id_base is not None else 0)
        self._copy_unnumbered = shadow and seq_id_base is None
        """A copy numbers its requests from a block chosen at its first sample (:meth:`_settle_numbering`)."""
        self._joining: concurrent.futures.Future[int] | None = None
        self._observer = QueueStateLogger.for_sampling(sampling_session_id, on_queue_state_change)
        self._in_flight: server_limits.ConcurrencyCap | None = None
        self._rules: dict[bool, SampleRules] = {}
        self._pollers: dict[asyncio.AbstractEventLoop, SessionPoller] = {}
        """The batched poller of each loop this client samples on (``sample_use_retrieve_futures``)."""
        weakref.finalize(self, _close_pollers, self._pollers)
        after_fork_in_child(self, self._renumber_after_fork)

    def _number_from(self, seq_id_base: int) -> None:
        self._seq_ids = itertools.count(seq_id_base)
        self._clone_number = seq_id_base // SEQ_ID_BLOCK
        """This client's clone of the sampling session (0: the original), the ``cloned_sampler_id`` it polls."""

    def _renumber_after_fork(self) -> None:
        """In a forked child: number the next samples from a new block, as an unpickled copy does. Every child
        inherits the parent's counter, and the server answers a (sampler, seq_id) it has seen from its replay
        cache: without this, the children's samples would get one another's answers instead of running."""
        self._seq_lock = threading.Lock()  # a thread of the parent may have held it at the fork
        self._number_from(fresh_seq_id_base())
        self._copy_unnumbered = True  # the server's flags may say to ask it for the block instead
        self._joining = None
        self._pollers = {}  # the parent's, on the parent's loops

    def __repr__(self) -> str:
        return f"SamplingClient(sampling_session_id={self.sampling_session_id!r})"

    def _next_seq_id(self) -> int:
        with self._seq_lock:
            return next(self._seq_ids)

    @staticmethod
    def create(
        holder: Holder,
        *,
        model_path: str | None = None,
        base_model: str | None = None,
        sampling_session_id: str | None = None,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
    ) -> APIFuture[SamplingClient]:
        """A future of a client for an existing sampler (``sampling_session_id``) or a new one."""
        return in_background(
            create_sampling_client(
                holder,
                model_path=model_path,
                base_model=base_model,
                sampling_session_id=sampling_session_id,
                retry_config=retry_config,
                record_stability_info=record_stability_info,
            )
        )

    def on_queue_state_change(self, queue_state: QueueState | str, queue_state_reason: str | None) -> None:
        """Called as this client's samples pause and resume (logs a warning, throttled; then the user callback)."""
        self._observer.on_queue_state_change(queue_state, queue_state_reason)

    # sampling --------------------------------------------------------------------------------------------
    async def sample_async(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
        topk_sample_logprobs: int = 0,
        target_prompt_logprobs: TensorData | None = None,
        prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None,
    ) -> SampleResponse:
        """``num_samples`` completions of ``prompt``. The 0.38 options: ``topk_sample_logprobs`` (top-k logprobs
        per sampled position), ``target_prompt_logprobs`` (int64 ``[len(prompt) - 1, K]`` token ids to score at
        each prompt position, -1 for none), ``prompt_alt_tokens_k`` (draws per prompt position) and
        ``prompt_logprobs_last_n`` (score only the last N prompt tokens; needs ``include_prompt_logprobs``)."""
        return await self._checked_sample(
            prompt,
            num_samples,
            sampling_params,
            include_prompt_logprobs,
            topk_prompt_logprobs,
            topk_sample_logprobs,
            target_prompt_logprobs,
            prompt_alt_tokens_k,
            prompt_logprobs_last_n,
        )

    def _checked_sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool,
        topk_prompt_logprobs: int,
        topk_sample_logprobs: int,
        target_prompt_logprobs: TensorData | None,
        prompt_alt_tokens_k: int,
        prompt_logprobs_last_n: int | None,
        always_retried: bool = False,
    ) -> Coroutine[Any, Any, SampleResponse]:
        """The sample to run, its arguments checked now (a mistake raises in the caller's stack) and its 0.38
        options gathered once for the sync and async forms."""
        prompt, num_samples, sampling_params = _checked_sample_arguments(prompt, num_samples, sampling_params)
        extras = _new_options(
            self.record_stability_info,
            include_prompt_logprobs,
            topk_sample_logprobs,
            target_prompt_logprobs,
            prompt_alt_tokens_k,
            prompt_logprobs_last_n,
        )
        return self._sample_checked(
            prompt, num_samples, sampling_params, include_prompt_logprobs, topk_prompt_logprobs, extras, always_retried
        )

    async def _sample_checked(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool,
        topk_prompt_logprobs: int,
        extras: dict[str, Any],
        always_retried: bool = False,
    ) -> SampleResponse:
        """The sample, its arguments checked and its 0.38 options (``extras``, see ``_new_options``) gathered.
        ``always_retried``: a ``compute_logprobs`` (the server's ``sample_no_retries`` does not concern it)."""
        rules = await self._rules_for(always_retried)
        work = self._capped(
            rules.concurrency_cap,
            lambda: self._sample(
                prompt, num_samples, sampling_params, include_prompt_logprobs, topk_prompt_logprobs, extras, rules
            ),
        )
        try:
            if self.retry_config.timeout_s is None:
                response = await work
            else:
                deadline = asyncio.timeout(self.retry_config.timeout_s)
                try:
                    async with deadline:
                        response = await work
                except TimeoutError:
                    if not deadline.expired():
                        raise  # the sample's own TimeoutError, not this deadline
                    raise TimeoutError(
                        f"sample on sampler {self.sampling_session_id} did not finish within "
                        f"{self.retry_config.timeout_s} s"
                    ) from None
            if extras:
                _check_new_options_honoured(
                    response, extras.get("prompt_alt_tokens_k", 0), extras.get("prompt_logprobs_last_n")
                )
            return response
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
        topk_sample_logprobs: int = 0,
        target_prompt_logprobs: TensorData | None = None,
        prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None,
    ) -> APIFuture[SampleResponse]:
        """Returns at once; the future is also a ``concurrent.futures.Future`` (what 0.16 returned). Arguments are
        checked here, so a mistake raises in the caller's stack rather than later from the future."""
        return in_background(
            self._checked_sample(
                prompt,
                num_samples,
                sampling_params,
                include_prompt_logprobs,
                topk_prompt_logprobs,
                topk_sample_logprobs,
                target_prompt_logprobs,
                prompt_alt_tokens_k,
                prompt_logprobs_last_n,
            )
        )

    async def _rules_for(self, always_retried: bool) -> SampleRules:
        """How this client's samples are sent and awaited, from the server's flags (the handshake asked first, if
        this client was rebuilt from a pickle or a handle and nothing asked it yet) and the manifest."""
        rules = self._rules.get(always_retried)
        if rules is None:
            flags = (await self.holder.server_wire()).config
            rules = self._rules[always_retried] = sample_rules(
                flags,
                _resubmit_rule(self.holder),
                max_resubmits=self.retry_config.max_resubmits,
                resubmit_delay_s=self.retry_config.resubmit_delay_s,
                always_retried=always_retried,
            )
        return rules

    async def _capped(self, limit: int | None, start: Callable[[], Awaitable[SampleResponse]]) -> SampleResponse:
        """``start()`` once this client has fewer than ``limit`` samples in flight (the server's
        ``sample_max_concurrent_requests``, the official sampling client's ``max_connections``; None: at once)."""
        if limit is None:
            return await start()
        if self._in_flight is None:
            self._in_flight = server_limits.ConcurrencyCap(limit)
        async with self._in_flight.hold():
            # Started only once admitted: a sample cancelled while it queues leaves no coroutine never awaited.
            return await start()

    async def _sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool,
        topk_prompt_logprobs: int,
        extras: dict[str, Any],
        rules: SampleRules,
    ) -> SampleResponse:
        size = estimate_model_input_bytes(prompt)
        clients = self.holder.clients()
        # How the result is polled (0.38: asked as protobuf); the dialect is settled before any sampler exists.
        polling = future_options(SAMPLE_ENDPOINT, await self.holder.wire_dialect(), self.holder.manifest)
        if self._copy_unnumbered:
            await self._settle_numbering(rules)
        for resubmit in itertools.count():
            request = SampleRequest(
                num_samples=num_samples,
                prompt=prompt,
                sampling_params=sampling_params,
                sampling_session_id=self.sampling_session_id,
                seq_id=self._next_seq_id(),
                prompt_logprobs=include_prompt_logprobs,
                topk_prompt_logprobs=topk_prompt_logprobs,
                **extras,
            )
            try:
                if rules.batched_polling:
                    return await self._sample_batched(clients, request, size, polling)
                return await self._sample_polled(clients.futures, request, size, polling)
            except FutureExpiredError as expired:
                if resubmit >= rules.max_resubmits:
                    raise
                delay = backoff_delay(resubmit, initial_s=rules.resubmit_delay_s, max_s=math.inf)
                logger.info("sample %s expired on the server; sending it again in %.2fs", expired.request_id, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _span_ids(self, request: SampleRequest) -> dict[str, Any]:
        """What the sample's spans carry (span attributes take no ``None``)."""
        ids: dict[str, Any] = {}
        if self.sampling_session_id is not None:
            ids[SAMPLING_SESSION_ID_ATTRIBUTE] = self.sampling_session_id
        if type(request.seq_id) is int:
            ids[SEQ_ID_ATTRIBUTE] = request.seq_id
        return ids

    async def _sample_polled(
        self, resolver: FutureResolver, request: SampleRequest, size: int, polling: dict[str, Any]
    ) -> SampleResponse:
        """Submit, then poll the sample's own future until it resolves."""
        handle = await resolver.submit(
            SAMPLE_ENDPOINT,
            result_type=SampleResponse,
            json=request,
            observer=self._observer,
            extensions={extensions.SIZE_BYTES: size, extensions.SPAN_ATTRIBUTES: self._span_ids(request)},
            **polling,
        )
        try:
            return _attach_sequence_ids(await handle, handle.submit_reply.get("sample_sequence_ids"))
        except asyncio.CancelledError:
            self._cancel_on_server(handle.request_id)
            raise

    async def _sample_batched(
        self, clients: LoopClients, request: SampleRequest, size: int, polling: dict[str, Any]
    ) -> SampleResponse:
        """Submit, wait until the session's poller reports the sample done, then fetch its result with one poll of
        its own future (``sample_use_retrieve_futures``)."""
        resolver = clients.futures
        submitted_at = time.monotonic()  # the resolver's clock: the first poll's roundtrip header
        sent = {
            extensions.SIZE_BYTES: size,
            extensions.SPAN_ATTRIBUTES: self._span_ids(request),
            DEADLINES: effective_deadlines({}, resolver.deadlines),
        }
        reply = await clients.http.call(SAMPLE_ENDPOINT, json=request, extensions=sent)
        request_id = request_id_of(reply, resolver.spec.request_id_field, SAMPLE_ENDPOINT)
        poller = self._poller_for(clients)
        try:
            await poller.wait_for(request_id)
            handle = resolver.handle(
                request_id,
                result_type=SampleResponse,
                request_type=polling.get("request_type") or _request_type(self.holder),
                observer=self._observer,
                submitted_at=submitted_at,
                endpoint=SAMPLE_ENDPOINT,
                result_formats=polling.get("result_formats", ()),
            )
            try:
                response = await handle
            finally:
                poller.mark_retrieved(request_id)
        except asyncio.CancelledError:
            self._cancel_on_server(request_id)
            raise
        return _attach_sequence_ids(response, reply.get("sample_sequence_ids") if isinstance(reply, dict) else None)

    def _poller_for(self, clients: LoopClients) -> SessionPoller:
        """This loop's poller of this client's clone of the session: a new one when there is none yet, or the last
        one failed for good, or its HTTP client was closed."""
        loop = asyncio.get_running_loop()
        poller = self._pollers.get(loop)
        if (
            poller is None
            or not poller.usable
            or poller.http is not clients.http
            or poller.target.cloned_sampler_id != self._clone_number
        ):
            for ended in [other for other in self._pollers if other.is_closed()]:  # loops of finished asyncio.run()s
                del self._pollers[ended]
            target = SamplingSessionFuturesTarget(
                sampling_session_id=self.sampling_session_id, cloned_sampler_id=self._clone_number
            )
            poller = self._pollers[loop] = SessionPoller(
                clients.http,
                target,
                no_progress_s=self.holder.config.deadlines.no_progress_s,
            )
        return poller

    async def _settle_numbering(self, rules: SampleRules) -> None:
        """A copy's first sample chooses the block its seq_ids come from: the server's clone number when its flags
        say ``sample_join_sampling_session`` (asked once, by every first sample alike), else a random block."""
        with self._seq_lock:
            if not self._copy_unnumbered:
                return
            if not rules.join_session:
                self._number_from(fresh_seq_id_base())
                self._copy_unnumbered = False
                return
            if self._joining is None or (self._joining.done() and self._joining.exception() is not None):
                self._joining = detached(self.holder.runtime.submit, self._join_sampling_session())
            joining = self._joining
        await asyncio.wrap_future(joining)

    async def _join_sampling_session(self) -> int:
        """``join_sampling_session``: the server's number for this copy; its seq_ids start at that block."""
        response = await self.holder.clients().http.call(
            "join_sampling_session",
            json=JoinSamplingSessionRequest(sampling_session_id=self.sampling_session_id),
            result_type=JoinSamplingSessionResponse,
        )
        with self._seq_lock:
            if self._copy_unnumbered:
                self._number_from(SEQ_ID_BLOCK * response.client_counter)
                self._copy_unnumbered = False
        return response.client_counter

    def _cancel_on_server(self, request_id: str) -> None:
        """A sample its caller cancelled (``future().cancel()``, a cancelled task, the ``RetryConfig`` deadline) is
        abandoned on the server too (0.38's ``cancel_future``), freeing its place; best effort, in the background.
        Only while the server's ``client/dynamic_config`` enables it (``sample_cancel_enabled``, read now)."""
        if not self.holder.dynamic_config().sample_cancel_enabled:
            return

        async def cancel() -> None:
            try:
                await self.holder.clients().http.call("cancel_future", json=_CancelFutureRequest(request_id=request_id))
            except Exception as exc:  # an older server without cancel_future, a closed client: the sample just runs
                logger.debug("could not cancel sample %s on the server: %s", request_id, exc)

        task = asyncio.get_running_loop().create_task(cancel(), name=f"tinkex: cancel sample {request_id}")
        _CANCELLING.add(task)
        task.add_done_callback(_CANCELLING.discard)

    async def compute_logprobs_async(
        self, prompt: ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> list[float | None]:
        """The logprob of every prompt token (None where there is none: the first, and with
        ``prompt_logprobs_last_n`` every token before the last N)."""
        response = await self._checked_sample(
            prompt,
            1,
            SamplingParams(max_tokens=1),
            True,
            0,
            0,
            None,
            0,
            prompt_logprobs_last_n,
            always_retried=True,
        )
        if response.prompt_logprobs is None:
            raise ValueError("compute_logprobs: the server answered without prompt_logprobs")
        return response.prompt_logprobs

    def compute_logprobs(
        self, prompt: ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> APIFuture[list[float | None]]:
        check_model_input(prompt)
        if prompt_logprobs_last_n is not None:
            _check_new_options(True, None, 0, prompt_logprobs_last_n)
        return in_background(self.compute_logprobs_async(prompt, prompt_logprobs_last_n))

    # sampler info ----------------------------------------------------------------------------------------
    async def get_sampler_async(self) -> GetSamplerResponse:
        return await self.holder.clients().http.call(
            "get_sampler", path_params={"sampler_id": self.sampling_session_id}, result_type=GetSamplerResponse
        )

    async def get_base_model_async(self) -> str:
        if self._base_model is None:
            self._base_model = (await self.get_sampler_async()).base_model
        return self._base_model

    def get_base_model(self) -> str:
        """The sampler's base model; asks the server only the first time, and only if the creator did not know it."""
        if self._base_model is not None:
            return self._base_model
        return self.holder.runtime.run(self.get_base_model_async())

    async def get_tokenizer_async(self) -> Tokenizer:
        from .tokenizer import get_tokenizer

        return get_tokenizer(await self.get_base_model_async())

    def get_tokenizer(self) -> Tokenizer:
        return self.holder.runtime.run(self.get_tokenizer_async())

    def get_telemetry(self) -> Telemetry | None:
        return self.holder.telemetry

    # handing the client to other processes ---------------------------------------------------------------
    def _handle_state(self) -> dict[str, Any]:
        session_id = self.holder.known_session_id()
        if session_id is None:
            raise RuntimeError("a SamplingClient can be handed to another process once its session exists")
        return {
            "session_id": session_id,
            "sampling_session_id": self.sampling_session_id,
            "base_url": self.holder.config.base_url,
            "base_model": self._base_model,
            "record_stability_info": self.record_stability_info,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        state = self._handle_state()
        return (
            _rebuild_sampling_client,
            (self.holder.config, state["session_id"], self.sampling_session_id, self.retry_config, state["base_model"],
             self.record_stability_info),
        )

    def get_sampler_handle(self) -> str:
        """A string naming this client's sampler, for another process: ``SamplingClient.from_sampler_handle``
        makes a new client of the same sampler from it, any number of times. It carries no credentials."""
        payload = json.dumps(self._handle_state(), separators=(",", ":"), sort_keys=True)
        return base64.urlsafe_b64encode(payload.encode()).decode()

    @staticmethod
    def from_sampler_handle(handle: str, *, api_key: str | None = None) -> SamplingClient:
        """A client of the sampler behind ``handle`` (from :meth:`get_sampler_handle`), authenticated with
        ``api_key`` or this process's ``TINKER_API_KEY``."""
        from .config import resolve_config

        try:
            state = json.loads(base64.urlsafe_b64decode(handle.encode()))
            session_id, sampling_session_id, base_url = state["session_id"], state["sampling_session_id"], state["base_url"]
        except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a sampler handle (from SamplingClient.get_sampler_handle()): {handle[:40]!r}…") from exc
        config = resolve_config(api_key=api_key, base_url=base_url)
        return _rebuild_sampling_client(
            config,
            session_id,
            sampling_session_id,
            RetryConfig(),
            state.get("base_model"),
            bool(state.get("record_stability_info", False)),
        )


class _CancelFutureRequest(msgspec.Struct, kw_only=True):
    request_id: str


_CANCELLING: set[asyncio.Task[None]] = set()
"""Cancellations under way (the loop keeps only weak references to tasks)."""

SEQ_ID_BLOCK = 1_000_000_000
"""A client's seq_ids lie in one block of this size; its number (``seq_id // SEQ_ID_BLOCK``) is its clone of the
sampling session, 0 for the original client."""


def _resubmit_rule(holder: Holder) -> ResubmitSpec | None:
    future = holder.manifest.endpoint(SAMPLE_ENDPOINT).future
    return future.resubmit_on_expiry if future is not None else None


def _request_type(holder: Holder) -> str | None:
    future = holder.manifest.endpoint(SAMPLE_ENDPOINT).future
    return future.request_type if future is not None else None


def _close_pollers(pollers: dict[asyncio.AbstractEventLoop, SessionPoller]) -> None:
    """A dropped client's pollers stop (each on its own loop; nothing waits on them, or the client would be alive)."""
    for loop, poller in list(pollers.items()):
        if loop_is_usable(loop):
            loop.call_soon_threadsafe(poller.close)
    pollers.clear()


_NO_OPTIONS: dict[str, Any] = {}


def _attach_sequence_ids(response: SampleResponse, sequence_ids: object) -> SampleResponse:
    """Each sequence's ``sequence_id`` from the asample submit's ``sample_sequence_ids`` (0.38: the server fixes
    them when it accepts the request; the result need not repeat them), where the result did not carry one. A
    reply without them (a 0.16 server) or with a count that does not match leaves the response as it is."""
    if not isinstance(sequence_ids, list) or len(sequence_ids) != len(response.sequences):
        return response
    for sequence, sequence_id in zip(response.sequences, sequence_ids):
        if sequence.sequence_id is None and isinstance(sequence_id, str):
            sequence.sequence_id = sequence_id
    return response


def _new_options(
    record_stability_info: bool,
    include_prompt_logprobs: bool,
    topk_sample_logprobs: int,
    target_prompt_logprobs: TensorData | None,
    prompt_alt_tokens_k: int,
    prompt_logprobs_last_n: int | None,
) -> dict[str, Any]:
    """The 0.38 fields of a sample request that the caller set (checked); 0.16's calls send none of them."""
    if not (
        record_stability_info
        or topk_sample_logprobs
        or target_prompt_logprobs is not None
        or prompt_alt_tokens_k
        or prompt_logprobs_last_n is not None
    ):
        return _NO_OPTIONS
    _check_new_options(include_prompt_logprobs, target_prompt_logprobs, prompt_alt_tokens_k, prompt_logprobs_last_n)
    extras: dict[str, Any] = {}
    if topk_sample_logprobs:
        extras["topk_sample_logprobs"] = topk_sample_logprobs
    if target_prompt_logprobs is not None:
        extras["target_prompt_logprobs"] = target_prompt_logprobs
    if prompt_alt_tokens_k:
        extras["prompt_alt_tokens_k"] = prompt_alt_tokens_k
    if prompt_logprobs_last_n is not None:
        extras["prompt_logprobs_last_n"] = prompt_logprobs_last_n
    if record_stability_info:
        extras["record_stability_info"] = True
    return extras


def _check_new_options(
    include_prompt_logprobs: bool,
    target_prompt_logprobs: TensorData | None,
    prompt_alt_tokens_k: int,
    prompt_logprobs_last_n: int | None,
) -> None:
    """Refuse the 0.38 sampling options the server would refuse (the same checks as the official SDK)."""
    if target_prompt_logprobs is not None:
        if target_prompt_logprobs.dtype != "int64":
            raise ValueError(
                f"target_prompt_logprobs must be an int64 tensor of token ids, got {target_prompt_logprobs.dtype}"
            )
        shape = target_prompt_logprobs.shape
        if shape is None or len(shape) != 2:
            raise ValueError(f"target_prompt_logprobs must be 2-D, [len(prompt) - 1, K], got shape {shape}")
    if prompt_alt_tokens_k < 0:
        raise ValueError(f"prompt_alt_tokens_k must be 0 or greater, got {prompt_alt_tokens_k}")
    if prompt_logprobs_last_n is not None:
        if prompt_logprobs_last_n < 1:
            raise ValueError(f"prompt_logprobs_last_n must be 1 or greater, got {prompt_logprobs_last_n}")
        if not include_prompt_logprobs:
            raise ValueError("prompt_logprobs_last_n applies to prompt logprobs; set include_prompt_logprobs")


def _check_new_options_honoured(response: SampleResponse, prompt_alt_tokens_k: int, last_n: int | None) -> None:
    """A server older than an option ignores it: say so rather than return less than was asked for."""
    if prompt_alt_tokens_k > 0 and getattr(response, "prompt_alt_tokens", None) is None:
        raise RuntimeError(
            f"prompt_alt_tokens_k={prompt_alt_tokens_k} was requested but the server returned no prompt_alt_tokens; "
            "it may predate this feature"
        )
    if last_n is not None and response.prompt_logprobs is not None:
        scored_early = response.prompt_logprobs[: len(response.prompt_logprobs) - last_n]
        if any(logprob is not None for logprob in scored_early):
            raise RuntimeError(
                f"prompt_logprobs_last_n={last_n} was requested but the server returned prompt logprobs before that "
                "suffix; it may predate this feature"
            )


_SHADOW_HOLDERS: dict[tuple[str, str], Holder] = {}
_SHADOW_LOCK = threading.Lock()


def _rebuild_sampling_client(
    config: ClientConfig,
    session_id: str,
    sampling_session_id: str,
    retry_config: RetryConfig,
    base_model: str | None = None,
    record_stability_info: bool = False,
) -> SamplingClient:
    """Unpickling side: join the session through one shadow holder per (base URL, session) in this process."""
    from .config import load_tinker_manifest
    from .holder import Holder

    with _SHADOW_LOCK:
        key = (config.base_url, session_id)
        holder = _SHADOW_HOLDERS.get(key)
        if holder is None or holder.closed:
            holder = Holder(config, load_tinker_manifest(), session_id=session_id)
            _SHADOW_HOLDERS[key] = holder
    return SamplingClient(
        holder,
        sampling_session_id,
        base_model=base_model,
        shadow=True,
        retry_config=retry_config,
        record_stability_info=record_stability_info,
    )


def _checked_sample_arguments(
    prompt: Any, num_samples: Any, sampling_params: Any
) -> tuple[ModelInput, int, SamplingParams]:
    return check_model_input(prompt), check_num_samples(num_samples), check_sampling_params(sampling_params)
