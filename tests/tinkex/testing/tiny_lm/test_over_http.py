"""What the API reports is true of the model, through tinkex.Client against a real loopback LocalServer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tinkex
from tinkex import types
from tinkex.testing import LocalServer
from tinkex.testing.tiny_lm import DEFAULT_VOCAB_SIZE

MODEL = "tinkex/fake-tiny"
SENTENCE = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(base_models=(MODEL,)) as running:
        yield running


@pytest.fixture
def client(server: LocalServer) -> Iterator[tinkex.Client]:
    with tinkex.Client(api_key="tml-tiny-lm", base_url=server.base_url, telemetry=False) as running:
        yield running


def _sentence_datum(tokenizer: tinkex.Tokenizer, text: str = SENTENCE) -> types.Datum:
    tokens = tokenizer.encode(text) + [tokenizer.eos_token_id]
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


def test_after_training_on_a_sentence_greedy_sampling_from_two_words_reproduces_it(client: tinkex.Client) -> None:
    training = client.create_lora_training_client(MODEL, rank=8)
    tokenizer = training.get_tokenizer()
    datum = _sentence_datum(tokenizer)
    prompt = types.ModelInput.from_ints(tokenizer.encode("the quick"))
    greedy = types.SamplingParams(max_tokens=60, temperature=0.0)

    before = training.save_weights_and_get_sampling_client().sample(prompt, 1, greedy).result().sequences[0]
    losses = []
    for _ in range(30):
        fwd_bwd = training.forward_backward([datum], "cross_entropy")
        training.optim_step(types.AdamParams(learning_rate=1e-3))
        losses.append(fwd_bwd.result().metrics["loss:sum"])
    after = training.save_weights_and_get_sampling_client().sample(prompt, 1, greedy).result().sequences[0]

    assert tokenizer.decode(before.tokens, skip_special_tokens=True) != " brown fox jumps over the lazy dog"
    assert tokenizer.decode(after.tokens, skip_special_tokens=True) == " brown fox jumps over the lazy dog"
    assert after.stop_reason == "stop" and after.tokens[-1] == tokenizer.eos_token_id  # it learned to stop too
    assert losses[-1] < 0.05 * losses[0]


def test_compute_logprobs_and_prompt_logprobs_equal_forward(client: tinkex.Client) -> None:
    training = client.create_lora_training_client(MODEL, rank=4)
    tokenizer = training.get_tokenizer()
    datum = _sentence_datum(tokenizer)
    for _ in range(3):  # a trained adapter, not the bare base model
        training.forward_backward([datum], "cross_entropy")
        training.optim_step(types.AdamParams(learning_rate=1e-3))
    forward = training.forward([datum], "cross_entropy").result().loss_fn_outputs[0]["logprobs"].data
    sampler = training.save_weights_and_get_sampling_client()
    tokens = datum.model_input.to_ints() + [datum.loss_fn_inputs["target_tokens"].data[-1]]
    computed = sampler.compute_logprobs(types.ModelInput.from_ints(tokens)).result()
    assert computed[0] is None and computed[1:] == pytest.approx(forward, abs=1e-5)
    response = sampler.sample(
        types.ModelInput.from_ints(tokens), 1, types.SamplingParams(max_tokens=1), include_prompt_logprobs=True
    ).result()
    assert response.prompt_logprobs[1:] == pytest.approx(forward, abs=1e-5)


def test_seeded_sampling_is_reproducible_and_reports_true_logprobs(client: tinkex.Client) -> None:
    sampler = client.create_sampling_client(base_model=MODEL)
    prompt = types.ModelInput.from_ints([280, 84, 104, 101])
    params = types.SamplingParams(max_tokens=16, temperature=1.0, seed=1234)
    first = sampler.sample(prompt, 4, params).result()
    again = sampler.sample(prompt, 4, params).result()
    assert [s.tokens for s in first.sequences] == [s.tokens for s in again.sequences]
    assert len({tuple(s.tokens) for s in first.sequences}) > 1
    other = sampler.sample(prompt, 4, types.SamplingParams(max_tokens=16, temperature=1.0, seed=99)).result()
    assert [s.tokens for s in other.sequences] != [s.tokens for s in first.sequences]
    sequence = first.sequences[0]
    full = prompt.to_ints() + list(sequence.tokens)
    scored = sampler.compute_logprobs(types.ModelInput.from_ints(full)).result()
    assert list(sequence.logprobs) == pytest.approx(scored[len(prompt.to_ints()) :], abs=1e-5)


def test_the_038_prompt_and_sample_outputs_are_the_models(client: tinkex.Client) -> None:
    """``target_prompt_logprobs``, ``prompt_alt_tokens_k`` and ``topk_sample_logprobs`` answer with the model's
    own numbers (protobuf results in the 0.38 dialect): each agrees with compute_logprobs."""
    sampler = client.create_sampling_client(base_model=MODEL)
    prompt = [280, 84, 104, 101, 32]
    scored = sampler.compute_logprobs(types.ModelInput.from_ints(prompt)).result()
    targets = np.array([[84, -1], [104, 7], [101, -1], [32, 280]], dtype=np.int64)  # [len(prompt) - 1, K]
    response = sampler.sample(
        types.ModelInput.from_ints(prompt),
        2,
        types.SamplingParams(max_tokens=4, temperature=1.0, seed=7),
        topk_sample_logprobs=3,
        target_prompt_logprobs=types.TensorData.from_numpy(targets),
        prompt_alt_tokens_k=5,
    ).result()

    found = response.target_prompt_logprobs.to_numpy()
    assert found.shape == (4, 2) and found.dtype == np.float32
    assert found[:, 0] == pytest.approx(scored[1:], abs=1e-5)  # the prompt's own next tokens
    assert found[0, 1] == 0.0 and found[2, 1] == 0.0  # -1 asks nothing

    alt = response.prompt_alt_tokens
    tokens, logprobs = alt.tokens.to_numpy(), alt.logprobs.to_numpy()
    assert tokens.shape == logprobs.shape == (4, 5) and ((tokens >= 0) & (tokens < DEFAULT_VOCAB_SIZE)).all()
    for row, position in enumerate(range(1, len(prompt))):
        again = sampler.compute_logprobs(types.ModelInput.from_ints([*prompt[:position], int(tokens[row, 0])])).result()
        assert logprobs[row, 0] == pytest.approx(again[-1], abs=1e-5)

    for sequence in response.sequences:
        assert sequence.topk_logprobs is not None and len(sequence.topk_logprobs) == len(sequence.tokens)
        for entries, token, logprob in zip(sequence.topk_logprobs, sequence.tokens, sequence.logprobs):
            assert len(entries) == 3 and entries[0][1] >= entries[1][1] >= entries[2][1]
            assert logprob <= entries[0][1] + 1e-6  # the drawn token is at most as likely as the likeliest
            assert all(value == pytest.approx(logprob, abs=1e-5) for t, value in entries if t == token)


def test_a_token_beyond_the_vocabulary_is_a_400_naming_the_limit(client: tinkex.Client) -> None:
    training = client.create_lora_training_client(MODEL, rank=4)
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, DEFAULT_VOCAB_SIZE]),
        loss_fn_inputs={"target_tokens": [2, 3, 4]},
    )
    with pytest.raises(tinkex.BadRequestError, match=r"token id 283 is outside the model's vocabulary of 283 ids") as caught:
        training.forward_backward([datum], "cross_entropy").result()
    assert caught.value.status_code == 400
    target_beyond = types.Datum(model_input=types.ModelInput.from_ints([1, 2]), loss_fn_inputs={"target_tokens": [2, 300]})
    with pytest.raises(tinkex.BadRequestError, match=r"target_tokens'\]\[1\]: token id 300 is outside"):
        training.forward([target_beyond], "cross_entropy").result()
    sampler = client.create_sampling_client(base_model=MODEL)
    with pytest.raises(tinkex.BadRequestError, match="vocabulary of 283 ids"):
        sampler.sample(types.ModelInput.from_ints([5, 100_000]), 1, types.SamplingParams(max_tokens=2)).result()


def test_a_larger_vocabulary_is_a_server_option() -> None:
    with LocalServer(base_models=("Qwen/Qwen3-8B",), vocab_size=151_936) as server:
        with tinkex.Client(api_key="tml-tiny-lm", base_url=server.base_url, telemetry=False) as client:
            sampler = client.create_sampling_client(base_model="Qwen/Qwen3-8B")
            result = sampler.sample(types.ModelInput.from_ints([151_000, 42]), 2, types.SamplingParams(max_tokens=3)).result()
    assert all(len(s.tokens) == 3 and all(0 <= t < 151_936 for t in s.tokens) for s in result.sequences)


def test_another_optimizer_family_is_refused_by_name(client: tinkex.Client) -> None:
    training = client.create_lora_training_client(MODEL, rank=4)
    datum = _sentence_datum(training.get_tokenizer())
    training.forward_backward([datum], "cross_entropy").result()
    with pytest.raises(tinkex.RequestFailedError, match="optimizer 'dimuon' is not supported"):
        training.optim_step(types.DimuonParams(learning_rate=0.01)).result()


def test_the_step_and_optimizer_state_survive_save_load_and_a_restart(tmp_path: Path) -> None:
    with LocalServer(base_models=(MODEL,), state_dir=tmp_path) as server:
        with tinkex.Client(api_key="tml-tiny-lm", base_url=server.base_url, telemetry=False) as client:
            training = client.create_lora_training_client(MODEL, rank=4)
            datum = _sentence_datum(training.get_tokenizer())
            for _ in range(3):
                training.forward_backward([datum], "cross_entropy")
                training.optim_step(types.AdamParams(learning_rate=1e-3))
            saved = training.save_state("three").result().path
            model_id = training.model_id
        trained = server.model_state(model_id)
    assert trained.step == 3

    with LocalServer(base_models=(MODEL,), state_dir=tmp_path) as server:
        assert server.model_state(model_id).to_json() == trained.to_json()  # the run itself survived
        with tinkex.Client(api_key="tml-tiny-lm", base_url=server.base_url, telemetry=False) as client:
            with_optimizer = client.create_training_client_from_state_with_optimizer(saved)
            weights_only = client.create_training_client_from_state(saved)
            loss_after = with_optimizer.forward([datum], "cross_entropy").result().metrics["loss:sum"]
            restored, fresh = (server.model_state(t.model_id) for t in (with_optimizer, weights_only))
    assert restored.step == 3 and restored.adam_m.keys() == trained.adam_m.keys()
    assert all((restored.adam_v[name] == trained.adam_v[name]).all() for name in trained.adam_v)
    assert fresh.step == 0 and fresh.adam_m == {}
    assert all((fresh.params[name] == trained.params[name]).all() for name in trained.params)
    assert loss_after < 200  # the trained adapter, not a fresh one (about 5.3 nats x 44 tokens untrained)


def test_custom_loss_gradients_flow_into_the_adapter(client: tinkex.Client) -> None:
    torch = pytest.importorskip("torch")
    training = client.create_lora_training_client(MODEL, rank=4)
    datum = _sentence_datum(training.get_tokenizer())
    before = training.forward([datum], "cross_entropy").result().metrics["loss:sum"]

    def mean_nll(data: list[types.Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        loss = -torch.cat(logprobs).mean()
        return loss, {"mean_nll:mean": loss.item()}

    for _ in range(5):
        output = training.forward_backward_custom([datum], mean_nll).result(timeout=60)
        training.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    after = training.forward([datum], "cross_entropy").result().metrics["loss:sum"]
    tokens = len(datum.model_input.to_ints())
    assert output.metrics["mean_nll:mean"] < before / tokens  # the loss it saw had already fallen
    assert after < 0.8 * before
