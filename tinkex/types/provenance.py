"""Provenance spans [0.38]: which sampled sequence each run of a Datum's tokens came from.

A ``ProvenanceSpans`` list tiles one Datum field (``model_input`` or ``loss_fn_inputs["target_tokens"]``):
consecutive runs whose lengths sum to the field's length, each naming a ``SampledSequence.sequence_id``.
The official SDK sends spans only in its protobuf ``forward_backward`` body (a ``oneof prompt_tokens |
sampled_tokens``); in JSON tinkex tags each span with ``type`` set to that oneof name, so the two variants
(same fields) stay distinguishable.
"""

from __future__ import annotations

from typing import Union

from ._base import RequestStruct, official_dataclass

__all__ = ["PromptProvenanceSpan", "ProvenanceSpans", "SampledProvenanceSpan", "check_span_tiling"]


def _check_span(span: PromptProvenanceSpan | SampledProvenanceSpan) -> None:
    name = type(span).__name__
    if span.length < 0:
        raise ValueError(f"{name}.length must be >= 0, got {span.length}")
    if not span.sequence_id:
        raise ValueError(f"{name}.sequence_id must be non-empty")
    if span.offset < 0:
        raise ValueError(f"{name}.offset must be >= 0, got {span.offset}")


@official_dataclass  # 0.38 declares it a frozen dataclass; the cookbook calls dataclasses.replace on spans
class PromptProvenanceSpan(RequestStruct, kw_only=True, tag_field="type", tag="prompt_tokens"):
    """A run of tokens that were given as sampling input: positions ``[offset, offset + length)`` of the
    prompt of the request whose sequence is ``sequence_id``."""

    sequence_id: str
    offset: int = 0
    length: int

    def _after_conversion(self) -> None:
        _check_span(self)


@official_dataclass
class SampledProvenanceSpan(RequestStruct, kw_only=True, tag_field="type", tag="sampled_tokens"):
    """A run of tokens produced by one sampled sequence: positions ``[offset, offset + length)`` of that
    sequence's sampled tokens."""

    sequence_id: str
    offset: int = 0
    length: int

    def _after_conversion(self) -> None:
        _check_span(self)


ProvenanceSpans = list[Union[PromptProvenanceSpan, SampledProvenanceSpan]]
"""Consecutive runs tiling one Datum field; see ``Datum.with_provenance``."""


def check_span_tiling(field: str, spans: ProvenanceSpans, expected_length: int) -> None:
    """Raise ``ValueError`` unless the runs' lengths sum to ``expected_length`` (the field's length)."""
    for span in spans:
        if not isinstance(span, (PromptProvenanceSpan, SampledProvenanceSpan)):
            raise TypeError(
                f"{field} spans must be PromptProvenanceSpan or SampledProvenanceSpan, got {type(span).__name__}"
            )
    total = sum(span.length for span in spans)
    if total != expected_length:
        raise ValueError(
            f"{field} spans cover {total} positions but the field has {expected_length}; "
            "the runs must tile it exactly"
        )
