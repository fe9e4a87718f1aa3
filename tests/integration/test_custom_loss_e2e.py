"""forward_backward_custom against the local server: the gradient the server receives is the hand-computed one."""

from __future__ import annotations

import math

import pytest

import tinkex
from tinkex import types
from tinkex.testing import LocalServer

torch = pytest.importorskip("torch")

MODEL = "tinkex/fake-tiny"


def _datum(tokens: list[int], weights: list[float]) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights},
    )


def test_custom_loss_sends_minus_its_gradient_as_cross_entropy_weights() -> None:
    data = [_datum([3, 9, 4, 7], [1.0, 0.5, 2.0]), _datum([5, 2, 8], [1.0, 1.0])]
    n = sum(len(d.loss_fn_inputs["weights"].data) for d in data)
    seen: list[list[float]] = []

    def weighted_nll(batch: list[types.Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        # loss = -sum(w * lp) / n, so d loss / d lp = -w / n and the weights sent are w / n
        seen.extend(lp.detach().tolist() for lp in logprobs)
        loss = sum(-(torch.tensor(d.loss_fn_inputs["weights"].data) * lp).sum() for d, lp in zip(batch, logprobs)) / n
        return loss, {"custom_loss:mean": loss.item()}

    with LocalServer(base_models=(MODEL,)) as server:
        with tinkex.Client(api_key="tml-custom", base_url=server.base_url, telemetry=False) as client:
            training = client.create_lora_training_client(MODEL, rank=4)
            forward = training.forward([d for d in data], "cross_entropy").result()
            output = training.forward_backward_custom(data, weighted_nll).result(timeout=60)

    forward_logprobs = [out["logprobs"].data for out in forward.loss_fn_outputs]
    assert [lp for lps in seen for lp in lps] == pytest.approx([lp for lps in forward_logprobs for lp in lps])
    expected_loss = -sum(w * lp for d, lps in zip(data, forward_logprobs) for w, lp in zip(d.loss_fn_inputs["weights"].data, lps)) / n
    assert output.metrics["custom_loss:mean"] == pytest.approx(expected_loss, rel=1e-5)
    # the server's cross_entropy with weights w/n over the same logprobs is exactly the user's loss
    assert output.metrics["loss:sum"] == pytest.approx(expected_loss, rel=1e-4)
    assert math.isfinite(output.metrics["loss:sum"])
    assert len(output.loss_fn_outputs) == len(data)
    executed = [e.endpoint for e in server.ledger.executions()]
    assert executed.count("forward") == 2 and executed.count("forward_backward") == 1
