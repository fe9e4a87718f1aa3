"""Sampling wire types: SamplingParams and asample (`docs/wire.md` §1.4, §1.7).

Responses keep the JSON shape every server sends (``tokens`` / ``logprobs`` lists); 0.38's numpy views
(``tokens_np``, ``logprobs_np``, ``topk_logprobs_np``, ``prompt_logprobs_np``, ``topk_prompt_logprobs_np``) are
read-only properties built from them, so numpy is imported only when one is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from msgspec import UNSET, UnsetType

from ._base import RequestStruct, ResponseStruct, ValidationError, official_dataclass, unset_reads_as
from .model_input import ModelInput
from .tensor import TensorData

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "MASK_LOGPROB",
    "PromptAltTokens",
    "SampleRequest",
    "SampleResponse",
    "SampledSequence",
    "SamplingParams",
    "StopReason",
    "TopkLogprobs",
    "topk_to_lists",
]

StopReason = Literal["length", "stop"]

TopkEntries = list[list[tuple[int, float]] | None]
"""Per position: up to k ``(token_id, logprob)`` pairs, or ``None`` where the engine reported nothing."""

MASK_LOGPROB = -99999.0
"""Logprob of an empty top-k cell in the dense form (its token id is 0)."""


@unset_reads_as(max_tokens=None, seed=None, stop=None, temperature=1, top_k=-1, top_p=1)  # official: int 1
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

    def _after_conversion(self) -> None:
        # After construction-time conversion (tuples are lists, numpy ids ints by now). msgspec cannot express
        # "a list of str or a list of int" as a union, hence this check.
        stop = self.stop
        if type(stop) is list and not (all(type(s) is str for s in stop) or all(type(s) is int for s in stop)):
            raise ValidationError(
                "SamplingParams", "stop", stop, "a string, a list of strings or a list of token ids, not a mix"
            )


@unset_reads_as(
    base_model=None,
    model_path=None,
    sampling_session_id=None,
    seq_id=None,
    topk_sample_logprobs=0,
    target_prompt_logprobs=None,
    prompt_alt_tokens_k=0,
    prompt_logprobs_last_n=None,
    record_stability_info=None,
    type="sample",
)
class SampleRequest(RequestStruct, kw_only=True):
    """0.16's fields go out as 0.16 sends them (``prompt_logprobs`` always: the client sets it); the 0.38
    fields only when set."""

    num_samples: int = 1
    prompt: ModelInput
    sampling_params: SamplingParams
    base_model: str | None | UnsetType = UNSET
    model_path: str | None | UnsetType = UNSET
    sampling_session_id: str | None | UnsetType = UNSET
    seq_id: int | None | UnsetType = UNSET
    prompt_logprobs: bool | None = None
    topk_prompt_logprobs: int = 0
    topk_sample_logprobs: int | UnsetType = UNSET
    """[0.38] Top-k logprobs per sampled token (``SampledSequence.topk_logprobs``)."""
    target_prompt_logprobs: TensorData | None | UnsetType = UNSET
    """[0.38] int64 ``[len(prompt) - 1, K]`` token ids to score at prompt position ``i + 1``; -1 asks nothing."""
    prompt_alt_tokens_k: int | UnsetType = UNSET
    """[0.38] Draws per prompt position after the first (``SampleResponse.prompt_alt_tokens``)."""
    prompt_logprobs_last_n: int | None | UnsetType = UNSET
    """[0.38] Score only the last N prompt tokens (needs ``prompt_logprobs``)."""
    record_stability_info: bool | None | UnsetType = UNSET
    """[0.38] Record per-sequence stability information (StableReinforce training)."""
    type: Literal["sample"] | UnsetType = UNSET


@dataclass(frozen=True, slots=True)
class TopkLogprobs:
    """Top-k tokens at each position as dense ``(length, k)`` matrices; empty cells hold token 0 and
    :data:`MASK_LOGPROB`."""

    token_ids: npt.NDArray[Any]
    """int32 token ids."""
    logprobs: npt.NDArray[Any]
    """float32 logprobs."""

    @classmethod
    def from_lists(cls, entries: TopkEntries) -> TopkLogprobs:
        import numpy as np

        k = max((len(row) for row in entries if row), default=0)
        token_ids = np.zeros((len(entries), k), dtype=np.int32)
        logprobs = np.full((len(entries), k), MASK_LOGPROB, dtype=np.float32)
        for i, row in enumerate(entries):
            for j, (token_id, logprob) in enumerate(row or ()):
                token_ids[i, j] = token_id
                logprobs[i, j] = logprob
        return cls(token_ids=token_ids, logprobs=logprobs)

    def to_lists(self) -> TopkEntries:
        """Per position, the non-empty cells as pairs; ``None`` for a position with none."""
        return topk_to_lists(self)


def topk_to_lists(topk: TopkLogprobs) -> TopkEntries:
    """The list form of ``topk`` (official function of the same name): per position, the non-empty cells as
    ``(token_id, logprob)`` pairs, or ``None`` for a position with none."""
    rows: TopkEntries = []
    for ids, lps in zip(topk.token_ids.tolist(), topk.logprobs.tolist(), strict=True):
        pairs = [(t, lp) for t, lp in zip(ids, lps, strict=True) if not (t == 0 and lp == MASK_LOGPROB)]
        rows.append(pairs or None)
    return rows


def _array(values: list[Any], dtype: str) -> np.ndarray[Any, Any]:
    import numpy as np

    return np.asarray(values, dtype=dtype)


@official_dataclass
class SampledSequence(ResponseStruct, kw_only=True):
    """One sampled sequence: the JSON fields, plus 0.38's numpy views as properties."""

    stop_reason: StopReason
    tokens: list[int]
    logprobs: list[float] | None = None
    sequence_id: str | None = None
    """[0.38] Session-scoped id of this sequence (from the asample future's ``sample_sequence_ids``); reference
    it in later requests (``PromptProvenanceSpan`` / ``SampledProvenanceSpan``). None from a 0.16 server."""
    topk_logprobs: TopkEntries | None = None
    """[0.38] Up to k ``(token_id, logprob)`` per generated token when ``topk_sample_logprobs`` was set."""

    @property
    def tokens_np(self) -> npt.NDArray[Any]:
        """The tokens as a 1-D int32 array."""
        return _array(self.tokens, "int32")

    @property
    def logprobs_np(self) -> npt.NDArray[Any] | None:
        """The logprobs as a 1-D float32 array, or None when not requested."""
        return None if self.logprobs is None else _array(self.logprobs, "float32")

    @property
    def topk_logprobs_np(self) -> TopkLogprobs | None:
        return None if self.topk_logprobs is None else TopkLogprobs.from_lists(self.topk_logprobs)


