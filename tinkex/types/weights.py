"""Checkpoint wire types: save_weights, load_weights, save_weights_for_sampler, weights_info (§1.3, §10.5),
and the 0.38 additions: copy_weights, save_weights_external and its signed download URLs (§1.7).

``ttl_seconds`` is always sent (``null`` = never expire). ``save_weights_for_sampler`` has two shapes: named
(``path`` set) and ephemeral (``sampling_session_seq_id`` set); the unused key is absent. Fields 0.38 added to
0.16 requests are sent only when the caller set them (they read as 0.38's default otherwise).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from msgspec import UNSET, UnsetType

from ._base import RequestStruct, ResponseStruct, unset_reads_as
from ._secret import repr_masking
from .optimizer import AdamOptimizerConfig, OptimizerConfig
from .paths import ParsedCheckpointTinkerPath

__all__ = [
    "CopyWeightsRequest",
    "CopyWeightsResponse",
    "ExternalWeightsUrlsResponse",
    "LoadWeightsRequest",
    "LoadWeightsResponse",
    "SamplingClientKind",
    "SaveWeightsExternalRequest",
    "SaveWeightsExternalResponse",
    "SaveWeightsExternalResponseInternal",
    "SaveWeightsForSamplerRequest",
    "SaveWeightsForSamplerResponse",
    "SaveWeightsForSamplerResponseInternal",
    "SaveWeightsRequest",
    "SaveWeightsResponse",
    "WeightsInfoRequest",
    "WeightsInfoResponse",
]

def _checkpoint_console_url(tinker_path: str) -> str:
    """``<console>/checkpoints/<run>/<kind>%2F<name>`` (``TINKER_CONSOLE_URL`` moves the console)."""
    from tinkex.console import console_base_url

    parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
    return (
        f"{console_base_url()}/checkpoints/{quote(parsed.training_run_id, safe='')}/"
        f"{quote(parsed.checkpoint_id, safe='')}"
    )


_SECRET_FIELDS = frozenset({"weights_access_token"})

SamplingClientKind = Literal["snapshot", "inflight"]
"""Which weights a sampling client uses: ``snapshot`` (default) fixed saved weights; ``inflight`` mutable
weights shared by the training model's inflight sampling clients and updated by later inflight saves."""


@unset_reads_as(path=None, overwrite=False, user_metadata=None, type="save_weights")
class SaveWeightsRequest(RequestStruct, kw_only=True):
    model_id: str
    path: str | None | UnsetType = UNSET
    """Checkpoint name; the result path is ``tinker://<run>/weights/<name>``."""
    seq_id: int | None = None
    ttl_seconds: int | None = None
    overwrite: bool | UnsetType = UNSET
    """[0.38] Replace an existing checkpoint of the same name."""
    user_metadata: dict[str, str] | None | UnsetType = UNSET
    """[0.38] Metadata attached to the checkpoint."""
    type: Literal["save_weights"] | UnsetType = UNSET


class SaveWeightsResponse(ResponseStruct, kw_only=True):
    path: str
    type: Literal["save_weights"] | None = None

    def get_console_url(self) -> str:
        """The Tinker Console page of this checkpoint."""
        return _checkpoint_console_url(self.path)


@unset_reads_as(
    model_id=None,
    session_id=None,
    model_seq_id=None,
    base_model=None,
    user_metadata=None,
    optimizer_config=None,
    weights_access_token=None,
    type="load_weights",
)
class LoadWeightsRequest(RequestStruct, kw_only=True):
    """Two addressings: legacy (``model_id`` + ``seq_id``, the load follows ``create_model``; what 0.16 sends)
    and [0.38] create-via-load (``session_id`` + ``model_seq_id``, the load creates the model)."""

    model_id: str | None | UnsetType = UNSET
    path: str
    """A ``tinker://`` path."""
    optimizer: bool
    """Load the optimizer state too."""
    seq_id: int | None = None
    session_id: str | None | UnsetType = UNSET
    model_seq_id: int | None | UnsetType = UNSET
    base_model: str | None | UnsetType = UNSET
    """[0.38] Base model override for create-via-load; must be compatible with the checkpoint's."""
    user_metadata: dict[str, Any] | None | UnsetType = UNSET
    optimizer_config: OptimizerConfig | None | UnsetType = UNSET
    """[0.38] Optimizer of a new weights-only model (Adam when None)."""
    weights_access_token: str | None | UnsetType = UNSET
    """[0.38] Access token for a checkpoint under a different account. Never logged."""
    type: Literal["load_weights"] | UnsetType = UNSET

    def __repr__(self) -> str:
        return repr_masking(self, _SECRET_FIELDS)


