"""forward_backward_custom math: forward data, gradients as weights, metric merge."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

import anyio
import pytest
import torch

from tinkex.custom_loss import (
    compute_weights,
    merge_metrics,
    prepare_forward_data,
    require_torch,
)
from tinkex.types import Datum, ForwardBackwardOutput, ModelInput, TensorData

pytestmark = pytest.mark.anyio

LOGPROBS = [[-0.5, -1.0, -2.0], [-0.25, -3.0]]
WEIGHTS = [[1.0, 0.0, 2.0], [0.5, 1.0]]


def make_data(with_weights: bool = True) -> list[Datum]:
    data = []
    for index, weights in enumerate(WEIGHTS):
        inputs: dict[str, object] = {"target_tokens": list(range(10 * index, 10 * index + len(weights)))}
        if with_weights:
            inputs["weights"] = weights
        model_input = ModelInput.from_ints([7] * len(weights))
        data.append(Datum(model_input=model_input, loss_fn_inputs=inputs))  # type: ignore[arg-type]
    return data


def forward_output(logprobs: Sequence[Sequence[float]] = LOGPROBS) -> ForwardBackwardOutput:
    return ForwardBackwardOutput(
        loss_fn_output_type="cross_entropy",
        loss_fn_outputs=[{"logprobs": TensorData(data=list(values), dtype="float32")} for values in logprobs],
        metrics={"loss:sum": 1.5},
    )


def weights_of(datum: Datum) -> list[float]:
    return list(datum.loss_fn_inputs["weights"].data)


def test_prepare_forward_data_adds_zero_weights_only_where_absent() -> None:
    data = make_data(with_weights=False)
    data[1] = make_data()[1]
    prepared = prepare_forward_data(data)
    assert weights_of(prepared[0]) == [0.0, 0.0, 0.0]
    assert prepared[0].loss_fn_inputs["weights"].dtype == "float32"
    assert prepared[0].loss_fn_inputs["target_tokens"] == data[0].loss_fn_inputs["target_tokens"]
    assert prepared[0].model_input == data[0].model_input
    assert prepared[1] is data[1]


def test_custom_loss_inputs_are_validated() -> None:
    model_input = ModelInput.from_ints([1])
    with pytest.raises(ValueError, match=r"data\[0\].*'target_tokens'"):
        no_targets = {"weights": [1.0]}
        prepare_forward_data([Datum(model_input=model_input, loss_fn_inputs=no_targets)])  # type: ignore[arg-type]
    extra_inputs = {"target_tokens": [1], "advantages": [1.0]}
    extra = Datum(model_input=model_input, loss_fn_inputs=extra_inputs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data\[1\].*\['advantages'\]"):
        prepare_forward_data([make_data()[0], extra])
    with pytest.raises(ValueError, match="at least one datum"):
        prepare_forward_data([])


async def test_linear_loss_gives_weights_w_over_n() -> None:
    data = make_data()
    token_count = sum(len(weights) for weights in WEIGHTS)

    def loss_fn(data: list[Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        weights = [datum.loss_fn_inputs["weights"].to_torch() for datum in data]
        loss = -sum((w * lp).sum() for w, lp in zip(weights, logprobs, strict=True)) / token_count
        return loss, {"custom:mean": float(loss.detach())}

    weighted, metrics = await compute_weights(data, forward_output(), loss_fn)
    for datum, original, weights in zip(weighted, data, WEIGHTS, strict=True):
        assert weights_of(datum) == pytest.approx([w / token_count for w in weights])
        assert datum.loss_fn_inputs["weights"].dtype == "float32"
        assert datum.loss_fn_inputs["target_tokens"] == original.loss_fn_inputs["target_tokens"]
        assert datum.model_input == original.model_input
        assert set(datum.loss_fn_inputs) == {"target_tokens", "weights"}
    expected_loss = -sum(w * lp for ws, lps in zip(WEIGHTS, LOGPROBS) for w, lp in zip(ws, lps)) / token_count
    assert metrics == {"custom:mean": pytest.approx(expected_loss)}


async def test_nonlinear_loss_and_untouched_datum_get_exact_gradients() -> None:
    def loss_fn(data: list[Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = (logprobs[0] ** 2).sum()  # d/dlp = 2 lp; datum 1 does not contribute
        return loss, {"sq:sum": loss.detach()}

    weighted, metrics = await compute_weights(make_data(), forward_output(), loss_fn)
    assert weights_of(weighted[0]) == pytest.approx([-2 * lp for lp in LOGPROBS[0]])
    assert weights_of(weighted[1]) == [0.0, 0.0]
    assert metrics == {"sq:sum": pytest.approx(0.25 + 1 + 4)}
    assert isinstance(metrics["sq:sum"], float)


async def test_async_loss_fn_is_awaited() -> None:
    async def loss_fn(data: list[Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        await anyio.sleep(0)
        return -logprobs[1].sum(), {}

    weighted, metrics = await compute_weights(make_data(), forward_output(), loss_fn)
    assert weights_of(weighted[1]) == [1.0, 1.0]
    assert metrics == {}


async def test_sync_loss_fn_does_not_block_the_event_loop() -> None:
    loop_ran = threading.Event()

    def loss_fn(data: list[Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        # Only possible if the loop keeps running while the loss is computed.
        assert loop_ran.wait(timeout=2), "event loop was blocked by loss_fn"
        return logprobs[0].sum(), {}

    async def mark_loop_alive() -> None:
        await anyio.sleep(0.01)
        loop_ran.set()

    async with anyio.create_task_group() as group:
        group.start_soon(mark_loop_alive)
        weighted, _ = await compute_weights(make_data(), forward_output(), loss_fn)
    assert weights_of(weighted[0]) == [-1.0, -1.0, -1.0]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (forward_output(LOGPROBS[:1]), "1 loss_fn_outputs for 2 datums"),
        (forward_output([LOGPROBS[0], [-1.0]]), r"loss_fn_outputs\[1\].logprobs has 1 values for 2 target_tokens"),
        (
            ForwardBackwardOutput(loss_fn_output_type="x", loss_fn_outputs=[{}, {}], metrics={}),
            r"loss_fn_outputs\[0\] has no 'logprobs'",
        ),
    ],
)
async def test_bad_forward_output_is_rejected(output: ForwardBackwardOutput, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await compute_weights(make_data(), output, lambda data, lps: (lps[0].sum(), {}))


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (lambda lps: (lps[0] * 2, {}), "scalar torch.Tensor"),
        (lambda lps: (torch.tensor(1.0), {}), "does not depend on the logprobs"),
        (lambda lps: (lps[0].sum(), {"bad": "text"}), "metric 'bad' is not a number"),
        (lambda lps: (lps[0].sum(), [1.0]), "metrics: dict"),
        (lambda lps: lps[0].sum(), r"must return \(loss, metrics\), got Tensor"),
    ],
)
async def test_bad_loss_fn_results_are_rejected(result: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await compute_weights(make_data(), forward_output(), lambda data, lps: result(lps))  # type: ignore[operator]


def test_merge_metrics_adds_user_metrics_and_user_wins() -> None:
    output = forward_output()
    merged = merge_metrics(output, {"custom:mean": 2.0, "loss:sum": 9.0})
    assert merged.metrics == {"loss:sum": 9.0, "custom:mean": 2.0}
    assert output.metrics == {"loss:sum": 1.5}
    assert merged.loss_fn_outputs == output.loss_fn_outputs


def test_missing_torch_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'tinkex\[torch\]'"):
        require_torch()
