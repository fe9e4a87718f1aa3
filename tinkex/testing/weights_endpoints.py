"""The weights and checkpoint endpoints: save (training state, sampler weights, 0.38's external weights), load
(into a model, or 0.38's create-a-model-from-a-checkpoint), 0.38's ``copy_weights`` and ``weights_info``, and the
downloads: a checkpoint's archive URL, the signed URLs of an external-weights export, and the download itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import msgspec
from msgspec import UNSET

from tinkex import types as t

from . import tiny_lm
from .calls import Call, Result, answers_404, open_session, reject
from .checkpoint_files import external_weights_files
from .endpoint_state import EndpointState
from .registry import (
    CheckpointRecord,
    NotFound,
    RunRecord,
    SamplerRecord,
    TinkerPath,
    metadata_strings,
    parse_tinker_path,
    utcnow,
)
from .replies import Reply, json_reply

__all__ = ["WeightsEndpoints"]

_ARCHIVE_URL_LIFETIME = timedelta(minutes=15)
_EXTERNAL_URL_LIFETIME = timedelta(hours=1)


def _explicit(request: msgspec.Struct, name: str) -> Any:
    """A request field as sent: ``UNSET`` when the body did not carry it (reading the attribute gives its default)."""
    return msgspec.structs.asdict(request).get(name, UNSET)


def _external_files(checkpoint: CheckpointRecord) -> dict[str, bytes]:
    return external_weights_files(checkpoint.base_model, checkpoint.lora_rank, str(checkpoint.path), checkpoint.weights)


class WeightsEndpoints:
    def __init__(self, state: EndpointState) -> None:
        self.state = state
        self.registry = state.registry

    def _checkpoint_name(self, name: str | None, seq_id: int | None) -> str:
        if name is None:
            return f"checkpoint-{seq_id if seq_id is not None else self.registry.new_id('auto')}"
        if not name or "/" in name:
            raise tiny_lm.ModelInputError(f"path {name!r} must be a non-empty checkpoint name without '/'")
        return name

    # saves

    def save_weights(self, call: Call) -> Result:
        request: t.SaveWeightsRequest = call.body
        run = self.state.live_run(request.model_id)

        def compute() -> msgspec.Struct:
            name = self._checkpoint_name(request.path, request.seq_id)
            # 0.38 says whether an existing checkpoint may be replaced; 0.16 does not, and always replaced it.
            replaces = self.registry.exists(TinkerPath(run.run_id, "weights", name))
            if replaces and _explicit(request, "overwrite") is False:
                raise tiny_lm.ModelInputError(
                    f"checkpoint tinker://{run.run_id}/weights/{name} already exists; save with overwrite=True "
                    "to replace it"
                )
            saved = self.registry.save_checkpoint(
                self.state.trainable(run), "weights", name, request.ttl_seconds, request.user_metadata
            )
            return t.SaveWeightsResponse(path=str(saved.path))

        return self.state.submit(call, run.run_id, compute, session_id=run.session_id)

    def save_weights_for_sampler(self, call: Call) -> Result:
        request: t.SaveWeightsForSamplerRequest = call.body
        run = self.state.live_run(request.model_id)

        def compute() -> msgspec.Struct:
            self.state.trainable(run)
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

        return self.state.submit(call, run.run_id, compute, session_id=run.session_id)

    def save_weights_external(self, call: Call) -> Result:
        request: t.SaveWeightsExternalRequest = call.body
        run = self.state.live_run(request.model_id)

        def compute() -> msgspec.Struct:
            if request.age_encryption_recipients:
                raise tiny_lm.ModelInputError("age_encryption_recipients: the local server cannot encrypt exports")
            name = self._checkpoint_name(request.path, request.seq_id)
            saved = self.registry.save_checkpoint(run, "external_weights", name, request.ttl_seconds)
            size = sum(len(data) for data in _external_files(saved).values())
            return t.SaveWeightsExternalResponseInternal(path=str(saved.path), size_bytes=size)

        return self.state.submit(call, run.run_id, compute, session_id=run.session_id)

    # loads

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
        run = self.state.live_run(request.model_id)

        def compute() -> msgspec.Struct:
            checkpoint = self._loadable(request.path)
            if checkpoint.base_model != run.base_model:
                raise tiny_lm.ModelInputError(
                    f"checkpoint {request.path} is for {checkpoint.base_model}, model {run.run_id} is {run.base_model}"
                )
            run.state.restore(checkpoint.weights, with_optimizer=request.optimizer)
            run.corrupted = False
            return t.LoadWeightsResponse(path=request.path)

        return self.state.submit(call, run.run_id, compute, session_id=run.session_id)

    def _create_via_load(self, call: Call, request: t.LoadWeightsRequest) -> Result:
        """[0.38] The load is the model's first request: the model is made from the checkpoint (no create_model)."""
        session = open_session(self.registry, request.session_id)
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
            run = RunRecord(
                run_id=model_id,
                session_id=session.session_id,
                base_model=base_model,
                lora_rank=checkpoint.lora_rank,
                train_unembed=source.train_unembed if source else True,
                train_mlp=source.train_mlp if source else True,
                train_attn=source.train_attn if source else True,
                user_metadata=metadata_strings(request.user_metadata),
                last_request_time=utcnow(),
            )
            run.state.restore(checkpoint.weights, with_optimizer=request.optimizer)
            self.registry.add_run(run)
            return t.LoadWeightsResponse(path=request.path, model_id=model_id)

        return self.state.submit(call, model_id, compute, session_id=session.session_id)

    # copies and their info (0.38)

    def copy_weights(self, call: Call) -> Result:
        """[0.38] The checkpoint under a new training run that can be sampled or loaded, never trained."""
        request: t.CopyWeightsRequest = call.body
        _, source = self.state.checkpoint_at("source_path", request.source_path)
        if request.session_id is not None:
            if request.model_seq_id is None:
                raise reject(400, "copy_weights with session_id needs model_seq_id")
            session = open_session(self.registry, request.session_id)
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
        path, _ = self.state.checkpoint_at("tinker_path", request.tinker_path)
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

    # downloads

    def get_checkpoint_archive_url(self, call: Call) -> Result:
        """302 to a download URL on this server, valid for 15 minutes (docs/wire.md §10.6)."""
        path = self.state.checkpoint_in_path(call).path
        filename = f"{path.run_id}-{path.name}.tar.gz".replace(":", "_")
        url = self.state.downloads.link(
            call.base_url, lambda: self.registry.archive(path), "application/gzip", filename, _ARCHIVE_URL_LIFETIME
        )
        expires = datetime.now(timezone.utc) + _ARCHIVE_URL_LIFETIME
        headers = (
            (b"location", url.encode()),
            (b"expires", format_datetime(expires.replace(microsecond=0), usegmt=True).encode()),
        )
        return Result(Reply(302, b"", headers))

    def external_weights_urls(self, call: Call) -> Result:
        """[0.38] One signed URL per file of an external-weights export."""
        checkpoint = self.state.checkpoint_in_path(call)
        if checkpoint.path.kind != "external_weights":
            raise reject(400, f"{checkpoint.path} is not an external weights checkpoint (external_weights/<name>)")
        urls = {}
        for name in _external_files(checkpoint):
            def produce(name: str = name, checkpoint: CheckpointRecord = checkpoint) -> bytes:
                return _external_files(self.registry.checkpoint(checkpoint.path))[name]

            kind = "application/json" if name.endswith(".json") else "application/octet-stream"
            urls[name] = self.state.downloads.link(call.base_url, produce, kind, name, _EXTERNAL_URL_LIFETIME)
        expires = (datetime.now(timezone.utc) + _EXTERNAL_URL_LIFETIME).replace(microsecond=0)
        return Result(json_reply(t.ExternalWeightsUrlsResponse(urls=urls, expires=expires)))

    def download(self, call: Call) -> Result:
        return Result(self.state.downloads.serve(call.params["token"]))
