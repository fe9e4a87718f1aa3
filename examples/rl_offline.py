"""Reinforcement learning offline: teach the local server's tiny model to answer with a target word.

Each round samples a group of answers to one prompt, scores them with a reward, and trains on them with the
``importance_sampling`` loss (or ``ppo``), using each answer's reward minus the group's mean as its advantage
(the group baseline of GRPO). The mean reward rises round after round. Everything runs on this machine: the
embedded ``tinkex.testing.LocalServer`` and its tiny real language model, through the same ``tinkex.Client`` calls
as against the Tinker service::

    python examples/rl_offline.py --rounds 30
    python examples/rl_offline.py --loss ppo --epochs 3 --target dog

The reward: the share of the target word's letters the answer has in the right places (1.0 when it starts with
the word), so that answers which get part of the way there are told apart from ones that do not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import tinkex
from tinkex import types
from tinkex.testing import LocalServer

MODEL = "tinkex/fake-tiny"
PROMPT = "Q: name a colour. A: "
TARGET = "blue"


def reward(answer: str, target: str) -> float:
    """The share of ``target``'s letters the answer has in the right place: 1.0 when it starts with the word."""
    return sum(expected == got for expected, got in zip(target, answer)) / len(target)


@dataclass(frozen=True)
class Round:
    mean_reward: float
    best_answer: str
    loss: float


def _datum(prompt: list[int], sequence: types.SampledSequence, advantage: float) -> types.Datum:
    """Prompt and answer as next-token targets; the answer's tokens carry the advantage and the sampler's logprobs."""
    tokens = prompt + list(sequence.tokens)
    answer_positions = len(sequence.tokens)
    prompt_positions = len(tokens) - 1 - answer_positions
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": tokens[1:],
            "logprobs": [0.0] * prompt_positions + list(sequence.logprobs),
            "advantages": [0.0] * prompt_positions + [advantage] * answer_positions,
        },
    )


def train(
    client: tinkex.Client,
    *,
    rounds: int = 25,
    group_size: int = 16,
    loss_fn: str = "importance_sampling",
    learning_rate: float = 2e-3,
    target: str = TARGET,
    prompt_text: str = PROMPT,
    seed: int = 0,
    epochs: int = 1,
) -> list[Round]:
    """Sample, reward, advantage, then ``epochs`` x (forward_backward, optim_step) on that group, ``rounds`` times;
    one :class:`Round` per round. After the first epoch the policy has moved away from the sampler's, so the
    importance ratio leaves 1 and ``ppo`` clips it."""
    training = client.create_lora_training_client(MODEL, rank=8, seed=seed)
    tokenizer = training.get_tokenizer()
    prompt = tokenizer.encode(prompt_text)
    answer_tokens = len(tokenizer.encode(target, add_special_tokens=False)) + 2
    history = []
    for number in range(rounds):
        sampler = training.save_weights_and_get_sampling_client()
        group = sampler.sample(
            types.ModelInput.from_ints(prompt), group_size,
            types.SamplingParams(max_tokens=answer_tokens, temperature=1.0, seed=seed * 100_000 + number),
        ).result()
        answers = [tokenizer.decode(s.tokens, skip_special_tokens=True) for s in group.sequences]
        rewards = [reward(answer, target) for answer in answers]
        mean = statistics.fmean(rewards)
        data = [_datum(prompt, s, r - mean) for s, r in zip(group.sequences, rewards) if s.tokens and r != mean]
        loss = 0.0
        for _ in range(epochs if data else 0):  # every answer as good as the others: nothing to learn
            fwd_bwd = training.forward_backward(data, loss_fn)
            training.optim_step(types.AdamParams(learning_rate=learning_rate))
            loss = fwd_bwd.result().metrics["loss:sum"]
        best = max(zip(rewards, answers))[1]
        history.append(Round(mean_reward=mean, best_answer=best, loss=loss))
    return history


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--group-size", type=int, default=16)
    parser.add_argument("--loss", choices=("importance_sampling", "ppo"), default="importance_sampling")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--epochs", type=int, default=1, help="optimizer steps per sampled group")
    parser.add_argument("--target", default=TARGET)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with LocalServer(base_models=(MODEL,), seed=args.seed) as server:
        with tinkex.Client(api_key="tml-rl-offline", base_url=server.base_url, telemetry=False) as client:
            print(f"rl_offline: {args.loss}, reward for answering {args.target!r} to {PROMPT!r}")
            history = train(client, rounds=args.rounds, group_size=args.group_size, loss_fn=args.loss,
                            learning_rate=args.learning_rate, target=args.target, seed=args.seed,
                            epochs=args.epochs)
    for number, result in enumerate(history, 1):
        print(f"round {number:3d}: mean reward {result.mean_reward:.3f}  best answer {result.best_answer!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
