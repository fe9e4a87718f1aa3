"""Runs tinker-cookbook 0.6.1's own training loops, unchanged, on tinkex against a LocalServer, offline.

Run it under ``tinkex exec`` with the cookbook venv's python (tests/cookbook/test_cookbook_loops.py does)::

    tinkex exec -- python cookbook_loops.py sl|rl --log-dir DIR

``sl`` runs ``tinker_cookbook.supervised.train.main`` on a tiny in-memory chat dataset; ``rl`` runs
``tinker_cookbook.rl.train.main`` on a toy one-turn environment with a reward. Both talk to the embedded
``tinkex.testing.LocalServer`` through ``import tinker``, which ``tinkex exec`` serves from tinkex. The cookbook's
code is not patched: what this file supplies is what any cookbook user supplies (a dataset builder, an environment,
a config), plus the two swaps below, of things that would need the internet. The last line printed is
``COOKBOOK_RESULT <json>``: the per-step figures the loop logged, for the test to check and show.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chz
import datasets
import tinker  # tinkex, through tinkex.compat (installed by `tinkex exec`)
from tinker_cookbook import renderers, tokenizer_utils
from tinker_cookbook.rl.types import Env, EnvGroupBuilder, RLDataset, RLDatasetBuilder, StepResult, Trajectory
from tinker_cookbook.supervised import train as sl_train
from tinker_cookbook.supervised.data import SupervisedDatasetFromHFDataset, conversation_to_datum
from tinker_cookbook.supervised.types import ChatDatasetBuilder, ChatDatasetBuilderCommonConfig, SupervisedDataset
from tinker_cookbook.utils import cost_estimation

import tinkex
import tinkex.compat
from tinkex.testing import LocalServer

MODEL = "tinkex/fake-tiny"  # LocalServer's fake model; tinkex has an offline tokenizer for it
RENDERER = "role_colon"  # the cookbook's model-agnostic chat format
API_KEY = "tml-cookbook-loops"

# --- The swaps: only what would need the internet --------------------------------------------------------------

# 1. Tokenizer. The cookbook's get_tokenizer(MODEL) would download MODEL's tokenizer from the Hugging Face Hub.
#    register_tokenizer is the cookbook's own hook for supplying one; this one is tinkex's offline byte-level
#    encoding, the tokenizer LocalServer's fake model is defined over.


class CookbookTokenizer:
    """tinkex's tokenizer for a model under the Hugging Face attribute names the cookbook reads.

    tinkex.Tokenizer names its roles by id (``bos_token_id``, ``eos_token_id``); Hugging Face tokenizers, which the
    cookbook is written against, also carry the token strings (the role_colon renderer reads ``bos_token``),
    ``name_or_path`` (read by ``renderers.get_renderer``) and ``all_special_ids`` (read by ``compute_bpb``).
    """

    def __init__(self, model_name: str) -> None:
        self._tokenizer = tinkex.get_tokenizer(model_name)
        names_by_id = {token_id: token for token, token_id in self._tokenizer.special_tokens.items()}
        self.name_or_path = model_name
        self.bos_token_id, self.eos_token_id = self._tokenizer.bos_token_id, self._tokenizer.eos_token_id
        self.bos_token, self.eos_token = names_by_id.get(self.bos_token_id), names_by_id.get(self.eos_token_id)
        self.all_special_ids = sorted(self._tokenizer.special_token_ids)
        self.vocab_size = self._tokenizer.vocab_size

    def encode(self, text: str, add_special_tokens: bool = True, **_: Any) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, tokens: Sequence[int], skip_special_tokens: bool = False, **_: Any) -> str:
        return self._tokenizer.decode(list(tokens), skip_special_tokens=skip_special_tokens)


tokenizer_utils.register_tokenizer(MODEL, lambda: CookbookTokenizer(MODEL))

# 2. Pricing. Both loops call fetch_model_pricing, which downloads the published pricing file (models.json) from
#    the Tinker docs site. This serves a local pricing table in its place, with an entry for the fake model, so the
#    loops' cost accounting runs as it does against the real service.
LOCAL_PRICING = [
    {"tinker_id": MODEL, "prefill": "0.10", "cached_prefill": "0.05", "sample": "0.30", "train": "0.40"},
]
cost_estimation._download_pricing = lambda url, timeout: LOCAL_PRICING

# --- A tiny in-memory chat dataset (supervised loop) --------------------------------------------------------------

CONVERSATIONS = [
    [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    for question, answer in [
        ("What colour is the sky?", "The sky is blue."),
        ("What do bees make?", "Bees make honey."),
        ("Name a fruit.", "An apple is a fruit."),
        ("What is two plus two?", "Two plus two is four."),
        ("Where do fish live?", "Fish live in water."),
        ("What do cows eat?", "Cows eat grass."),
        ("What is ice?", "Ice is frozen water."),
        ("How many legs has a cat?", "A cat has four legs."),
        ("What rises in the east?", "The sun rises in the east."),
        ("What is snow?", "Snow is frozen rain."),
    ]
]


@chz.chz
class TinyChatBuilder(ChatDatasetBuilder):
    """CONVERSATIONS as a supervised dataset, the last ``test_size`` held out for the loop's NLL evaluator."""

    test_size: int = 2

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        renderer, config = self.renderer, self.common_config
        train_on_what = config.train_on_what or renderers.TrainOnWhat.ALL_ASSISTANT_MESSAGES

        def to_datum(row: dict[str, Any]) -> tinker.Datum:
            return conversation_to_datum(row["messages"], renderer, config.max_length, train_on_what)

        rows = [{"messages": messages} for messages in CONVERSATIONS]
        train_rows, test_rows = rows[: -self.test_size], rows[-self.test_size :]
        train = SupervisedDatasetFromHFDataset(
            datasets.Dataset.from_list(train_rows), batch_size=config.batch_size, map_fn=to_datum
        )
        test = SupervisedDatasetFromHFDataset(
            datasets.Dataset.from_list(test_rows), batch_size=len(test_rows), map_fn=to_datum
        )
        return train, test


