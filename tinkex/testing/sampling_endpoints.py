"""The sampling endpoints: create a sampling session (from a base model or saved weights), ``asample`` (from a
session, a ``model_path`` or a ``base_model``, with optional backpressure) and the sampler lookup
(``GET /api/v1/samplers/{sampler_id}``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import msgspec

from tinkex import types as t

from . import tiny_lm
from .calls import Call, Result, answers_404, open_session, refuse_if_finished, reject
from .endpoint_state import EndpointState
from .model_inputs import check_vocabulary, tokens_of
from .registry import SamplerRecord
from .replies import json_reply

__all__ = ["SamplingEndpoints", "sampling_settings"]


def sampling_settings(params: t.SamplingParams, seed: str, vocab_size: int) -> tiny_lm.SamplingSettings:
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


class SamplingEndpoints:
    def __init__(self, state: EndpointState, generation: int = 0) -> None:
        """``generation`` is the start number on the state directory (0 without one)."""
        self.state = state
        self.registry = state.registry
        self._sequence_ids = itertools.count(1)
        self._sequence_prefix = f"{generation}." if generation else ""
        """Sequence ids of a restarted server must not repeat the earlier run's."""

    def create_sampling_session(self, call: Call) -> Result:
        request: t.CreateSamplingSessionRequest = call.body
        open_session(self.registry, request.session_id)
        sampler_id = f"{request.session_id}:sample:{request.sampling_session_seq_id}"
        if (request.base_model is None) == (request.model_path is None):
            raise reject(400, "exactly one of base_model and model_path must be set")
        if request.model_path is not None:
            sampler = self._sampler_from_path(sampler_id, request.session_id, request.model_path)
        else:
            base_model = self.state.supported(request.base_model)
            sampler = SamplerRecord(sampler_id, request.session_id, base_model, None, weights=None)
        self.registry.add_sampler(sampler)
        return Result(
            json_reply(t.CreateSamplingSessionResponse(sampling_session_id=sampler_id)), session_id=request.session_id
        )

    def get_sampler(self, call: Call) -> Result:
        with answers_404():
            sampler = self.registry.sampler(call.params["sampler_id"])
        reply = t.GetSamplerResponse(
            sampler_id=sampler.sampler_id, base_model=sampler.base_model, model_path=sampler.model_path
        )
        return Result(json_reply(reply))

    def asample(self, call: Call) -> Result:
        request: t.SampleRequest = call.body
        state = self.state
        limit = state.config.sample_inflight_limit
        if limit is not None and "x-tinker-sampling-backpressure" in call.headers:
            in_flight = state.futures.unfinished("asample")
            if in_flight >= limit:
                raise reject(429, f"sampling backpressure: {in_flight} samples in flight (limit {limit})")
        sampler = self._sampler_for(request)
        session = self.registry.sessions.get(sampler.session_id)
        if session is not None:
            refuse_if_finished(session)
        check_vocabulary(request.prompt, state.vocab_size, "prompt")
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
            prompt = tokens_of(request.prompt, "prompt")
            seed = request.sampling_params.seed
            if seed is None:  # reproducible per server seed, sampler and request
                seed = f"{state.config.seed}:{sampler.sampler_id}:{request.seq_id}"
            settings = sampling_settings(request.sampling_params, str(seed), state.vocab_size)
            base = state.base_weights(sampler.base_model)
            rank, adapter = tiny_lm.snapshot_params(sampler.weights)
            scale = tiny_lm.lora_scale(rank)
            samples = tiny_lm.sample(
                base, adapter, scale, prompt, request.num_samples, settings, tiny_lm.text_decoder(state.vocab_size)
            )
            k = request.topk_prompt_logprobs
            sample_k = request.topk_sample_logprobs or 0
            for sequence_id, s in zip(sequence_ids, samples):
                state.sequence_lengths[sequence_id] = (len(prompt), len(s.tokens))
            return t.SampleResponse(
                sequences=[
                    t.SampledSequence(
                        stop_reason=s.stop_reason,
                        tokens=s.tokens,
                        logprobs=s.logprobs,
                        sequence_id=sequence_id,
                        topk_logprobs=(
                            tiny_lm.topk_sample_logprobs(base, adapter, scale, prompt, s.tokens, sample_k)
                            if sample_k > 0
                            else None
                        ),
                    )
                    for sequence_id, s in zip(sequence_ids, samples)
                ],
                prompt_logprobs=(
                    tiny_lm.prompt_logprobs(base, adapter, scale, prompt) if request.prompt_logprobs else None
                ),
                topk_prompt_logprobs=tiny_lm.topk_prompt_logprobs(base, adapter, scale, prompt, k) if k > 0 else None,
                **_prompt_extras(request, lambda: tiny_lm.prompt_table(base, adapter, scale, prompt), str(seed)),
            )

        return state.submit(
            call, sampler.sampler_id, compute, session_id=sampler.session_id, sample_sequence_ids=sequence_ids
        )

    def _sampler_for(self, request: t.SampleRequest) -> SamplerRecord:
        if request.sampling_session_id is not None:
            with answers_404():
                return self.registry.sampler(request.sampling_session_id)
        if request.model_path is not None:
            return self._sampler_from_path(f"adhoc:{request.model_path}", "", request.model_path)
        if request.base_model is not None:
            base_model = self.state.supported(request.base_model)
            return SamplerRecord(f"adhoc:{request.base_model}", "", base_model, None, None)
        raise reject(400, "one of sampling_session_id, model_path and base_model must be set")

    def _sampler_from_path(self, sampler_id: str, session_id: str, model_path: str) -> SamplerRecord:
        path, checkpoint = self.state.checkpoint_at("model_path", model_path)
        return SamplerRecord(
            sampler_id,
            session_id,
            checkpoint.base_model,
            model_path,
            weights=checkpoint.weights,
            from_training_checkpoint=path.kind == "weights",
        )


def _prompt_extras(request: t.SampleRequest, prompt_table: Callable[[], Any], seed: str) -> dict[str, Any]:
    """0.38's prompt outputs a request asked for (``target_prompt_logprobs``, ``prompt_alt_tokens``), from the
    model's logprobs at each prompt position after the first (``prompt_table()``, computed only then)."""
    extras: dict[str, Any] = {}
    targets = request.target_prompt_logprobs
    alt_k = request.prompt_alt_tokens_k or 0
    if not isinstance(targets, t.TensorData) and alt_k <= 0:
        return extras
    table = prompt_table()
    if isinstance(targets, t.TensorData):
        extras["target_prompt_logprobs"] = t.TensorData.from_numpy(
            tiny_lm.target_prompt_logprobs(table, targets.to_numpy())
        )
    if alt_k > 0:
        tokens, logprobs = tiny_lm.prompt_alt_tokens(table, alt_k, request.sampling_params.temperature, seed)
        extras["prompt_alt_tokens"] = t.PromptAltTokens(
            tokens=t.TensorData.from_numpy(tokens), logprobs=t.TensorData.from_numpy(logprobs)
        )
    return extras