class PromptAltTokens(ResponseStruct, kw_only=True):
    """[0.38] ``k`` independent draws at every prompt position after the first: both tensors are dense
    ``[len(prompt) - 1, k]``; ``tokens[i]`` are alternatives to ``prompt[i + 1]``."""

    tokens: TensorData
    """int64 token ids."""
    logprobs: TensorData
    """float32 logprobs of those tokens."""


@official_dataclass
class SampleResponse(ResponseStruct, kw_only=True):
    sequences: list[SampledSequence]
    type: Literal["sample"] = "sample"
    prompt_logprobs: list[float | None] | None = None
    """One entry per prompt token; ``None`` where not scored (always the first)."""
    topk_prompt_logprobs: TopkEntries | None = None
    prompt_cache_hit_tokens: int = 0
    """[0.38] Prompt tokens billed as prefix-cache hits (counted once, not per sample)."""
    target_prompt_logprobs: TensorData | None = None
    """[0.38] float32 logprobs of ``SampleRequest.target_prompt_logprobs``, same shape; 0.0 where it had -1."""
    prompt_alt_tokens: PromptAltTokens | None = None
    """[0.38] The draws ``SampleRequest.prompt_alt_tokens_k`` asked for."""

    @property
    def prompt_logprobs_np(self) -> npt.NDArray[Any] | None:
        """The prompt logprobs as a 1-D float32 array, NaN where not scored; None when not requested."""
        if self.prompt_logprobs is None:
            return None
        return _array([float("nan") if lp is None else lp for lp in self.prompt_logprobs], "float32")

    @property
    def topk_prompt_logprobs_np(self) -> TopkLogprobs | None:
        return None if self.topk_prompt_logprobs is None else TopkLogprobs.from_lists(self.topk_prompt_logprobs)
