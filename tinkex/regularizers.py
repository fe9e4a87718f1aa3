"""Regularized custom losses: ``total = base + sum(weight_i * term_i)`` over the forward logprobs.

A :class:`RegularizerPipeline` is itself a ``loss_fn`` for ``forward_backward_custom``. Terms are
independent, so they are computed concurrently on a thread pool (torch releases the GIL in its
kernels), bounded by ``timeout`` seconds (default 30).

Metric names follow the wire rule ``<name>:<reduction>`` (exactly one ``:``; the suffix picks
how chunked results are combined), so every value here is reported as ``...:mean``:

- ``loss/base:mean``, ``loss/regularization:mean`` (sum of weighted terms), ``loss/total:mean``;
- per term: ``reg/<name>/value:mean`` (unweighted), ``reg/<name>/weighted:mean`` and, with
  ``track_grad_norms``, ``reg/<name>/grad_norm:mean``: the L2 norm of ``d(weight * term) / d logprobs``
  over all datums;
- the base loss's own metrics, unchanged.

Built-in terms work on the per-datum logprob tensors of the target tokens (all of them, or
the ones a :class:`Consistency` pair names). Every term returns a scalar tensor.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Literal, TypeAlias

from opentelemetry import trace

from tinkex.custom_loss import require_torch

if TYPE_CHECKING:
    import torch

    from tinkex.types import Datum

__all__ = [
    "L1",
    "L2",
    "BaseLossFn",
    "Consistency",
    "ElasticNet",
    "Entropy",
    "GradientPenalty",
    "KLDivergence",
    "Orthogonality",
    "Regularizer",
    "RegularizerPipeline",
    "RegularizerTimeoutError",
    "TermFn",
]

TermFn: TypeAlias = "Callable[[Sequence[Datum], Sequence[torch.Tensor]], torch.Tensor]"
BaseLossFn: TypeAlias = "Callable[[list[Datum], list[torch.Tensor]], tuple[torch.Tensor, Mapping[str, float]]]"
Reduction = Literal["mean", "sum"]

DEFAULT_TIMEOUT_SECONDS = 30.0

_tracer = trace.get_tracer("tinkex.regularizers")


class RegularizerTimeoutError(TimeoutError):
    """Some terms did not finish within the pipeline's timeout."""


@dataclass(frozen=True)
class Regularizer:
    """A named, weighted term. ``name`` is used in metric names, so it must not contain ':'."""

    name: str
    fn: TermFn
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ValueError(f"regularizer name {self.name!r} must be non-empty and contain no ':'")


@dataclass(frozen=True)
class _TermResult:
    value: float
    weighted: torch.Tensor
    grad_norm: float | None


