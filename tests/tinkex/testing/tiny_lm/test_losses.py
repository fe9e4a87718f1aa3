"""Each built-in loss on a hand-computed case: the docs' formula, its config keys, and its gradient in the logprobs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinkex.testing.tiny_lm import ModelInputError
from tinkex.testing.tiny_lm.losses import loss_settings, loss_terms

LP = np.array([-1.0, -0.5, -2.0])
Q = np.array([-1.2, -0.5, -1.0])
A = np.array([1.0, -2.0, 0.5])
INPUTS = {"logprobs": Q, "advantages": A, "weights": np.array([1.0, 0.0, 2.0])}
RATIO = [math.exp(0.2), 1.0, math.exp(-1.0)]  # exp(lp - q): 1.2214, 1, 0.3679


def clip(value: float, low: float = 0.8, high: float = 1.2) -> float:
    return min(max(value, low), high)


CASES = [
    # loss, config, elementwise loss, dLoss/dlp -- written out by hand from the docs' formulas
    ("cross_entropy", None, [1.0, 0.0, 4.0], [-1.0, 0.0, -2.0]),
    ("importance_sampling", None, [-RATIO[0] * 1.0, -RATIO[1] * -2.0, -RATIO[2] * 0.5],
     [-RATIO[0] * 1.0, -RATIO[1] * -2.0, -RATIO[2] * 0.5]),
    # ppo: min(r*A, clip(r)*A). Token 0: r=1.22 > 1.2, A>0 -> clipped term is the min, no gradient.
    # Token 1: r=1 inside the range. Token 2: r=0.37 < 0.8, A>0 -> unclipped term is the min.
    ("ppo", None, [-1.2 * 1.0, -1.0 * -2.0, -RATIO[2] * 0.5], [0.0, 2.0, -RATIO[2] * 0.5]),
    # Wider range: token 0 is inside it now; token 2 (r=0.37 < 0.5, A>0) keeps the unclipped term as the min.
    ("ppo", {"clip_low_threshold": 0.5, "clip_high_threshold": 1.5}, [-RATIO[0], 2.0, -RATIO[2] * 0.5],
     [-RATIO[0], 2.0, -RATIO[2] * 0.5]),
    # cispo: -sg(clip(r)) * lp * A, gradient -clip(r) * A
    ("cispo", None, [-1.2 * -1.0 * 1.0, -1.0 * -0.5 * -2.0, -0.8 * -2.0 * 0.5], [-1.2, 2.0, -0.8 * 0.5]),
    # dro: -(lp*A - beta/2 * (lp-q)^2), gradient -(A - beta*(lp-q))
    ("dro", {"beta": 0.1}, [-(-1.0 - 0.05 * 0.04), -(1.0 - 0.0), -(-1.0 - 0.05 * 1.0)],
     [-(1.0 - 0.1 * 0.2), -(-2.0 - 0.0), -(0.5 - 0.1 * -1.0)]),
    ("dro", None, [-(-1.0 - 0.025 * 0.04), -1.0, -(-1.0 - 0.025 * 1.0)],
     [-(1.0 - 0.05 * 0.2), 2.0, -(0.5 - 0.05 * -1.0)]),
]


@pytest.mark.parametrize(("loss_fn", "config", "elementwise", "gradient"), CASES)
def test_each_loss_matches_its_formula(loss_fn: str, config: dict | None, elementwise: list, gradient: list) -> None:
    terms = loss_terms(loss_fn, LP, INPUTS, loss_settings(loss_fn, config))
    assert terms.elementwise == pytest.approx(elementwise, abs=1e-12)
    assert terms.d_logprobs == pytest.approx(gradient, abs=1e-12)


def test_ppo_with_negative_advantages_clips_the_other_side() -> None:
    """A < 0: below the range the clipped term is the min (no gradient), above it the unclipped one is."""
    lp, q, a = np.array([-2.0, -0.5]), np.array([-1.0, -1.0]), np.array([-1.0, -1.0])
    ratio = np.exp(lp - q)  # 0.368, 1.649
    terms = loss_terms("ppo", lp, {"logprobs": q, "advantages": a}, loss_settings("ppo", None))
    assert terms.elementwise == pytest.approx([0.8, ratio[1]])
    assert terms.d_logprobs == pytest.approx([0.0, ratio[1]])


@pytest.mark.parametrize("loss_fn", ["importance_sampling", "ppo", "cispo", "dro"])
def test_each_gradient_is_the_derivative_of_the_loss(loss_fn: str) -> None:
    """Away from the clip boundaries the stated gradient is the loss's derivative (cispo's ratio is detached)."""
    settings = loss_settings(loss_fn, None)
    step = 1e-6
    terms = loss_terms(loss_fn, LP, INPUTS, settings)
    for index in range(len(LP)):
        up, down = LP.copy(), LP.copy()
        up[index] += step
        down[index] -= step
        numeric = (loss_terms(loss_fn, up, INPUTS, settings).elementwise.sum()
                   - loss_terms(loss_fn, down, INPUTS, settings).elementwise.sum()) / (2 * step)
        if loss_fn == "cispo":  # the clipped ratio is a constant (stop-gradient) in the docs' formula
            clipped = np.clip(np.exp(LP - Q), 0.8, 1.2)
            numeric = -clipped[index] * A[index]
        assert terms.d_logprobs[index] == pytest.approx(numeric, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize(
    ("loss_fn", "config", "message"),
    [
        ("cross_entropy", {"beta": 0.1}, "do not apply to 'cross_entropy' (it takes: none)"),
        ("ppo", {"beta": 0.1}, "it takes: clip_low_threshold, clip_high_threshold"),
        ("ppo", {"clip_low_threshold": 1.5}, "clip_low_threshold 1.5 is above clip_high_threshold 1.2"),
        ("sft", None, "unknown loss_fn 'sft'"),
    ],
)
def test_config_keys_are_the_documented_ones(loss_fn: str, config: dict | None, message: str) -> None:
    with pytest.raises(ModelInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        loss_settings(loss_fn, config)


def test_defaults_are_the_docs() -> None:
    assert loss_settings("ppo", None) == {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}
    assert loss_settings("cispo", None) == {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}
    assert loss_settings("dro", None) == {"beta": 0.05}