class LoadWeightsResponse(ResponseStruct, kw_only=True):
    path: str | None = None
    model_id: str | None = None
    """[0.38] The model a create-via-load made."""
    type: Literal["load_weights"] | None = None


@unset_reads_as(path=None, sampling_session_seq_id=None, kind="snapshot", user_metadata=None, type="save_weights_for_sampler")
class SaveWeightsForSamplerRequest(RequestStruct, kw_only=True):
    model_id: str
    path: str | None | UnsetType = UNSET
    sampling_session_seq_id: int | None | UnsetType = UNSET
    kind: SamplingClientKind | UnsetType = UNSET
    """[0.38] ``snapshot`` or ``inflight`` (see :data:`SamplingClientKind`)."""
    seq_id: int | None = None
    ttl_seconds: int | None = None
    user_metadata: dict[str, str] | None | UnsetType = UNSET
    """[0.38] Metadata attached to the checkpoint."""
    type: Literal["save_weights_for_sampler"] | UnsetType = UNSET


class SaveWeightsForSamplerResponseInternal(ResponseStruct, kw_only=True):
    """The future's result: ``path`` for a named save, ``sampling_session_id`` (and ``path`` null) for an
    ephemeral one."""

    path: str | None = None
    sampling_session_id: str | None = None
    type: Literal["save_weights_for_sampler"] | None = None


class SaveWeightsForSamplerResponse(ResponseStruct, kw_only=True):
    """What ``TrainingClient.save_weights_for_sampler`` returns to the user."""

    path: str
    type: Literal["save_weights_for_sampler"] | None = None

    def get_console_url(self) -> str:
        """The Tinker Console page of this sampler checkpoint."""
        return _checkpoint_console_url(self.path)

    def get_playground_url(self) -> str:
        """The Tinker Playground, set up to sample from this checkpoint."""
        from tinkex.console import console_base_url

        return f"{console_base_url()}/playground?mode=checkpoint&checkpoint={quote(self.path, safe='')}"


class WeightsInfoRequest(RequestStruct, kw_only=True):
    tinker_path: str


class WeightsInfoResponse(ResponseStruct, kw_only=True):
    base_model: str
    is_lora: bool
    lora_rank: int | None = None
    train_unembed: bool | None = None
    train_mlp: bool | None = None
    train_attn: bool | None = None
    optimizer_config: OptimizerConfig = AdamOptimizerConfig()
    """[0.38] The checkpoint's optimizer family (Adam when the server does not say)."""


class CopyWeightsRequest(RequestStruct, kw_only=True):
    """[0.38] Copy a checkpoint: give a destination project, or a session and its model sequence id."""

    session_id: str | None = None
    model_seq_id: int | None = None
    destination_project_id: str | None = None
    source_path: str
    """A ``tinker://`` path of either kind."""
    ttl_seconds: int | None = None
    """Seconds until the copy expires (source expiry is not inherited)."""
    weights_access_token: str | None = None
    """Access token for weights under a different account. Never logged."""

    def __repr__(self) -> str:
        return repr_masking(self, _SECRET_FIELDS)


class CopyWeightsResponse(ResponseStruct, kw_only=True):
    tinker_path: str


class SaveWeightsExternalRequest(RequestStruct, kw_only=True):
    """[0.38] Export the weights as files downloadable through :class:`ExternalWeightsUrlsResponse`."""

    model_id: str
    path: str
    """File/directory name of the export."""
    seq_id: int | None = None
    ttl_seconds: int | None = None
    age_encryption_recipients: list[str] | None = None
    """age recipients (``age1...`` keys or SSH public keys) to encrypt every file to; None = unencrypted."""
    type: Literal["save_weights_external"] = "save_weights_external"


class SaveWeightsExternalResponseInternal(ResponseStruct, kw_only=True):
    """The future's result."""

    path: str | None = None
    size_bytes: int | None = None
    type: Literal["save_weights_external"] | None = None


class SaveWeightsExternalResponse(ResponseStruct, kw_only=True):
    """What ``TrainingClient.save_weights_external`` returns to the user."""

    path: str
    type: Literal["save_weights_external"] | None = None


class ExternalWeightsUrlsResponse(ResponseStruct, kw_only=True):
    urls: dict[str, str]
    """Signed download URL per file, keyed by path relative to the checkpoint root."""
    expires: datetime