# --- A toy environment with a reward (RL loop) ---------------------------------------------------------------------

QUESTIONS = ["Say something with vowels.", "Reply in a few words.", "Tell me about the sea.", "What is a tree?"]


class VowelEnv(Env):
    """One turn: the reward is the share of the reply's letters that are vowels (so samples in a group differ)."""

    def __init__(self, renderer: renderers.Renderer, question: str) -> None:
        self.renderer = renderer
        self.question = question

    async def initial_observation(self) -> tuple[tinker.ModelInput, Any]:
        prompt = self.renderer.build_generation_prompt([{"role": "user", "content": self.question}])
        return prompt, self.renderer.get_stop_sequences()

    async def step(self, action: list[int], *, extra: Any = None) -> StepResult:
        message, _ = self.renderer.parse_response(action)
        letters = [char for char in renderers.get_text_content(message).lower() if char.isalpha()]
        reward = sum(char in "aeiou" for char in letters) / len(letters) if letters else 0.0
        return StepResult(
            reward=reward,
            episode_done=True,
            next_observation=tinker.ModelInput.empty(),
            next_stop_condition=self.renderer.get_stop_sequences(),
            metrics={"vowel_share": reward},
        )


@dataclass(frozen=True)
class VowelGroupBuilder(EnvGroupBuilder):
    question: str
    group_size: int

    async def make_envs(self) -> Sequence[Env]:
        renderer = renderers.get_renderer(RENDERER, tokenizer_utils.get_tokenizer(MODEL))
        return [VowelEnv(renderer, self.question) for _ in range(self.group_size)]

    async def compute_group_rewards(
        self, trajectory_group: list[Trajectory], env_group: Sequence[Env]
    ) -> list[tuple[float, dict[str, float | int]]]:
        return [(0.0, {}) for _ in trajectory_group]  # all reward comes from the step

    def logging_tags(self) -> list[str]:
        return ["vowels"]


class VowelDataset(RLDataset):
    def __init__(self, groups_per_batch: int, group_size: int, batches: int) -> None:
        self.groups_per_batch, self.group_size, self.batches = groups_per_batch, group_size, batches

    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]:
        first = index * self.groups_per_batch
        return [
            VowelGroupBuilder(QUESTIONS[(first + offset) % len(QUESTIONS)], self.group_size)
            for offset in range(self.groups_per_batch)
        ]

    def __len__(self) -> int:
        return self.batches


@chz.chz
class VowelDatasetBuilder(RLDatasetBuilder):
    groups_per_batch: int = 2
    group_size: int = 4
    batches: int = 3

    async def __call__(self) -> tuple[RLDataset, RLDataset | None]:
        return VowelDataset(self.groups_per_batch, self.group_size, self.batches), None


# --- Running a loop ------------------------------------------------------------------------------------------------


def _metrics(log_dir: Path) -> list[dict[str, Any]]:
    path = log_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def run_supervised(base_url: str, log_dir: Path) -> None:
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=MODEL, renderer_name=RENDERER, max_length=256, batch_size=2
    )
    config = sl_train.Config(
        log_path=str(log_dir),
        model_name=MODEL,
        recipe_name="tinkex_cookbook_sl",
        renderer_name=RENDERER,
        dataset_builder=TinyChatBuilder(common_config=common),
        learning_rate=1e-4,
        num_epochs=2,
        lora_rank=8,
        base_url=base_url,
        eval_every=4,
        save_every=4,
    )
    asyncio.run(sl_train.main(config))


def run_rl(base_url: str, log_dir: Path) -> None:
    from tinker_cookbook.rl import train as rl_train  # imported here so that the supervised loop runs without it

    config = rl_train.Config(
        log_path=str(log_dir),
        model_name=MODEL,
        recipe_name="tinkex_cookbook_rl",
        renderer_name=RENDERER,
        dataset_builder=VowelDatasetBuilder(),
        learning_rate=1e-4,
        max_tokens=12,
        lora_rank=8,
        base_url=base_url,
        eval_every=0,
        save_every=2,
    )
    asyncio.run(rl_train.main(config))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loop", choices=["sl", "rl"])
    parser.add_argument("--log-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if not isinstance(tinker, tinkex.compat.TinkerModule):
        print("error: run this under `tinkex exec`: `import tinker` is not served by tinkex here", file=sys.stderr)
        return 2
    os.environ["TINKER_API_KEY"] = API_KEY
    with LocalServer(base_models=(MODEL,), api_key=API_KEY) as server:
        (run_supervised if args.loop == "sl" else run_rl)(server.base_url, args.log_dir)
        duplicates = server.ledger.duplicates_executed()
    result = {
        "loop": args.loop,
        "tinker_version": tinker.__version__,
        "duplicates_executed": len(duplicates),
        "metrics": _metrics(args.log_dir),
    }
    print("COOKBOOK_RESULT " + json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