class RegularizerPipeline:
    """``base`` loss plus weighted regularizers, usable as a ``forward_backward_custom`` loss_fn."""

    def __init__(
        self,
        regularizers: Sequence[Regularizer],
        *,
        base: BaseLossFn | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        track_grad_norms: bool = True,
        max_workers: int | None = None,
    ) -> None:
        names = [regularizer.name for regularizer in regularizers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"regularizer names must be unique, repeated: {duplicates}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.regularizers = tuple(regularizers)
        self.base = base
        self.timeout = timeout
        self.track_grad_norms = track_grad_norms
        self.max_workers = max_workers or min(len(self.regularizers), os.cpu_count() or 1) or 1

    def __call__(self, data: list[Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        torch = require_torch()
        with _tracer.start_as_current_span("tinkex.regularizers") as span:
            span.set_attribute("tinkex.regularizers.terms", len(self.regularizers))
            if self.base is not None:
                base_loss, base_metrics = self.base(data, logprobs)
                metrics = {str(name): float(value) for name, value in base_metrics.items()}
            else:
                base_loss, metrics = torch.zeros((), dtype=torch.float32), {}
            results = self._compute_terms(data, logprobs)
            regularization = sum((result.weighted for result in results.values()), torch.zeros(()))
            total = base_loss + regularization
        metrics["loss/base:mean"] = float(base_loss.detach())
        metrics["loss/regularization:mean"] = float(regularization.detach())
        metrics["loss/total:mean"] = float(total.detach())
        for name, result in results.items():
            metrics[f"reg/{name}/value:mean"] = result.value
            metrics[f"reg/{name}/weighted:mean"] = float(result.weighted.detach())
            if result.grad_norm is not None:
                metrics[f"reg/{name}/grad_norm:mean"] = result.grad_norm
        return total, metrics

    def _compute_terms(self, data: Sequence[Datum], logprobs: Sequence[torch.Tensor]) -> dict[str, _TermResult]:
        if len(self.regularizers) <= 1 or self.max_workers == 1:
            return {reg.name: self._compute_term(reg, data, logprobs) for reg in self.regularizers}
        executor = concurrent.futures.ThreadPoolExecutor(self.max_workers, thread_name_prefix="tinkex-regularizer")
        try:
            futures = {executor.submit(self._compute_term, reg, data, logprobs): reg.name for reg in self.regularizers}
            done, pending = concurrent.futures.wait(futures, timeout=self.timeout)
            if pending:
                late = sorted(futures[future] for future in pending)
                raise RegularizerTimeoutError(f"regularizers {late} did not finish within {self.timeout} s")
            return {futures[future]: future.result() for future in futures}
        finally:
            # Never wait for a late term: its thread finishes on its own and its result is dropped.
            executor.shutdown(wait=False, cancel_futures=True)

    def _compute_term(
        self, regularizer: Regularizer, data: Sequence[Datum], logprobs: Sequence[torch.Tensor]
    ) -> _TermResult:
        torch = require_torch()
        value = regularizer.fn(data, logprobs)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise ValueError(
                f"regularizer {regularizer.name!r} must return a scalar tensor, got {type(value).__name__}"
            )
        weighted = regularizer.weight * value.reshape(())
        grad_norm = None
        if self.track_grad_norms:
            grad_norm = 0.0
            if weighted.requires_grad:
                grad_norm = math.sqrt(float(_squared_gradient(torch, weighted, logprobs, create_graph=False)))
        return _TermResult(value=float(value.detach()), weighted=weighted, grad_norm=grad_norm)


def _squared_gradient(
    torch: ModuleType, output: torch.Tensor, inputs: Sequence[torch.Tensor], *, create_graph: bool
) -> torch.Tensor:
    """``sum ||d output / d input||^2`` over ``inputs``. The graph is kept: the total loss still backpropagates."""
    gradients = torch.autograd.grad(output, [*inputs], retain_graph=True, create_graph=create_graph, allow_unused=True)
    return sum((gradient.pow(2).sum() for gradient in gradients if gradient is not None), torch.zeros(()))


# ---------------------------------------------------------------------------------------------
# Built-in terms


def _flat(logprobs: Sequence[torch.Tensor]) -> torch.Tensor:
    torch = require_torch()
    return torch.cat([logprob.reshape(-1) for logprob in logprobs])


def _reduce(values: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    return values.mean() if reduction == "mean" else values.sum()


@dataclass(frozen=True)
class L1:
    """``mean|lp|`` (or sum) over all target-token logprobs: pulls them towards confident (0)."""

    reduction: Reduction = "mean"

    def __call__(self, data: Sequence[Datum], logprobs: Sequence[torch.Tensor]) -> torch.Tensor:
        return _reduce(_flat(logprobs).abs(), self.reduction)


@dataclass(frozen=True)
class L2:
    """``mean(lp^2)`` (or sum) over all target-token logprobs."""

    reduction: Reduction = "mean"

    def __call__(self, data: Sequence[Datum], logprobs: Sequence[torch.Tensor]) -> torch.Tensor:
        return _reduce(_flat(logprobs).pow(2), self.reduction)


@dataclass(frozen=True)
class ElasticNet:
    """``l1_ratio * L1 + (1 - l1_ratio) * L2``."""

    l1_ratio: float = 0.5
    reduction: Reduction = "mean"

    def __post_init__(self) -> None:
        if not 0.0 <= self.l1_ratio <= 1.0:
            raise ValueError(f"l1_ratio must be in [0, 1], got {self.l1_ratio}")

    def __call__(self, data: Sequence[Datum], logprobs: Sequence[torch.Tensor]) -> torch.Tensor:
        flat = _flat(logprobs)
        # mean and sum are linear, so mixing per token equals mixing the reduced L1 and L2.
        return _reduce(self.l1_ratio * flat.abs() + (1.0 - self.l1_ratio) * flat.pow(2), self.reduction)


@dataclass(frozen=True)
class Entropy:
    """Entropy of each datum's logprobs normalised over its positions, ``softmax(lp / temperature)``.

    Averaged over datums. ``mode="penalty"`` returns the entropy (a positive weight discourages
    spread); ``mode="bonus"`` returns its negative (a positive weight rewards spread).
    """

    temperature: float = 1.0
    mode: Literal["penalty", "bonus"] = "penalty"

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    def __call__(self, data: Sequence[Datum], logprobs: Sequence[torch.Tensor]) -> torch.Tensor:
        torch = require_torch()
        entropies = []
        for logprob in logprobs:
            log_p = torch.log_softmax(logprob.reshape(-1) / self.temperature, dim=0)
            entropies.append(-(log_p.exp() * log_p).sum())
        entropy = torch.stack(entropies).mean()
        return entropy if self.mode == "penalty" else -entropy


@dataclass(frozen=True)
class KLDivergence:
    """KL between the policy and reference logprobs of the same target tokens.

    The target tokens are taken as samples of the current policy, so per-token estimates are
    ``forward`` KL(policy || reference): ``lp - ref``; ``reverse`` KL(reference || policy):
    ``exp(ref - lp) * (ref - lp)`` (importance weighted); ``symmetric=True`` adds both.
    Averaged over all target tokens. ``reference`` holds one sequence per datum.
    """

    reference: Sequence[Sequence[float]]
    direction: Literal["forward", "reverse"] = "forward"
    symmetric: bool = False

    def __call__(self, data: Sequence[Datum], logprobs: Sequence[torch.Tensor]) -> torch.Tensor:
        torch = require_torch()
        if len(self.reference) != len(logprobs):
            raise ValueError(f"KLDivergence has {len(self.reference)} reference sequences for {len(logprobs)} datums")
        policy = _flat(logprobs)
        reference = torch.cat([torch.as_tensor(ref, dtype=policy.dtype).reshape(-1) for ref in self.reference])
        if reference.shape != policy.shape:
            raise ValueError(f"KLDivergence reference has {reference.numel()} logprobs, the policy {policy.numel()}")
        forward = policy - reference
        reverse = torch.exp(reference - policy) * (reference - policy)
        if self.symmetric:
            return (forward + reverse).mean()
        return forward.mean() if self.direction == "forward" else reverse.mean()


@dataclass(frozen=True)
class Consistency:
    """Agreement between two views of the same input: ``pairs`` of datum indices.

    Per pair the mean squared (``metric="mse"``) or absolute (``"l1"``) difference of the two
    logprob sequences, which must have the same length; averaged over pairs.
    """

    pairs: Sequence[tuple[int, int]]
    metric: Literal["mse", "l1"] = "mse"

    def __call__(self, data: Sequence[Datum], logprobs: Sequence[torch.Tensor]) -> torch.Tensor:
        torch = require_torch()
        if not self.pairs:
            raise ValueError("Consistency needs at least one pair of datum indices")
        distances = []
        for first, second in self.pairs:
            a, b = logprobs[first].reshape(-1), logprobs[second].reshape(-1)
            if a.shape != b.shape:
                raise ValueError(f"Consistency pair ({first}, {second}) has lengths {a.numel()} and {b.numel()}")
            difference = a - b
            distances.append(difference.pow(2).mean() if self.metric == "mse" else difference.abs().mean())
        return torch.stack(distances).mean()


@dataclass(frozen=True)
class Orthogonality:
    """Mean squared cosine similarity between the logprob vectors of distinct datums.

    Shorter sequences are zero-padded, which leaves dot products and norms unchanged.
    Zero for fewer than two datums.
    """

    eps: float = 1e-8

    def __call__(self, data: Sequence[Datum], logprobs: Sequence[torch.Tensor]) -> torch.Tensor:
        torch = require_torch()
        count = len(logprobs)
        if count < 2:
            return _flat(logprobs).sum() * 0.0
        width = max(logprob.numel() for logprob in logprobs)
        rows = torch.stack(
            [torch.nn.functional.pad(logprob.reshape(-1), (0, width - logprob.numel())) for logprob in logprobs]
        )
        unit = rows / rows.norm(dim=1, keepdim=True).clamp_min(self.eps)
        cosine = unit @ unit.T
        off_diagonal = cosine - torch.diag(torch.diagonal(cosine))
        return off_diagonal.pow(2).sum() / (count * (count - 1))


@dataclass(frozen=True)
class GradientPenalty:
    """Penalty on the gradient of ``inner`` with respect to the logprobs.

    ``||grad||^2`` over all datums, or ``(||grad|| - target_norm)^2`` when ``target_norm`` is
    set. Differentiated through (second order), so ``inner`` must be twice differentiable.
    """

    inner: TermFn
    target_norm: float | None = None

    def __call__(self, data: Sequence[Datum], logprobs: Sequence[torch.Tensor]) -> torch.Tensor:
        torch = require_torch()
        output = self.inner(data, logprobs)
        squared = _squared_gradient(torch, output, logprobs, create_graph=True)
        if self.target_norm is None:
            return squared
        return (squared.clamp_min(1e-12).sqrt() - self.target_norm).pow(2)
