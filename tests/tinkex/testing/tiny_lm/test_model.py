"""The model's arithmetic: gradients against finite differences, the optimizer, sampling settings, snapshots."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinkex.testing.tiny_lm import (
    DEFAULT_VOCAB_SIZE,
    AdamSettings,
    DatumInput,
    ModelInputError,
    ModelState,
    SamplingSettings,
    TokenOutOfVocabulary,
    UnsupportedOptimizer,
    adam_settings,
    base_weights,
    model,
    prompt_alt_tokens,
    prompt_table,
    run_builtin_loss,
    sample,
    score,
    target_prompt_logprobs,
)
from tinkex.types import AdamParams, DimuonParams

MODEL = "tinkex/fake-tiny"


def _float64_state(rank: int, targets: tuple[str, ...] = ("attn", "mlp", "unembed")) -> ModelState:
    """An adapter with non-zero B (as after training), in float64 so differences are exact enough to compare."""
    state = ModelState.fresh(DEFAULT_VOCAB_SIZE, rank, targets, seed=5)
    state.require_adapter()
    rng = np.random.default_rng(9)
    state.params = {
        name: (array if name.endswith("lora_A") else rng.standard_normal(array.shape) * 0.01).astype(np.float64)
        for name, array in state.params.items()
    }
    return state


@pytest.mark.parametrize("loss_fn", ["cross_entropy", "importance_sampling", "ppo", "dro"])
def test_adapter_gradients_agree_with_finite_differences(loss_fn: str) -> None:
    base = base_weights(MODEL, DEFAULT_VOCAB_SIZE, dtype=np.float64)
    state = _float64_state(rank=2)
    tokens, targets = [280, 84, 104, 101, 32, 113], [84, 104, 101, 32, 113, 117]
    inputs = {"target_tokens": targets, "weights": [1.0, 0.5, 1.0, 0.0, 1.0, 2.0],
              "logprobs": [-5.0, -4.0, -6.0, -5.5, -5.0, -4.5], "advantages": [1.0, -0.5, 2.0, 0.3, -1.0, 0.7]}
    if loss_fn == "cross_entropy":
        inputs = {k: inputs[k] for k in ("target_tokens", "weights")}
    data = [DatumInput(tokens, inputs), DatumInput(tokens[:3], {k: v[:3] for k, v in inputs.items()})]
    run_builtin_loss(base, state, data, loss_fn, None, backward=True)
    rng = np.random.default_rng(3)
    step = 1e-6
    for name, param in state.params.items():
        for _ in range(3):  # a few random coordinates of every tensor
            index = tuple(int(rng.integers(n)) for n in param.shape)
            original = param[index]
            param[index] = original + step
            up = run_builtin_loss(base, state, data, loss_fn, None, backward=False)[1]["loss:sum"]
            param[index] = original - step
            down = run_builtin_loss(base, state, data, loss_fn, None, backward=False)[1]["loss:sum"]
            param[index] = original
            numeric = (up - down) / (2 * step)
            assert state.grads[name][index] == pytest.approx(numeric, rel=1e-4, abs=1e-7), (name, index)


def test_the_model_is_causal_and_its_distributions_normalise() -> None:
    base = base_weights(MODEL, DEFAULT_VOCAB_SIZE)
    tokens = [280, 84, 104, 101, 32, 113, 117]
    first = score(base, {}, 1.0, tokens, tokens[1:] + [0])
    changed_last = score(base, {}, 1.0, tokens[:-1] + [50], tokens[1:] + [0])
    assert first[:-1] == pytest.approx(changed_last[:-1])  # a later token changes no earlier prediction
    table = model.log_softmax(model.forward(base, {}, 1.0, model.windows(np.array(tokens), base.pad)))
    assert np.exp(table).sum(axis=1) == pytest.approx(np.ones(len(tokens)), rel=1e-5)


def test_base_weights_come_from_the_name() -> None:
    a, again, other = (base_weights(n, DEFAULT_VOCAB_SIZE, dtype=np.float64) for n in ("m/a", "m/a", "m/b"))
    assert np.array_equal(a.w_ctx, again.w_ctx) and not np.array_equal(a.w_ctx, other.w_ctx)
    assert a.w_out.shape == (model.HIDDEN, DEFAULT_VOCAB_SIZE)
    assert base_weights("m/a", 1000).w_out.shape == (model.HIDDEN, 1000)


def test_token_ids_outside_the_vocabulary_name_the_limit() -> None:
    base = base_weights(MODEL, DEFAULT_VOCAB_SIZE)
    with pytest.raises(TokenOutOfVocabulary, match=r"tokens\[1\]: token id 283 is outside .* 283 ids \(0\.\.282\)"):
        score(base, {}, 1.0, [1, 283], [2, 3])
    with pytest.raises(TokenOutOfVocabulary, match="token id -1"):
        score(base, {}, 1.0, [1, 2], [2, -1])


def test_adam_is_adamw_with_bias_correction_clipping_and_decoupled_decay() -> None:
    params = {"p": np.array([1.0, -2.0])}
    grads = {"p": np.array([3.0, 4.0])}  # global norm 5
    state = ModelState(rank=1, params=params)
    state.accumulate(grads)
    settings = AdamSettings(learning_rate=0.1, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.01, grad_clip_norm=2.5)
    metrics = state.apply_optimizer(settings)
    clipped = np.array([3.0, 4.0]) * 0.5
    m_hat, v_hat = clipped, clipped**2  # first step: bias correction undoes (1 - beta)
    expected = np.array([1.0, -2.0]) - 0.1 * (m_hat / (np.sqrt(v_hat) + 1e-8) + 0.01 * np.array([1.0, -2.0]))
    assert params["p"] == pytest.approx(expected) and metrics == {"grad_norm:mean": pytest.approx(5.0)}
    assert state.step == 1 and state.pending_backward == 0 and state.grads == {}
    assert state.apply_optimizer(settings) == {} and state.step == 1  # nothing accumulated: nothing changes


def test_other_optimizer_families_are_refused_by_name() -> None:
    assert adam_settings(AdamParams(learning_rate=0.5)).learning_rate == 0.5
    assert adam_settings(AdamParams()) == AdamSettings()
    with pytest.raises(UnsupportedOptimizer, match="'dimuon' is not supported"):
        adam_settings(DimuonParams(learning_rate=0.1))
    with pytest.raises(ModelInputError, match="learning_rate must be >= 0"):
        adam_settings(AdamParams(learning_rate=-1.0))


def _sample(settings: SamplingSettings, num: int = 3, prompt: list[int] | None = None) -> list:
    base = base_weights(MODEL, DEFAULT_VOCAB_SIZE)
    return sample(base, {}, 1.0, prompt or [280, 84, 104, 101], num, settings)


def test_seeded_sampling_is_reproducible_per_sample() -> None:
    settings = SamplingSettings(max_tokens=12, temperature=1.0, seed=7)
    first, again = _sample(settings), _sample(settings)
    assert first == again
    assert len({tuple(s.tokens) for s in first}) > 1  # the samples of a request differ
    [alone] = _sample(settings, num=1)  # sample i does not depend on how many were asked for
    assert alone.tokens == first[0].tokens and alone.logprobs == pytest.approx(first[0].logprobs, abs=1e-5)
    assert _sample(SamplingSettings(max_tokens=12, seed=8)) != first


def test_sampled_logprobs_are_the_models() -> None:
    base = base_weights(MODEL, DEFAULT_VOCAB_SIZE)
    prompt = [280, 84, 104, 101]
    [drawn] = sample(base, {}, 1.0, prompt, 1, SamplingSettings(max_tokens=8, temperature=0.7, seed=1))
    full = prompt + drawn.tokens
    assert drawn.logprobs == pytest.approx(list(score(base, {}, 1.0, full[:-1], full[1:])[len(prompt) - 1 :]), abs=1e-5)


def test_greedy_top_k_and_top_p() -> None:
    greedy = _sample(SamplingSettings(max_tokens=10, temperature=0.0), num=1)[0].tokens
    assert _sample(SamplingSettings(max_tokens=10, top_k=1, seed=3), num=1)[0].tokens == greedy
    assert _sample(SamplingSettings(max_tokens=10, top_p=1e-6, seed=3), num=1)[0].tokens == greedy
    base = base_weights(MODEL, DEFAULT_VOCAB_SIZE)
    window = model.windows(np.array([280, 84, 104, 101]), base.pad)[-1:]
    ranked = np.argsort(-model.log_softmax(model.forward(base, {}, 1.0, window))[0])
    drawn = {s.tokens[0] for s in _sample(SamplingSettings(max_tokens=1, top_k=3, seed=4), num=40)}
    assert drawn <= set(ranked[:3].tolist()) and len(drawn) > 1


def test_prompt_outputs_check_their_input_and_draw_reproducibly() -> None:
    base = base_weights(MODEL, DEFAULT_VOCAB_SIZE)
    prompt = [280, 84, 104, 101]
    table = prompt_table(base, {}, 1.0, prompt)
    assert table.shape == (3, DEFAULT_VOCAB_SIZE)
    with pytest.raises(ModelInputError, match=r"expected shape \[len\(prompt\) - 1, K\] = \[3, K\], got \[2, 1\]"):
        target_prompt_logprobs(table, np.array([[1], [2]]))
    with pytest.raises(ModelInputError, match=f"token id 300 is beyond the model's vocabulary of {DEFAULT_VOCAB_SIZE}"):
        target_prompt_logprobs(table, np.array([[1], [300], [-1]]))
    greedy, _ = prompt_alt_tokens(table, 4, 0.0, seed=1)
    assert (greedy == table.argmax(axis=1)[:, None]).all()
    drawn, logprobs = prompt_alt_tokens(table, 64, 1.0, seed=1)
    again, _ = prompt_alt_tokens(table, 64, 1.0, seed=1)
    assert (drawn == again).all() and not (drawn == prompt_alt_tokens(table, 64, 1.0, seed=2)[0]).all()
    assert len(set(drawn[0].tolist())) > 1  # draws, not the argmax repeated
    assert logprobs == pytest.approx(np.take_along_axis(table, drawn, axis=1), abs=1e-6)
    with pytest.raises(ModelInputError, match="prompt_alt_tokens_k must be >= 1"):
        prompt_alt_tokens(table, 0, 1.0, seed=1)


def test_stop_tokens_and_strings() -> None:
    free = _sample(SamplingSettings(max_tokens=20, seed=2), num=1)[0]
    stop = free.tokens[4]
    first_stop = free.tokens.index(stop)
    stopped = _sample(SamplingSettings(max_tokens=20, seed=2, stop_tokens=frozenset({stop})), num=1)[0]
    assert stopped.tokens == free.tokens[: first_stop + 1] and stopped.stop_reason == "stop"
    assert free.stop_reason == "length" and len(free.tokens) == 20
    from tinkex.testing.tiny_lm import text_decoder

    decode = text_decoder(DEFAULT_VOCAB_SIZE)
    text = decode(free.tokens)
    target = text[3:5]
    base = base_weights(MODEL, DEFAULT_VOCAB_SIZE)
    [by_string] = sample(base, {}, 1.0, [280, 84, 104, 101], 1,
                         SamplingSettings(max_tokens=20, seed=2, stop_strings=(target,)), decode)
    assert target in decode(by_string.tokens) and target not in decode(by_string.tokens[:-1])
    with pytest.raises(ModelInputError, match="string stop sequences need the default vocabulary"):
        sample(base_weights(MODEL, 1000), {}, 1.0, [1], 1, SamplingSettings(stop_strings=("x",)))


def test_snapshots_round_trip_and_load_without_optimizer_starts_it_fresh() -> None:
    base = base_weights(MODEL, DEFAULT_VOCAB_SIZE)
    state = ModelState.fresh(DEFAULT_VOCAB_SIZE, 4, ("unembed",), seed=1)
    data = [DatumInput([1, 2, 3], {"target_tokens": [2, 3, 4]})]
    for _ in range(2):
        run_builtin_loss(base, state, data, "cross_entropy", None, backward=True)
        state.apply_optimizer(AdamSettings(learning_rate=0.01))
    snapshot = state.snapshot(with_optimizer=True)
    restored = ModelState()
    restored.restore(snapshot, with_optimizer=True)
    assert restored.to_json() == state.to_json() and restored.step == 2
    weights_only = ModelState()
    weights_only.restore(state.snapshot(with_optimizer=False), with_optimizer=True)
    assert weights_only.step == 0 and weights_only.adam_m == {} and set(weights_only.params) == set(state.params)
    assert ModelState.from_json(state.to_json()).to_json() == state.to_json()
    with pytest.raises(ModelInputError, match="not a tinkex-tiny-lm-lora/1 adapter"):
        ModelState().restore({"theta": 0.5}, with_optimizer=True)
    assert math.isclose(state.scale, 256.0 / 4)


def test_a_fresh_adapter_is_made_on_first_use() -> None:
    """A run that is never trained holds the recipe, not the tensors (hundreds of such runs cost next to nothing)."""
    state = ModelState.fresh(DEFAULT_VOCAB_SIZE, 32, ("attn", "mlp", "unembed"), seed="run-1")
    assert state.params == {} and ModelState.from_json(state.to_json()).recipe == state.recipe
    state.require_adapter()
    again = ModelState.fresh(DEFAULT_VOCAB_SIZE, 32, ("attn", "mlp", "unembed"), seed="run-1")
    again.require_adapter()
    assert state.recipe is None and state.params["unembed.lora_A"].shape == (model.HIDDEN, 32)
    assert all((state.params[name] == again.params[name]).all() for name in state.params)  # seeded
    assert not state.params["unembed.lora_B"].any()  # B starts at zero: the base model unchanged
    with pytest.raises(ModelInputError, match="rank must be between 1 and 512"):
        ModelState.fresh(DEFAULT_VOCAB_SIZE, 0, ("attn",), seed=1)
