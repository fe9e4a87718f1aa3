"""forward_backward chunking, how a batch's chunks are dispatched, and the combination of per-chunk results
(``docs/wire.md`` §1.6, §4.3).

Mirrors the official SDK: ``TrainingClient._chunked_requests_generator``, ``_run_fwd_bwd`` (the
``parallel_fwdbwd_chunks`` flag) and ``lib/chunked_fwdbwd_helpers.combine_fwd_bwd_output_results``.

Dispatch of a batch in several chunks (pure decisions here; :mod:`tinkex.training_client` sends):

- one after another (:func:`chunks_together` False: the flag off, no flags at all, or one chunk): each chunk is
  submitted once the one before has its future id, so the server sees them in seq_id order;
- together (the server's ``parallel_fwdbwd_chunks``, on by default in 0.38): the batch takes its seq_ids at once, in
  chunk order, and every chunk but the first is submitted at the same time; the first goes last, once each of the
  others was accepted or failed (:func:`together_waves`), so a server that runs a model's requests in seq_id order
  finds the whole batch queued when the first arrives, as officially. The first chunk is held back (not sent) only
  when every other chunk was refused before it ran (:func:`first_chunk_held_back`): then none of the batch ran and
  all its seq_ids go back (:func:`give_back_from`), leaving no gap in the model's sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from pristine_transport.policy import WriteOutcome

from .estimate import estimate_datum_bytes
from .types import ClientConfigResponse, Datum, ForwardBackwardOutput, LossFnOutput

__all__ = [
    "MAX_CHUNK_BYTES_COUNT",
    "MAX_CHUNK_LEN",
    "chunk_data",
    "chunks_together",
    "combine_forward_backward_outputs",
    "first_chunk_held_back",
    "give_back_from",
    "reduce_metrics",
    "together_waves",
]

logger = logging.getLogger(__name__)

MAX_CHUNK_LEN = 1024
MAX_CHUNK_BYTES_COUNT = 5_000_000


def chunk_data(
    data: Sequence[Datum],
    max_len: int = MAX_CHUNK_LEN,
    max_bytes: int = MAX_CHUNK_BYTES_COUNT,
) -> list[list[Datum]]:
    """Split ``data`` greedily, in order, into chunks of at most ``max_len`` data and (unless a single
    datum is larger on its own) at most ``max_bytes`` estimated bytes. Empty input gives no chunks."""
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    chunks: list[list[Datum]] = []
    current: list[Datum] = []
    current_bytes = 0
    for datum in data:
        datum_bytes = estimate_datum_bytes(datum)
        if current and (current_bytes + datum_bytes > max_bytes or len(current) == max_len):
            chunks.append(current)
            current, current_bytes = [], 0
        current.append(datum)
        current_bytes += datum_bytes
    if current:
        chunks.append(current)
    return chunks


def chunks_together(flags: ClientConfigResponse | None, chunk_count: int) -> bool:
    """Whether a batch of ``chunk_count`` chunks is dispatched together: the server's ``parallel_fwdbwd_chunks``
    when it sent its flags and there is more than one chunk. Without flags (a 0.16 server, forced 0.16) the
    chunks go one after another, as 0.16 sends them."""
    return flags is not None and flags.parallel_fwdbwd_chunks and chunk_count > 1


def together_waves(chunk_count: int) -> list[list[int]]:
    """The chunk indices of a batch dispatched together, in waves: every chunk but the first at once, then the
    first (the official order: the server starts the batch when its first seq_id arrives)."""
    if chunk_count < 2:
        return [list(range(chunk_count))]
    return [list(range(1, chunk_count)), [0]]


def first_chunk_held_back(other_outcomes: Sequence[WriteOutcome | None]) -> bool:
    """Whether the first chunk of a batch dispatched together stays unsent, given how each other chunk's submit
    ended (None: accepted): only when every one was refused before it ran, so sending it would run a part alone
    and leave the others' seq_ids as a gap."""
    return bool(other_outcomes) and all(outcome == "did_not_run" for outcome in other_outcomes)


