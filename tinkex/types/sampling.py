"""Sampling wire types: SamplingParams and asample (`tinker-wire.md` §1.4)."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from ._base import RequestStruct, ResponseStruct, unset_reads_as
from .model_input import ModelInput

__all__ = ["SampleRequest", "SampleResponse", "SampledSequence", "SamplingParams", "StopReason"]

StopReason = Literal["length", "stop"]


@unset_reads_as(max_tokens=None, seed=None, stop=None, temperature=1.0, top_k=-1, top_p=1.0)
class SamplingParams(RequestStruct, kw_only=True):
    """Only the parameters passed are sent; reading an unpassed one gives the documented default.

    ``stop`` is a string, a list of strings or a list of token ids (not a mix).
    """

    max_tokens: int | None | UnsetType = UNSET
    seed: int | None | UnsetType = UNSET
    stop: str | list[str | int] | None | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_k: int | UnsetType = UNSET
    top_p: float | UnsetType = UNSET

    def __post_init__(self) -> None:
        stop = self.stop
        if not isinstance(stop, (list, tuple)):
            return
        if not (all(isinstance(s, str) for s in stop) or all(type(s) is int for s in stop)):
            raise ValueError("stop must be a string, a list of strings or a list of token ids, not a mix")
        if isinstance(stop, tuple):
            msgspec.structs.force_setattr(self, "stop", list(stop))


@unset_reads_as(
    base_model=None, model_path=None, sampling_session_id=None, seq_id=None, type="sample"
)
class SampleRequest(RequestStruct, kw_only=True):
    num_samples: int = 1
    prompt: ModelInput
    sampling_params: SamplingParams
    base_model: str | None | UnsetType = UNSET
    model_path: str | None | UnsetType = UNSET
    sampling_session_id: str | None | UnsetType = UNSET
    seq_id: int | None | UnsetType = UNSET
    prompt_logprobs: bool = False
    topk_prompt_logprobs: int = 0
    type: Literal["sample"] | UnsetType = UNSET


class SampledSequence(ResponseStruct, kw_only=True):
    stop_reason: StopReason
    tokens: list[int]
    logprobs: list[float] | None = None


class SampleResponse(ResponseStruct, kw_only=True):
    sequences: list[SampledSequence]
    type: Literal["sample"] | None = None
    prompt_logprobs: list[float | None] | None = None
    """One entry per prompt token; the first is ``None``."""
    topk_prompt_logprobs: list[list[tuple[int, float]] | None] | None = None
