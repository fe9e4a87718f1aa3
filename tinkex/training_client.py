"""``TrainingClient``: forward / backward / optimizer steps and weights of one LoRA model.

Every training request gets the next request id of this client and is dispatched only once the previous one has
its future id — not once it completes — so ``forward_backward`` and ``optim_step`` can be submitted back to back
and the server still sees them in order (official ``_take_turn``). The wire ``seq_id`` (1, 2, 3 …, as the official
``request_id + 1``) is given at dispatch: a request the server certainly did not run (refused before executing it,
``outcome == "did_not_run"``) hands its seq_id to the next one, so a refusal leaves no gap in the model's sequence
for a server that wants them consecutive; its error says so. A batch sent in several chunks that fails in part
raises :class:`~tinkex.errors.ChunkedRequestError`, saying per chunk which ran, which failed and which were not
sent. A batch's chunks go one after another, or together when the server's ``parallel_fwdbwd_chunks`` says so (the
decisions and the order are :mod:`tinkex.chunking`'s); either way the request after the batch waits for all of them.
The ``*_async`` methods run on the caller's loop and return an :class:`APIFuture` (await twice, as in the
official SDK); the sync ones return at once with an ``APIFuture`` computed on the background loop.

The 0.38 keywords (``overwrite``, ``user_metadata``, ``weights_access_token``, ``kind``, ``optim_params``, ...) are
accepted everywhere; each reaches the wire only when the caller set it, so a 0.16 call sends 0.16's bytes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec

from pristine_transport import extensions
from pristine_transport.errors import APIError
from pristine_transport.futures import FutureExpiredError, FutureHandle, combine
from pristine_transport.policy import WriteOutcome

from .api_future import APIFuture, AwaitableFuture, completed_future, in_background
from .backcompat_sampling_client_future import BackcompatSamplingClientFuture
from .call_spans import MODEL_ID_ATTRIBUTE, SEQ_ID_ATTRIBUTE
from .chunking import (
    chunk_data,
    chunks_together,
    combine_forward_backward_outputs,
    first_chunk_held_back,
    give_back_from,
    together_waves,
)
from .console import training_run_console_url
from .custom_loss import compute_weights, merge_metrics, prepare_forward_data
from .errors import ChunkedRequestError, ChunkReport, ForkedTrainingClientError
from .estimate import estimate_datum_bytes
from .queue_state import QueueStateCallback, QueueStateLogger
from .runtime import ForkSafeLock, InFlightAtForkError, after_fork_in_child, fail_inherited_future
from .sampling_client import RetryConfig, SamplingClient, create_sampling_client
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
    OptimParams,
    OptimStepRequest,
    OptimStepResponse,
    SamplingClientKind,
    SaveWeightsExternalRequest,
    SaveWeightsExternalResponse,
    SaveWeightsExternalResponseInternal,
    SaveWeightsForSamplerRequest,
    SaveWeightsForSamplerResponse,
    SaveWeightsForSamplerResponseInternal,
    SaveWeightsRequest,
    SaveWeightsResponse,
)
from .validation import check_data, check_loss_fn, check_loss_fn_config
from .wire import server_limits
from .wire.dialect import training_body

if TYPE_CHECKING:
    from .custom_loss_handle import LossHandle
    from .holder import Holder
    from .telemetry import Telemetry
    from .tokenizer import Tokenizer

__all__ = ["TrainingClient"]

T = TypeVar("T")
CustomLossFn = Callable[[list[Datum], list[Any]], "tuple[Any, dict[str, float]]"]
WireRequest = Callable[[int], "tuple[str, dict[str, Any]]"]
"""A request as a function of its seq_id: the endpoint and the send arguments (``json=body`` or the dialect's)."""


class _Turns:
    """Dispatch order across loops and threads: request ``n`` waits until request ``n - 1`` was dispatched.

    Across ``os.fork()``: a request caught mid-dispatch in the parent is never marked in the child (the thread
    dispatching it is not there), so in the child every turn still pending fails with ``InFlightAtForkError``
    (its outcome belongs to the parent), and ``inherited_from`` names the parent: the client refuses to take
    new turns there (see :meth:`TrainingClient._reserve`)."""

    def __init__(self) -> None:
        self._lock = ForkSafeLock()
        self._next_id = 0
        self._dispatched: dict[int, concurrent.futures.Future[None]] = {}
        self.inherited_from: int | None = None
        """The pid of the process these turns were inherited from through fork; None in the process that made them."""
        after_fork_in_child(self, self._fail_pending_after_fork)

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
            try:
                await asyncio.wrap_future(previous)
            except InFlightAtForkError:
                pass  # the predecessor was dispatching in the parent: its turn is over here

    def mark_dispatched(self, request_id: int) -> None:
        """Successors may go once this one has a future id, has failed to get one, or will never be sent."""
        dispatched = self._dispatched.get(request_id)  # gone once its successor was marked: marked already
        if dispatched is not None and not dispatched.done():
            dispatched.set_result(None)
        self._dispatched.pop(request_id - 1, None)

    def _fail_pending_after_fork(self) -> None:
        parent_pid = os.getppid()
        if self.inherited_from is None:  # a grandchild still names the process that owns the sequence
            self.inherited_from = parent_pid
        for dispatched in list(self._dispatched.values()):
            fail_inherited_future(dispatched, parent_pid)


class _SeqIds:
    """The model's wire seq_ids, taken at dispatch. Requests dispatch one at a time (:class:`_Turns`; a batch sent
    together takes its seq_ids at once), so the last ones taken can be given back when the server certainly did not
    run their requests: the next requests take them."""

    def __init__(self) -> None:
        self._lock = ForkSafeLock()
        self._next = 1

    def take(self, count: int = 1) -> list[int]:
        """``count`` consecutive seq_ids."""
        with self._lock:
            seq_ids = list(range(self._next, self._next + count))
            self._next += count
            return seq_ids

    def give_back(self, seq_id: int, count: int = 1) -> bool:
        """Reuse ``seq_id`` and the ``count - 1`` after it for the next requests; False (kept used) if a later one was
        taken meanwhile."""
        with self._lock:
            if self._next != seq_id + count:
                return False
            self._next = seq_id
            return True

    @property
    def next(self) -> int:
        """The seq_id the model's next request takes."""
        with self._lock:
            return self._next


class TrainingClient:
    """One LoRA training model; made by ``Client.create_lora_training_client`` (or ``*_from_state``).

    ``model_seq_id`` is the creation number of the model in its session (0.16 and 0.38 both take it); ``info``
    (0.38) is the model's ``get_info`` answer when the creator already has it.
    """

    def __init__(
        self,
        holder: Holder,
        model_seq_id: int,
        model_id: str,
        *,
        info: GetInfoResponse | None = None,
        base_model: str | None = None,
        on_queue_state_change: QueueStateCallback | None = None,
    ) -> None:
        self.holder = holder
        self.model_id = model_id
        self.model_seq_id = model_seq_id
        self._info = info
        self.base_model = base_model if base_model is not None or info is None else info.model_data.model_name
        self._turns = _Turns()
        self._seq_ids = _SeqIds()
        self._on_queue_state_change = on_queue_state_change  # handed on to the samplers this client makes
        self._observer = QueueStateLogger.for_training("Training", model_id, on_queue_state_change)

    def __repr__(self) -> str:
        return f"TrainingClient(model_id={self.model_id!r})"

    # dispatch --------------------------------------------------------------------------------------------
    def _refuse_if_inherited(self, operation: str) -> None:
        """In a process that inherited this client through fork, refuse a request that takes a training seq_id.
        The model's seq_ids are one ordered sequence counted here and in the parent alike: the parent's next
        request and the child's would carry the same seq_id, and the server would answer the later one from its
        replay cache without running it (a step lost with no error). Raised in the caller's thread, before
        anything is reserved or sent."""
        if self._turns.inherited_from is not None:
            raise ForkedTrainingClientError(operation, self.model_id, self._turns.inherited_from)

    def _reserve(self, operation: str, count: int = 1) -> list[int]:
        """The request ids (turns) of ``count`` training requests of ``operation``, in this process only."""
        self._refuse_if_inherited(operation)
        return self._turns.reserve(count)

    async def _dispatch(
        self,
        request_id: int,
        request: WireRequest,
        result_type: type[T],
        size_bytes: int | None = None,
        held_back: str | None = None,
    ) -> FutureHandle[T]:
        """Wait for this request's turn, give it the next seq_id and submit it. If the server certainly did not
        run it, its seq_id goes to the next request; the error says which seq_id it had and what follows.
        ``held_back`` names what will not be sent if this fails (the later chunks of its batch)."""
        seq_id: int | None = None
        endpoint = "request"
        sent = False
        try:
            await self._turns.wait_for(request_id)
            seq_id = self._seq_ids.take()[0]
            endpoint, send_kwargs = request(seq_id)
            ext = self._request_extensions(seq_id, size_bytes)
            sent = True
            return await self.holder.clients().futures.submit(
                endpoint, result_type=result_type, observer=self._observer, extensions=ext, **send_kwargs
            )
        except Exception as exc:
            if seq_id is not None:
                outcome: WriteOutcome | None = getattr(exc, "outcome", None) if sent else "did_not_run"
                reused = outcome == "did_not_run" and self._seq_ids.give_back(seq_id)
                _say_what_became_of_the_seq_id(exc, endpoint, self.model_id, seq_id, reused, held_back)
            self.holder.telemetry.exception(exc)
            raise
        finally:
            self._turns.mark_dispatched(request_id)

    def _request_extensions(self, seq_id: int, size_bytes: int | None) -> dict[str, Any]:
        """The submit's size for the byte budget, and the ids its span and its future's span carry."""
        ids = {MODEL_ID_ATTRIBUTE: self.model_id, SEQ_ID_ATTRIBUTE: seq_id}
        ext: dict[str, Any] = {extensions.SPAN_ATTRIBUTES: ids}
        if size_bytes is not None:
            ext[extensions.SIZE_BYTES] = size_bytes
        return ext

    def _json_request(self, endpoint: str, body: Callable[[int], msgspec.Struct]) -> WireRequest:
        return lambda seq_id: (endpoint, {"json": body(seq_id)})

    def _future(
        self, awaitable: Awaitable[Any], transform: Callable[[Any], T] | None = None, *, changes_state: bool = True
    ) -> APIFuture[T]:
        """The user's future of a dispatched request; its failure is reported to telemetry once."""
        expiry_said = _expiry_says_what_ran(awaitable, changes_state)
        return AwaitableFuture(expiry_said, transform, on_error=self.holder.telemetry.exception)

    def _in_background(self, work: Coroutine[Any, Any, APIFuture[T]]) -> APIFuture[T]:
        async def resolve() -> T:
            future = await work
            return await future

        return in_background(resolve())

    # forward / backward ----------------------------------------------------------------------------------
    async def forward_backward_async(
        self, data: list[Datum], loss_fn: LossFnType, loss_fn_config: dict[str, float] | None = None
    ) -> APIFuture[ForwardBackwardOutput]:
        chunks = self._reserve_checked("forward_backward", data, loss_fn, loss_fn_config)
        return await self._forward_backward(chunks, loss_fn, loss_fn_config, backward=True)

    def forward_backward(
        self, data: list[Datum], loss_fn: LossFnType, loss_fn_config: dict[str, float] | None = None
    ) -> APIFuture[ForwardBackwardOutput]:
        chunks = self._reserve_checked("forward_backward", data, loss_fn, loss_fn_config)
        return self._in_background(self._forward_backward(chunks, loss_fn, loss_fn_config, backward=True))

    async def forward_async(
        self, data: list[Datum], loss_fn: LossFnType, loss_fn_config: dict[str, float] | None = None
    ) -> APIFuture[ForwardBackwardOutput]:
        chunks = self._reserve_checked("forward", data, loss_fn, loss_fn_config)
        return await self._forward_backward(chunks, loss_fn, loss_fn_config, backward=False)

    def forward(
        self, data: list[Datum], loss_fn: LossFnType, loss_fn_config: dict[str, float] | None = None
    ) -> APIFuture[ForwardBackwardOutput]:
        chunks = self._reserve_checked("forward", data, loss_fn, loss_fn_config)
        return self._in_background(self._forward_backward(chunks, loss_fn, loss_fn_config, backward=False))

    def _reserve_checked(
        self, operation: str, data: Any, loss_fn: Any, loss_fn_config: Any
    ) -> list[tuple[int, list[Datum]]]:
        """Arguments checked in the caller's thread before any request id is taken: a mistake raises
        ``InvalidArgumentError`` at the call and leaves no gap in the model's sequence."""
        # Split by the server's chunk limits (its client/config flags, settled with the session), else the defaults.
        limits = server_limits.chunk_limits(self.holder.known_server_flags())
        # An empty batch sends nothing, as officially.
        chunks = chunk_data(check_data(data, allow_empty=True), limits.max_len, limits.max_bytes)
        check_loss_fn(loss_fn)
        check_loss_fn_config(loss_fn_config)
        return list(zip(self._reserve(operation, len(chunks)), chunks))

    async def _forward_backward(
        self,
        chunks: list[tuple[int, list[Datum]]],
        loss_fn: LossFnType,
        loss_fn_config: dict[str, float] | None,
        *,
        backward: bool,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Dispatch the batch's chunks, one after another or together (the server's ``parallel_fwdbwd_chunks``,
        see :mod:`tinkex.chunking`); a chunk that fails to be accepted raises :class:`ChunkedRequestError` (the
        chunk's own error for a batch of one) saying how each chunk ended."""
        if not chunks:
            return completed_future(combine_forward_backward_outputs([]))
        sends = [_ChunkSend() for _ in chunks]
        operation = "forward_backward" if backward else "forward"
        data = [chunk for _, chunk in chunks]
        try:
            server = await self.holder.server_wire()  # settled with the session; no request here
            compress = server.config is not None and server.config.proto_compress_fwdbwd

            def request_of(index: int) -> WireRequest:
                batch = ForwardBackwardInput(data=data[index], loss_fn=loss_fn, loss_fn_config=loss_fn_config)

                def request(seq_id: int) -> tuple[str, dict[str, Any]]:
                    sends[index].seq_id = seq_id
                    body: ForwardBackwardRequest | ForwardRequest
                    if backward:
                        body = ForwardBackwardRequest(forward_backward_input=batch, model_id=self.model_id, seq_id=seq_id)
                    else:
                        body = ForwardRequest(forward_input=batch, model_id=self.model_id, seq_id=seq_id)
                    wire = training_body(body, server.dialect, self.holder.manifest, compress=compress)
                    return wire.endpoint, wire.send_kwargs

                return request

            requests = [request_of(index) for index in range(len(chunks))]
            sizes = [sum(estimate_datum_bytes(d) for d in chunk) for chunk in data]
            request_ids = [request_id for request_id, _ in chunks]
            if chunks_together(server.config, len(chunks)):
                await self._dispatch_together(request_ids, requests, sizes, sends)
            else:
                for index, request_id in enumerate(request_ids):
                    later = len(chunks) - index - 1
                    held_back = f"the {later} later chunk(s) of its batch" if later else None
                    try:
                        sends[index].handle = await self._dispatch(
                            request_id, requests[index], ForwardBackwardOutput, sizes[index], held_back
                        )
                    except Exception as exc:
                        sends[index].failed(exc, sent=sends[index].seq_id is not None)
                        raise
        except BaseException as exc:
            _stop_polling(sends)  # the caller gets no future of them: nothing awaits their results
            if not isinstance(exc, Exception) or len(chunks) == 1:
                raise
            if not any(send.failure is not None for send in sends):  # failed before any chunk was dispatched
                sends[0].failed(exc, sent=False)
            raise ChunkedRequestError(operation, _chunk_reports(data, sends), changes_state=backward) from exc
        finally:
            # A failed chunk leaves the later ones unsent; the next request must not wait for them forever.
            for request_id, _ in chunks:
                self._turns.mark_dispatched(request_id)
        failures = [send.failure for send in sends if send.failure is not None]
        if failures:  # a batch sent together: every chunk has ended its dispatch, each one is reported
            _stop_polling(sends)
            raise ChunkedRequestError(operation, _chunk_reports(data, sends), changes_state=backward) from failures[0]
        handles = [send.handle for send in sends if send.handle is not None]
        if len(handles) == 1:
            return self._future(combine(handles, combine_forward_backward_outputs), changes_state=backward)
        every_chunk = _every_chunk(operation, data, sends, changes_state=backward)
        return self._future(every_chunk, changes_state=backward)

    async def _dispatch_together(
        self, request_ids: list[int], requests: list[WireRequest], sizes: list[int], sends: list[_ChunkSend]
    ) -> None:
        """Send a batch's chunks together once its turn comes (the official ``parallel_fwdbwd_chunks`` order, see
        :mod:`tinkex.chunking`): the batch takes its seq_ids at once, in chunk order; every chunk but the first is
        submitted at the same time, then the first, unless :func:`first_chunk_held_back`. Each chunk's outcome goes
        to ``sends``: a failure raises nothing here, so every chunk is accounted for. The seq_ids of trailing
        chunks that did not run go back to the model's next requests. Cancelled, the submits in flight are
        cancelled and waited for before this returns."""
        await self._turns.wait_for(request_ids[0])
        seq_ids = self._seq_ids.take(len(request_ids))

        async def send(index: int) -> None:
            sent = False
            try:
                endpoint, send_kwargs = requests[index](seq_ids[index])
                sent = True
                sends[index].handle = await self.holder.clients().futures.submit(
                    endpoint,
                    result_type=ForwardBackwardOutput,
                    observer=self._observer,
                    extensions=self._request_extensions(seq_ids[index], sizes[index]),
                    **send_kwargs,
                )
            except Exception as exc:
                sends[index].failed(exc, sent=sent)
                self.holder.telemetry.exception(exc)

        others, first = together_waves(len(request_ids))
        async with asyncio.TaskGroup() as group:  # a cancel reaches every submit, and waits for them all
            for index in others:
                group.create_task(send(index))
        if not first_chunk_held_back([sends[index].outcome for index in others]):
            await send(first[0])
        outcomes = [chunk.outcome if chunk.seq_id is not None else "did_not_run" for chunk in sends]
        start = give_back_from(outcomes)
        given_back = start is not None and self._seq_ids.give_back(seq_ids[start], len(seq_ids) - start)
        next_seq_id = self._seq_ids.next
        for index, chunk_send in enumerate(sends):
            if chunk_send.failure is not None:
                reused = given_back and start is not None and index >= start
                _say_what_became_of_a_chunk_sent_together(
                    chunk_send.failure, self.model_id, seq_ids[index], reused, next_seq_id
                )

    async def forward_backward_custom_async(
        self,
        data: list[Datum],
        loss_fn: CustomLossFn | LossHandle,
        *,
        loss_type_input: Literal["logprobs"] | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Client-side custom loss (official SDK flow): forward for logprobs, the user's loss and its gradient
        with respect to the logprobs in torch, then a ``cross_entropy`` forward_backward with ``weights = -grad``.

        ``loss_fn`` is a batch loss ``(data, logprobs_list) -> (loss, metrics)`` or (0.38) a :class:`LossHandle`
        from ``Client.create_custom_loss``, which may read other ``loss_fn_inputs`` keys (they stay on the client).
        ``loss_type_input``: the loss always receives logprobs; ``"logprobs"`` (0.16's default) and ``None``
        (0.38's) mean the same, anything else is refused."""
        self._refuse_if_inherited("forward_backward_custom")
        _check_loss_type_input(loss_type_input)
        data = check_data(data)
        from .custom_loss_handle import LossHandle, check_loss_inputs, run_loss_handle

        batch_loss: CustomLossFn
        if isinstance(loss_fn, LossHandle):
            check_loss_inputs(loss_fn, data, await self.holder.session_id())
            handle = loss_fn

            def batch_loss(batch: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
                return run_loss_handle(handle, batch, logprobs)

        else:
            batch_loss = loss_fn
        other_inputs = isinstance(loss_fn, LossHandle)
        forward_future = await self.forward_async(prepare_forward_data(data, other_inputs=other_inputs), "cross_entropy")
        forward_output = await forward_future
        weighted, metrics = await compute_weights(data, forward_output, batch_loss, other_inputs=other_inputs)
        backward_future = await self.forward_backward_async(weighted, "cross_entropy")
        return AwaitableFuture(backward_future.result_async(), lambda out: merge_metrics(out, metrics))

    def forward_backward_custom(
        self,
        data: list[Datum],
        loss_fn: CustomLossFn | LossHandle,
        *,
        loss_type_input: Literal["logprobs"] | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        self._refuse_if_inherited("forward_backward_custom")
        _check_loss_type_input(loss_type_input)
        return self._in_background(self.forward_backward_custom_async(data, loss_fn))

    # optimizer and weights -------------------------------------------------------------------------------
    async def optim_step_async(
        self, optim_params: OptimParams | None = None, *, adam_params: AdamParams | None = None
    ) -> APIFuture[OptimStepResponse]:
        """One optimizer step with the family's parameters (``AdamParams``, or e.g. ``DimuonParams`` for a model
        created with that optimizer). ``adam_params=`` is the 0.16 keyword; passing both is an error."""
        params = _optim_params(optim_params, adam_params)
        return await self._optim_step(self._reserve("optim_step")[0], params)

    def optim_step(
        self, optim_params: OptimParams | None = None, *, adam_params: AdamParams | None = None
    ) -> APIFuture[OptimStepResponse]:
        params = _optim_params(optim_params, adam_params)
        return self._in_background(self._optim_step(self._reserve("optim_step")[0], params))

    async def _optim_step(self, request_id: int, params: OptimParams) -> APIFuture[OptimStepResponse]:
        request = self._json_request("optim_step", lambda seq_id: _optim_step_request(params, self.model_id, seq_id))
        return self._future(await self._dispatch(request_id, request, OptimStepResponse))

    async def save_state_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsResponse]:
        """Save weights and optimizer state as ``tinker://<run>/weights/<name>``; ``overwrite`` replaces an
        existing checkpoint of that name."""
        return await self._save_state(self._reserve("save_state")[0], name, ttl_seconds, overwrite, user_metadata)

    def save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsResponse]:
        request_id = self._reserve("save_state")[0]
        return self._in_background(self._save_state(request_id, name, ttl_seconds, overwrite, user_metadata))

    async def _save_state(
        self, request_id: int, name: str, ttl: int | None, overwrite: bool, user_metadata: dict[str, str] | None
    ) -> APIFuture[SaveWeightsResponse]:
        extras = _set_only(overwrite=overwrite or None, user_metadata=user_metadata)
        request = self._json_request(
            "save_weights",
            lambda seq_id: SaveWeightsRequest(model_id=self.model_id, path=name, seq_id=seq_id, ttl_seconds=ttl, **extras),
        )
        return self._future(await self._dispatch(request_id, request, SaveWeightsResponse))

    async def load_state_async(self, path: str, weights_access_token: str | None = None) -> APIFuture[LoadWeightsResponse]:
        """Load weights (not the optimizer state) from a ``save_state`` checkpoint; ``weights_access_token``
        reads one saved under another account."""
        return await self._load_state(self._reserve("load_state")[0], path, False, weights_access_token)

    def load_state(self, path: str, weights_access_token: str | None = None) -> APIFuture[LoadWeightsResponse]:
        request_id = self._reserve("load_state")[0]
        return self._in_background(self._load_state(request_id, path, False, weights_access_token))

    async def load_state_with_optimizer_async(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        return await self._load_state(self._reserve("load_state_with_optimizer")[0], path, True, weights_access_token)

    def load_state_with_optimizer(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        request_id = self._reserve("load_state_with_optimizer")[0]
        return self._in_background(self._load_state(request_id, path, True, weights_access_token))

    async def _load_state(
        self, request_id: int, path: str, optimizer: bool, weights_access_token: str | None
    ) -> APIFuture[LoadWeightsResponse]:
        token = _set_only(weights_access_token=weights_access_token)
        request = self._json_request(
            "load_weights",
            lambda seq_id: LoadWeightsRequest(
                model_id=self.model_id, path=path, optimizer=optimizer, seq_id=seq_id, **token
            ),
        )
        return self._future(await self._dispatch(request_id, request, LoadWeightsResponse))

    async def save_weights_for_sampler_async(
        self, name: str, ttl_seconds: int | None = None, user_metadata: dict[str, str] | None = None
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        request_id = self._reserve("save_weights_for_sampler")[0]
        return await self._save_for_sampler(request_id, name, ttl_seconds, user_metadata)

    def save_weights_for_sampler(
        self, name: str, ttl_seconds: int | None = None, user_metadata: dict[str, str] | None = None
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        request_id = self._reserve("save_weights_for_sampler")[0]
        return self._in_background(self._save_for_sampler(request_id, name, ttl_seconds, user_metadata))

    async def _save_for_sampler(
        self, request_id: int, name: str, ttl: int | None, user_metadata: dict[str, str] | None
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        return await self._save_named(
            request_id,
            "save_weights_for_sampler",
            name,
            ttl,
            _set_only(user_metadata=user_metadata),
            (SaveWeightsForSamplerRequest, SaveWeightsForSamplerResponseInternal, SaveWeightsForSamplerResponse),
        )

    async def save_weights_external_async(
        self, name: str, ttl_seconds: int | None = None, age_encryption_recipients: list[str] | None = None
    ) -> APIFuture[SaveWeightsExternalResponse]:
        """Save the weights in an external (e.g. Hugging Face) format as ``tinker://<run>/external_weights/<name>``
        (0.38); download them with ``RestClient.get_external_weights_urls``. ``age_encryption_recipients`` (at
        most 10 age or SSH public keys) encrypts every file to them."""
        request_id = self._reserve("save_weights_external")[0]
        return await self._save_external(request_id, name, ttl_seconds, age_encryption_recipients)

    def save_weights_external(
        self, name: str, ttl_seconds: int | None = None, age_encryption_recipients: list[str] | None = None
    ) -> APIFuture[SaveWeightsExternalResponse]:
        request_id = self._reserve("save_weights_external")[0]
        return self._in_background(self._save_external(request_id, name, ttl_seconds, age_encryption_recipients))

    async def _save_external(
        self, request_id: int, name: str, ttl: int | None, recipients: list[str] | None
    ) -> APIFuture[SaveWeightsExternalResponse]:
        if recipients is not None and len(recipients) > 10:
            self._turns.mark_dispatched(request_id)
            raise ValueError(f"age_encryption_recipients takes at most 10 keys, got {len(recipients)}")
        return await self._save_named(
            request_id,
            "save_weights_external",
            name,
            ttl,
            _set_only(age_encryption_recipients=recipients),
            (SaveWeightsExternalRequest, SaveWeightsExternalResponseInternal, SaveWeightsExternalResponse),
        )

    async def _save_named(
        self,
        request_id: int,
        endpoint: str,
        name: str,
        ttl: int | None,
        extras: dict[str, Any],
        types: tuple[type[Any], type[Any], type[Any]],
    ) -> APIFuture[Any]:
        """A save under ``name``: the request, internal response and public response ``types`` of ``endpoint``."""
        request_type, internal_type, response_type = types
        request = self._json_request(
            endpoint,
            lambda seq_id: request_type(model_id=self.model_id, path=name, seq_id=seq_id, ttl_seconds=ttl, **extras),
        )
        handle = await self._dispatch(request_id, request, internal_type)
        return self._future(handle, _named_path(endpoint, name, response_type))

    async def save_weights_and_get_sampling_client_async(
        self,
        name: str | None = None,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
        kind: SamplingClientKind = "snapshot",
    ) -> SamplingClient:
        """Snapshot the weights for sampling and return a client for them.

        Without ``name`` this is the official ephemeral snapshot (no checkpoint is kept); ``kind="inflight"``
        (0.38) publishes mutable weights shared by this model's inflight samplers instead. Unlike the official
        SDK, which ignores ``name``, a given name saves a named sampler checkpoint and samples from it.
        ``record_stability_info`` (0.38) makes every sample of the new client record stability information.
        """
        self._refuse_if_inherited("save_weights_and_get_sampling_client")
        if kind not in ("snapshot", "inflight"):
            raise ValueError(f"kind must be 'snapshot' or 'inflight', got {kind!r}")
        if name is not None:
            if kind != "snapshot":
                raise ValueError("a named sampler checkpoint is a snapshot; kind='inflight' takes no name")
            saved = await (await self.save_weights_for_sampler_async(name))
            return await self.create_sampling_client_async(saved.path, retry_config, record_stability_info)
        request_id = self._reserve("save_weights_and_get_sampling_client")[0]
        sampling_session_seq_id = self.holder.next_sampling_session_seq_id()
        inflight = _set_only(kind=None if kind == "snapshot" else kind)  # 0.16 knows only snapshots: it sends no kind
        request = self._json_request(
            "save_weights_for_sampler",
            lambda seq_id: SaveWeightsForSamplerRequest(
                model_id=self.model_id,
                seq_id=seq_id,
                sampling_session_seq_id=sampling_session_seq_id,
                ttl_seconds=None,
                **inflight,
            ),
        )
        result: SaveWeightsForSamplerResponseInternal = await self._future(
            await self._dispatch(request_id, request, SaveWeightsForSamplerResponseInternal)
        )
        if result.sampling_session_id is None:
            raise ValueError(f"ephemeral save_weights_for_sampler answered without a sampling_session_id: {result!r}")
        return SamplingClient(
            self.holder,
            sampling_session_id=result.sampling_session_id,
            base_model=self.base_model,
            retry_config=retry_config,
            record_stability_info=record_stability_info,
            on_queue_state_change=self._on_queue_state_change,
        )

    def save_weights_and_get_sampling_client(
        self,
        name: str | None = None,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
        kind: SamplingClientKind = "snapshot",
    ) -> BackcompatSamplingClientFuture:
        """Returns at once: a future of the client (``.result()`` / ``await``) that also works as the client."""
        self._refuse_if_inherited("save_weights_and_get_sampling_client")  # at the call, not at .result()
        return BackcompatSamplingClientFuture(
            in_background(
                self.save_weights_and_get_sampling_client_async(name, retry_config, record_stability_info, kind)
            ),
            holder=self.holder,
        )

    def save_weights_and_get_sampling_client_submit(
        self, retry_config: RetryConfig | None = None
    ) -> APIFuture[SamplingClient]:
        """0.16's non-blocking form of :meth:`save_weights_and_get_sampling_client`."""
        self._refuse_if_inherited("save_weights_and_get_sampling_client_submit")
        return in_background(self.save_weights_and_get_sampling_client_async(retry_config=retry_config))

    async def create_sampling_client_async(
        self, model_path: str, retry_config: RetryConfig | None = None, record_stability_info: bool = False
    ) -> SamplingClient:
        return await create_sampling_client(
            self.holder,
            model_path=model_path,
            retry_config=retry_config,
            record_stability_info=record_stability_info,
            on_queue_state_change=self._on_queue_state_change,
        )

    def create_sampling_client(
        self, model_path: str, retry_config: RetryConfig | None = None, record_stability_info: bool = False
    ) -> BackcompatSamplingClientFuture:
        return BackcompatSamplingClientFuture(
            in_background(self.create_sampling_client_async(model_path, retry_config, record_stability_info)),
            holder=self.holder,
        )

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

    def get_console_url(self) -> str:
        """The Tinker Console page of this training run."""
        return training_run_console_url(self.model_id)

    def get_telemetry(self) -> Telemetry | None:
        return self.holder.telemetry


def _set_only(**fields: Any) -> dict[str, Any]:
    """The 0.38 request fields the caller set (not None): a 0.16 call sends none of them."""
    return {name: value for name, value in fields.items() if value is not None}


def _check_loss_type_input(loss_type_input: str | None) -> None:
    if loss_type_input not in (None, "logprobs"):
        raise ValueError(f"Unsupported loss_type_input={loss_type_input!r}; the only one is 'logprobs'")


def _optim_params(optim_params: OptimParams | None, adam_params: AdamParams | None) -> OptimParams:
    """The one step-parameter object of ``optim_step(optim_params, *, adam_params)``."""
    if optim_params is not None and adam_params is not None:
        raise ValueError("Specify optim_params or legacy adam_params, not both")
    params = optim_params if optim_params is not None else adam_params
    if not isinstance(params, OptimParams):
        raise TypeError(f"optim_step needs AdamParams or another OptimParams (e.g. DimuonParams), got {params!r}")
    return params


def _optim_step_request(params: OptimParams, model_id: str, seq_id: int) -> OptimStepRequest:
    """Adam parameters go under 0.16's ``adam_params``; another family's under 0.38's ``optim_params``."""
    if isinstance(params, AdamParams):
        return OptimStepRequest(adam_params=params, model_id=model_id, seq_id=seq_id)
    return OptimStepRequest(optim_params=params, model_id=model_id, seq_id=seq_id)


_PathResponse = TypeVar("_PathResponse", SaveWeightsForSamplerResponse, SaveWeightsExternalResponse)


def _named_path(method: str, name: str, response_type: type[_PathResponse]) -> Callable[[Any], _PathResponse]:
    """The public answer of a named save, which must carry the checkpoint's path."""

    def with_path(result: Any) -> _PathResponse:
        if result.path is None:
            raise ValueError(f"{method}({name!r}) answered without a path: {result!r}")
        return response_type(path=result.path)

    return with_path


async def _expiry_says_what_ran(awaitable: Awaitable[T], changes_state: bool) -> T:
    """A training request whose future expired ran. With ``changes_state`` (every training write but ``forward``)
    its effect stays on the model: say so, since a re-send would apply the step twice; a ``forward`` may be sent
    again for its result."""
    try:
        return await awaitable
    except FutureExpiredError as expired:
        if expired.changes_state == changes_state:
            raise
        raise FutureExpiredError(
            expired.request_id, expired.status_code, request_type=expired.request_type, changes_state=changes_state
        ) from None


def _say_what_became_of_the_seq_id(
    exc: Exception, endpoint: str, model_id: str, seq_id: int, reused: bool, held_back: str | None
) -> None:
    """End the error's message (which already says whether the request ran) with its seq_id and what became of it
    and of the requests after it: ``held_back`` (the rest of its batch) is not sent; the model's other requests
    are never held back, and go on from this seq_id if it did not run, else from the next."""
    if not isinstance(exc, APIError) or exc.outcome is None:
        return
    which = f"{endpoint} had seq_id {seq_id} of model {model_id}"
    if reused:
        which += f"; as it did not run, seq_id {seq_id} goes to this model's next request"
        after = "the requests after it are sent in order with no gap"
    else:
        which += ", which stays used"
        after = f"the requests after it are sent from seq_id {seq_id + 1}"
    if held_back is not None:
        after = f"{held_back} were held back (not sent); {after.replace('after it', 'after the batch')}"
    exc.message = f"{exc.message}. {which}; {after}"
    exc.args = (exc.message,)


class _ChunkSend:
    """How one chunk's dispatch ended: its seq_id once its request was built (None: not sent), its future's handle
    once the server accepted it, or the failure (and whether the chunk ran) that kept it from being accepted."""

    __slots__ = ("failure", "handle", "outcome", "seq_id")

    def __init__(self) -> None:
        self.seq_id: int | None = None
        self.handle: FutureHandle[ForwardBackwardOutput] | None = None
        self.failure: Exception | None = None
        self.outcome: WriteOutcome | None = None
        """None while accepted (or not yet sent); the failure's outcome otherwise."""

    def failed(self, failure: Exception, *, sent: bool) -> None:
        self.failure = failure
        self.outcome = (getattr(failure, "outcome", None) or "may_have_run") if sent else "did_not_run"


def _stop_polling(sends: list[_ChunkSend]) -> None:
    """Stop polling the accepted chunks of a batch whose caller gets an error instead of their results (their work
    on the server goes on)."""
    for send in sends:
        if send.handle is not None:
            send.handle.cancel()


def _say_what_became_of_a_chunk_sent_together(
    exc: Exception, model_id: str, seq_id: int, reused: bool, next_seq_id: int
) -> None:
    """End the error of a chunk sent together with the rest of its batch (which already says whether it ran) with
    its seq_id and what became of it; the model's next request takes ``next_seq_id``."""
    if not isinstance(exc, APIError) or exc.outcome is None:
        return
    which = f"this chunk had seq_id {seq_id} of model {model_id}, sent together with the rest of its batch"
    if reused:
        which += "; as neither it nor a later chunk of the batch ran, its seq_id goes to this model's next requests"
    else:
        which += ", which stays used"
    exc.message = f"{exc.message}. {which}; the requests after the batch are sent from seq_id {next_seq_id}"
    exc.args = (exc.message,)


def _chunk_reports(
    chunks: list[list[Datum]], sends: list[_ChunkSend], results: list[Any] | None = None
) -> list[ChunkReport]:
    """Per chunk: accepted (ran; with ``results``, how its future ended), failed before being accepted (with
    whether it ran), or not sent."""
    reports: list[ChunkReport] = []
    start = 0
    for index, (chunk, send) in enumerate(zip(chunks, sends, strict=True)):
        stop = start + len(chunk)
        seq_id, request_id, error = send.seq_id, None, None
        outcome: WriteOutcome
        if send.handle is not None:
            request_id = send.handle.request_id
            result = results[index] if results is not None else None
            outcome = "ran"  # the server accepted it: it runs or has run
            if isinstance(result, BaseException):
                outcome = getattr(result, "outcome", None) or "ran"
                error = str(result) or type(result).__name__
        elif send.failure is not None:
            outcome = send.outcome or "may_have_run"
            error = str(send.failure) or type(send.failure).__name__
        else:
            outcome, seq_id = "did_not_run", None
        reports.append(
            ChunkReport(
                index=index, data_start=start, data_stop=stop, outcome=outcome, seq_id=seq_id,
                request_id=request_id, error=error,
            )
        )
        start = stop
    return reports


async def _every_chunk(
    operation: str, chunks: list[list[Datum]], sends: list[_ChunkSend], *, changes_state: bool
) -> ForwardBackwardOutput:
    """The combined result of every chunk, in chunk order; if any chunk failed, a :class:`ChunkedRequestError` that
    says how each one ended (every chunk is waited for, so the report is complete)."""
    handles = [send.handle for send in sends if send.handle is not None]
    assert len(handles) == len(sends), "every chunk was accepted"
    chunk_results = (_expiry_says_what_ran(handle, changes_state) for handle in handles)
    results = await asyncio.gather(*chunk_results, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if not failures:
        return combine_forward_backward_outputs(results)  # type: ignore[arg-type]
    for failure in failures:
        if not isinstance(failure, Exception):
            raise failure  # a part cancelled (or worse): no report to make
    reports = _chunk_reports(chunks, sends, results=list(results))
    raise ChunkedRequestError(operation, reports, changes_state=changes_state) from failures[0]
