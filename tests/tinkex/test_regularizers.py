"""Regularizer values and gradients against hand computation; the pipeline as a custom loss."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

import pytest
import torch

from tinkex.custom_loss import compute_weights
from tinkex.regularizers import (
    L1,
    L2,
    Consistency,
    ElasticNet,
    Entropy,
    GradientPenalty,
    KLDivergence,
    Orthogonality,
    Regularizer,
    RegularizerPipeline,
    RegularizerTimeoutError,
)
from tinkex.types import Datum, ForwardBackwardOutput, ModelInput, TensorData

LP = [[-0.5, -1.0, -2.0], [-0.25, -3.0]]
FLAT = [value for row in LP for value in row]
N = len(FLAT)


def leaves(values: Sequence[Sequence[float]] = LP) -> list[torch.Tensor]:
    return [torch.tensor(row, dtype=torch.float64, requires_grad=True) for row in values]


def value_and_grads(term: object, values: Sequence[Sequence[float]] = LP) -> tuple[float, list[list[float]]]:
    logprobs = leaves(values)
    value = term([], logprobs)  # type: ignore[operator]
    gradients = torch.autograd.grad(value, logprobs, allow_unused=True)
    return float(value.detach()), [
        (gradient if gradient is not None else torch.zeros_like(lp)).tolist()
        for gradient, lp in zip(gradients, logprobs, strict=True)
    ]


def split(flat: list[float], shape: Sequence[Sequence[float]] = LP) -> list[list[float]]:
    rows, start = [], 0
    for row in shape:
        rows.append(flat[start : start + len(row)])
        start += len(row)
    return rows


def approx(rows: list[list[float]]) -> list[object]:
    return [pytest.approx(row) for row in rows]


def test_l1_mean_and_sum() -> None:
    value, grads = value_and_grads(L1())
    assert value == pytest.approx(sum(abs(v) for v in FLAT) / N)
    assert grads == approx(split([-1 / N] * N))
    value, grads = value_and_grads(L1(reduction="sum"))
    assert value == pytest.approx(6.75)
    assert grads == approx(split([-1.0] * N))


def test_l2() -> None:
    value, grads = value_and_grads(L2())
    assert value == pytest.approx(sum(v * v for v in FLAT) / N)
    assert grads == approx(split([2 * v / N for v in FLAT]))


def test_elastic_net_mixes_l1_and_l2() -> None:
    value, grads = value_and_grads(ElasticNet(l1_ratio=0.3))
    assert value == pytest.approx(0.3 * 6.75 / N + 0.7 * sum(v * v for v in FLAT) / N)
    assert grads == approx(split([0.3 * -1 / N + 0.7 * 2 * v / N for v in FLAT]))
    with pytest.raises(ValueError, match="l1_ratio"):
        ElasticNet(l1_ratio=1.5)


@pytest.mark.parametrize(("temperature", "mode"), [(1.0, "penalty"), (2.0, "penalty"), (0.5, "bonus")])
def test_entropy_of_position_softmax(temperature: float, mode: str) -> None:
    sign = 1.0 if mode == "penalty" else -1.0
    entropies, gradient_rows = [], []
    for row in LP:
        exps = [math.exp(v / temperature) for v in row]
        probs = [e / sum(exps) for e in exps]
        entropy = -sum(p * math.log(p) for p in probs)
        entropies.append(entropy)
        # dH/dz_i = -p_i (log p_i + H), z = lp / T, then averaged over the datums
        gradient_rows.append([sign * -p * (math.log(p) + entropy) / temperature / len(LP) for p in probs])
    value, grads = value_and_grads(Entropy(temperature=temperature, mode=mode))  # type: ignore[arg-type]
    assert value == pytest.approx(sign * sum(entropies) / len(LP))
    assert grads == approx(gradient_rows)


REF = [[-0.4, -1.5, -1.0], [-0.5, -2.0]]
REF_FLAT = [value for row in REF for value in row]


def test_kl_forward_reverse_and_symmetric() -> None:
    reverse_terms = [math.exp(r - p) * (r - p) for p, r in zip(FLAT, REF_FLAT, strict=True)]
    reverse_grads = [-math.exp(r - p) * (1 + r - p) / N for p, r in zip(FLAT, REF_FLAT, strict=True)]

    value, grads = value_and_grads(KLDivergence(REF))
    assert value == pytest.approx(sum(p - r for p, r in zip(FLAT, REF_FLAT, strict=True)) / N)
    assert grads == approx(split([1 / N] * N))

    value, grads = value_and_grads(KLDivergence(REF, direction="reverse"))
    assert value == pytest.approx(sum(reverse_terms) / N)
    assert grads == approx(split(reverse_grads))

    value, grads = value_and_grads(KLDivergence(REF, symmetric=True))
    assert value == pytest.approx((sum(FLAT) - sum(REF_FLAT) + sum(reverse_terms)) / N)
    assert grads == approx(split([1 / N + g for g in reverse_grads]))

    with pytest.raises(ValueError, match="1 reference sequences for 2 datums"):
        value_and_grads(KLDivergence(REF[:1]))


def test_consistency_between_two_views() -> None:
    views = [[-1.0, -2.0], [-1.5, -1.0], [-9.0]]
    value, grads = value_and_grads(Consistency(pairs=[(0, 1)]), views)
    assert value == pytest.approx((0.25 + 1.0) / 2)
    assert grads == approx([[0.5, -1.0], [-0.5, 1.0], [0.0]])  # d mean((a-b)^2)/da = (a-b)

    value, grads = value_and_grads(Consistency(pairs=[(0, 1)], metric="l1"), views)
    assert value == pytest.approx(0.75)
    assert grads == approx([[0.5, -0.5], [-0.5, 0.5], [0.0]])

    with pytest.raises(ValueError, match=r"pair \(0, 2\) has lengths 2 and 1"):
        value_and_grads(Consistency(pairs=[(0, 2)]), views)


def test_orthogonality_with_padding() -> None:
    x, y = [-1.0, -2.0, 0.0], [-3.0]
    y_padded = [-3.0, 0.0, 0.0]
    norm_x, norm_y = math.sqrt(5), 3.0
    cosine = sum(a * b for a, b in zip(x, y_padded)) / (norm_x * norm_y)
    value, grads = value_and_grads(Orthogonality(), [x, y])
    # two ordered off-diagonal pairs over n(n-1) = 2
    assert value == pytest.approx(cosine**2)
    d_cos_dx = [b / (norm_x * norm_y) - cosine * a / norm_x**2 for a, b in zip(x, y_padded)]
    d_cos_dy = [a / (norm_x * norm_y) - cosine * b / norm_y**2 for a, b in zip(x, y_padded)]
    assert grads == approx([[2 * cosine * d for d in d_cos_dx], [2 * cosine * d_cos_dy[0]]])

    value, grads = value_and_grads(Orthogonality(), [x])
    assert value == 0.0 and grads == [[0.0, 0.0, 0.0]]


def test_gradient_penalty_is_differentiated_through() -> None:
    def inner(data: object, logprobs: Sequence[torch.Tensor]) -> torch.Tensor:
        return sum((lp**2).sum() for lp in logprobs)  # type: ignore[return-value]

    squared_norm = sum(v * v for v in FLAT)
    value, grads = value_and_grads(GradientPenalty(inner))
    assert value == pytest.approx(4 * squared_norm)  # ||2 lp||^2
    assert grads == approx(split([8 * v for v in FLAT]))

    target = 3.0
    grad_norm = 2 * math.sqrt(squared_norm)
    value, grads = value_and_grads(GradientPenalty(inner, target_norm=target))
    assert value == pytest.approx((grad_norm - target) ** 2)
    assert grads == approx(split([2 * (grad_norm - target) * 2 * v / math.sqrt(squared_norm) for v in FLAT]))


def base_loss(data: list[Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    loss = -sum(lp.sum() for lp in logprobs) / N
    return loss, {"nll:mean": float(loss.detach())}


def test_pipeline_total_metrics_and_grad_norms() -> None:
    pipeline = RegularizerPipeline(
        [Regularizer("l1", L1(), weight=0.5), Regularizer("l2", L2(), weight=2.0)], base=base_loss
    )
    logprobs = leaves()
    total, metrics = pipeline([], logprobs)
    l1, l2, base = 6.75 / N, sum(v * v for v in FLAT) / N, -sum(FLAT) / N
    assert float(total.detach()) == pytest.approx(base + 0.5 * l1 + 2.0 * l2)
    assert metrics == {
        "nll:mean": pytest.approx(base),
        "loss/base:mean": pytest.approx(base),
        "loss/regularization:mean": pytest.approx(0.5 * l1 + 2.0 * l2),
        "loss/total:mean": pytest.approx(base + 0.5 * l1 + 2.0 * l2),
        "reg/l1/value:mean": pytest.approx(l1),
        "reg/l1/weighted:mean": pytest.approx(0.5 * l1),
        "reg/l1/grad_norm:mean": pytest.approx(0.5 * math.sqrt(N) / N),
        "reg/l2/value:mean": pytest.approx(l2),
        "reg/l2/weighted:mean": pytest.approx(2.0 * l2),
        "reg/l2/grad_norm:mean": pytest.approx(2.0 * math.sqrt(sum((2 * v / N) ** 2 for v in FLAT))),
    }
    assert all(name.count(":") == 1 for name in metrics)
    total.backward()  # the graph survives the grad-norm passes
    assert logprobs[0].grad.tolist() == pytest.approx(  # type: ignore[union-attr]
        [-1 / N + 0.5 * -1 / N + 2.0 * 2 * v / N for v in LP[0]]
    )


async def _run_compute_weights(pipeline: RegularizerPipeline) -> list[list[float]]:
    data = [
        Datum(
            model_input=ModelInput.from_ints([1] * len(row)),
            loss_fn_inputs={"target_tokens": [2] * len(row)},  # type: ignore[dict-item]
        )
        for row in LP
    ]
    output = ForwardBackwardOutput(
        loss_fn_output_type="cross_entropy",
        loss_fn_outputs=[{"logprobs": TensorData(data=row, dtype="float32")} for row in LP],
        metrics={},
    )
    weighted, metrics = await compute_weights(data, output, pipeline)
    assert "reg/l2/value:mean" in metrics
    return [list(datum.loss_fn_inputs["weights"].data) for datum in weighted]


@pytest.mark.anyio
async def test_pipeline_is_a_custom_loss_fn() -> None:
    pipeline = RegularizerPipeline([Regularizer("l2", L2(), weight=0.1)], base=base_loss)
    weights = await _run_compute_weights(pipeline)
    # weights = -(d base + 0.1 d L2) = 1/N - 0.1 * 2 lp / N
    assert weights == approx(split([1 / N - 0.1 * 2 * v / N for v in FLAT]))


def test_terms_run_concurrently() -> None:
    barrier = threading.Barrier(2, timeout=2)

    def meeting(data: object, logprobs: Sequence[torch.Tensor]) -> torch.Tensor:
        barrier.wait()  # raises BrokenBarrierError unless the other term runs at the same time
        return logprobs[0].sum()

    pipeline = RegularizerPipeline([Regularizer("a", meeting), Regularizer("b", meeting)])
    _, metrics = pipeline([], leaves())
    assert metrics["reg/a/value:mean"] == metrics["reg/b/value:mean"] == pytest.approx(sum(LP[0]))


def test_timeout_names_the_late_terms_without_waiting_for_them() -> None:
    release = threading.Event()

    def slow(data: object, logprobs: Sequence[torch.Tensor]) -> torch.Tensor:
        release.wait(timeout=2)
        return logprobs[0].sum()

    pipeline = RegularizerPipeline([Regularizer("slow", slow), Regularizer("fast", L1())], timeout=0.05)
    started = time.monotonic()
    with pytest.raises(RegularizerTimeoutError, match=r"\['slow'\] did not finish within 0.05 s"):
        pipeline([], leaves())
    assert time.monotonic() - started < 1
    release.set()


def test_invalid_configuration_and_results() -> None:
    with pytest.raises(ValueError, match="contain no ':'"):
        Regularizer("bad:name", L1())
    with pytest.raises(ValueError, match=r"repeated: \['l1'\]"):
        RegularizerPipeline([Regularizer("l1", L1()), Regularizer("l1", L2())])
    pipeline = RegularizerPipeline([Regularizer("vector", lambda data, logprobs: logprobs[0] * 2)])
    with pytest.raises(ValueError, match="'vector' must return a scalar tensor"):
        pipeline([], leaves())


def test_without_base_or_grad_tracking() -> None:
    pipeline = RegularizerPipeline([Regularizer("l1", L1())], track_grad_norms=False)
    total, metrics = pipeline([], leaves())
    assert float(total.detach()) == pytest.approx(6.75 / N)
    assert metrics["loss/base:mean"] == 0.0
    assert "reg/l1/grad_norm:mean" not in metrics
