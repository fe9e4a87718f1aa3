"""The training model endpoints: create a model, its info, unload it, ``forward``, ``forward_backward`` (built-in
losses and the custom losses 0.38 uploads with ``create_custom_loss``) and ``optim_step``.

Work runs at submission on the tiny model (:mod:`.tiny_lm`) and its result becomes a future
(:meth:`.EndpointState.submit`); bad inputs the request shape cannot catch fail the future as a user error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from tinkex import types as t

from . import custom_loss_graph, tiny_lm
from .calls import Call, Result, open_session
from .endpoint_state import EndpointState
from .model_inputs import check_token_ids, check_vocabulary, datum_input, float32_tensor
from .registry import CustomLossRecord, RunRecord, metadata_strings, utcnow
from .replies import json_reply

__all__ = ["TrainingEndpoints"]


class TrainingEndpoints:
    def __init__(self, state: EndpointState) -> None:
        self.state = state
        self.registry = state.registry

    def create_model(self, call: Call) -> Result:
        request: t.CreateModelRequest = call.body
        open_session(self.registry, request.session_id)
        model_id = f"{request.session_id}:train:{request.model_seq_id}"

        def compute() -> msgspec.Struct:
            problem = self.state.unsupported(request.base_model)
            if problem is not None:
                raise tiny_lm.ModelInputError(problem)
            lora = request.lora_config or t.LoraConfig(rank=32)
            targets = [name for name, on in (("attn", lora.train_attn), ("mlp", lora.train_mlp),
                                              ("unembed", lora.train_unembed)) if on]
            # The adapter's random half is seeded by the client's LoRA seed, else by the run id (reproducible).
            state = tiny_lm.ModelState.fresh(
                self.state.vocab_size, lora.rank, targets, lora.seed if lora.seed is not None else model_id
            )
            self.registry.add_run(
                RunRecord(
                    run_id=model_id,
                    session_id=request.session_id,
                    base_model=request.base_model,
                    lora_rank=lora.rank,
                    train_unembed=lora.train_unembed,
                    train_mlp=lora.train_mlp,
                    train_attn=lora.train_attn,
                    user_metadata=metadata_strings(request.user_metadata),
                    last_request_time=utcnow(),
                    state=state,
                )
            )
            return t.CreateModelResponse(model_id=model_id)

        return self.state.submit(call, model_id, compute, session_id=request.session_id)

    def get_info(self, call: Call) -> Result:
        request: t.GetInfoRequest = call.body
        run = self.state.run(request.model_id)
        data = t.ModelData(arch="tinkex-tiny-lm", model_name=run.base_model, tokenizer_id=run.base_model)
        info = t.GetInfoResponse(
            model_data=data, model_id=run.run_id, is_lora=True, lora_rank=run.lora_rank, model_name=run.base_model
        )
        return Result(json_reply(info), model_id=run.run_id)

    def unload_model(self, call: Call) -> Result:
        request: t.UnloadModelRequest = call.body
        run = self.state.live_run(request.model_id)
        return self.state.submit(
            call, run.run_id, lambda: t.UnloadModelResponse(model_id=run.run_id), session_id=run.session_id
        )

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
        run = self.state.live_run(request.model_id)
        params = request.optim_params  # Adam's (0.16 and 0.38) or another family's (0.38 optimizer_params)

        def compute() -> msgspec.Struct:
            settings = tiny_lm.adam_settings(params)  # another optimizer family is refused, by name
            return t.OptimStepResponse(metrics=self.state.trainable(run).state.apply_optimizer(settings))

        return self.state.submit(call, run.run_id, compute, session_id=run.session_id)

    def _loss(self, call: Call, model_id: str, fb_input: t.ForwardBackwardInput, backward: bool) -> Result:
        run = self.state.live_run(model_id)
        vocab_size = self.state.vocab_size
        for index, datum in enumerate(fb_input.data):
            check_vocabulary(datum.model_input, vocab_size, f"data[{index}].model_input")
            targets = datum.loss_fn_inputs.get("target_tokens")
            if targets is not None:
                check_token_ids(targets.data, vocab_size, f"data[{index}].loss_fn_inputs['target_tokens']")

        def compute() -> msgspec.Struct:
            data = [datum_input(datum, index) for index, datum in enumerate(fb_input.data)]
            for index, datum in enumerate(fb_input.data):
                self._check_provenance(datum, index)
            state = self.state.trainable(run).state
            base = self.state.base_weights(run.base_model)
            if fb_input.loss_fn == "custom":
                loss = self._custom_loss(run, fb_input.loss_fn_config)
                outputs, metrics = custom_loss_graph.run_loss(base, state, data, loss.nodes, backward)
            else:
                config = {k: float(v) for k, v in (fb_input.loss_fn_config or {}).items()}
                outputs, metrics = tiny_lm.run_builtin_loss(base, state, data, fb_input.loss_fn, config, backward)
            return t.ForwardBackwardOutput(
                loss_fn_output_type="ArrayRecord",
                loss_fn_outputs=[
                    {"logprobs": float32_tensor(o.logprobs), "elementwise_loss": float32_tensor(o.elementwise_loss)}
                    for o in outputs
                ],
                metrics=metrics,
            )

        return self.state.submit(call, model_id, compute, session_id=run.session_id)

    def _check_provenance(self, datum: t.Datum, index: int) -> None:
        """Provenance spans may only name sequences this server sampled, within their lengths."""
        for field_name in ("model_input_spans", "loss_fn_input_spans"):
            spans = getattr(datum, field_name, None)
            for position, span in enumerate(spans or ()):
                known = self.state.sequence_lengths.get(span.sequence_id)
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

    # custom losses (0.38)

    def create_custom_loss(self, call: Call) -> Result:
        request: t.CreateCustomLossRequest = call.body
        session = open_session(self.registry, request.session_id)

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

        return self.state.submit(call, None, compute, session_id=session.session_id)

    def _custom_loss(self, run: RunRecord, config: Mapping[str, Any] | None) -> CustomLossRecord:
        """The uploaded loss a ``custom`` forward_backward names (by ``loss_id``, or by its name in the session)."""
        wanted = (config or {}).get("loss_id")
        if not isinstance(wanted, str):
            raise tiny_lm.ModelInputError(
                "loss_fn 'custom' needs loss_fn_config {'loss_id': <id from create_custom_loss>}"
            )
        for loss in self.registry.custom_losses.values():
            if loss.session_id == run.session_id and wanted in (loss.loss_id, loss.name):
                return loss
        raise tiny_lm.ModelInputError(f"no custom loss {wanted!r} was uploaded in session {run.session_id}")