def give_back_from(outcomes: Sequence[WriteOutcome | None]) -> int | None:
    """The first index of the batch's trailing chunks that surely did not run (refused, or not sent:
    ``did_not_run``; None: accepted), whose seq_ids the model's next requests can take; None if the last chunk
    was accepted or may have run."""
    start = len(outcomes)
    while start > 0 and outcomes[start - 1] == "did_not_run":
        start -= 1
    return start if start < len(outcomes) else None


def combine_forward_backward_outputs(outputs: Sequence[ForwardBackwardOutput]) -> ForwardBackwardOutput:
    """One output for a chunked call: ``loss_fn_outputs`` concatenated in chunk order, metrics reduced."""
    if not outputs:
        return ForwardBackwardOutput(loss_fn_output_type="", loss_fn_outputs=[], metrics={})
    combined: list[LossFnOutput] = [item for output in outputs for item in output.loss_fn_outputs]
    return ForwardBackwardOutput(
        loss_fn_output_type=outputs[0].loss_fn_output_type,
        loss_fn_outputs=combined,
        metrics=reduce_metrics(outputs),
    )


def _weighted_mean(values: list[float], weights: list[int]) -> float:
    total_weight = sum(weights)
    if total_weight == 0:
        # No chunk produced outputs, so there is nothing to weight by (numpy would divide by zero).
        return sum(values) / len(values)
    return sum(v * w for v, w in zip(values, weights, strict=True)) / total_weight


def _hash_unordered(values: list[float]) -> int:
    # Each chunk reports a hash of its items; combining the sorted integer values makes the result
    # independent of chunk order. Python's int-tuple hash is deterministic (no hash randomisation).
    return hash(tuple(sorted(int(value) for value in values)))


_UNWEIGHTED: dict[str, Callable[[list[float]], float]] = {
    "sum": sum,
    "min": min,
    "max": max,
    "hash_unordered": _hash_unordered,
}
_KNOWN_REDUCTIONS = frozenset({*_UNWEIGHTED, "mean", "slack", "unique"})


def reduce_metrics(outputs: Sequence[ForwardBackwardOutput]) -> dict[str, float]:
    """Reduce each ``"<name>:<reduction>"`` metric of the first output across all outputs.

    ``mean`` is weighted by each output's number of ``loss_fn_outputs``; ``slack`` is max minus that
    weighted mean; ``sum``/``min``/``max``/``hash_unordered`` are unweighted; ``unique`` keeps every value
    as ``key``, ``key_1``, ``key_2``, … (the official suffixes). A metric missing from any output, or with an
    unknown reduction, is dropped. A key without exactly one ``:`` raises ``ValueError``.
    """
    if not outputs:
        return {}
    weights = [len(output.loss_fn_outputs) for output in outputs]
    reduced: dict[str, float] = {}
    for key in outputs[0].metrics:
        parts = key.split(":")
        if len(parts) != 2:
            raise ValueError(f"metric key {key!r} must have the form '<name>:<reduction>' with exactly one ':'")
        reduction = parts[1]
        if reduction not in _KNOWN_REDUCTIONS:
            logger.debug("dropping metric %r: unknown reduction %r", key, reduction)
            continue
        if not all(key in output.metrics for output in outputs):
            continue
        values = [output.metrics[key] for output in outputs]
        if reduction == "mean":
            reduced[key] = _weighted_mean(values, weights)
        elif reduction == "slack":
            reduced[key] = max(values) - _weighted_mean(values, weights)
        elif reduction == "unique":
            reduced[key] = values[0]
            for index, value in enumerate(values[1:], start=1):
                reduced[f"{key}_{index}"] = value
        else:
            reduced[key] = _UNWEIGHTED[reduction](values)
    return reduced
