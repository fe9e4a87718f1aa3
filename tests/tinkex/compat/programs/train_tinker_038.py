"""A small RL-style training script written against the official tinker 0.38 API, and nothing else.

It runs unchanged on the official SDK or, under ``tinkex exec``, on tinkex (tests/tinkex/compat/test_compat_exec.py runs it
that way against a LocalServer). It uses 0.38's new forms: creation methods return futures that are awaited,
sampled sequences carry sequence ids, training data names them through provenance spans, and the session is
closed with a status. Configuration comes from the environment, as the SDK reads it (TINKER_API_KEY,
TINKER_BASE_URL). Each step prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import tinker
from tinker import types

PROMPT = [101, 7592, 2088, 2003, 1037, 2307, 1012, 102]  # token ids; no tokenizer download needed


def reward(tokens: list[int]) -> float:
    """Toy reward: the share of even token ids in the sampled continuation."""
    return sum(token % 2 == 0 for token in tokens) / len(tokens) if tokens else 0.0


def datum_for(sequence: types.SampledSequence, advantage: float) -> types.Datum:
    """One importance-sampling datum from the prompt and a sampled sequence, with its provenance."""
    sampled = list(sequence.tokens)
    tokens = PROMPT + sampled
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": tokens[1:],
            "logprobs": [0.0] * (len(PROMPT) - 1) + list(sequence.logprobs or [0.0] * len(sampled)),
            "advantages": [0.0] * (len(PROMPT) - 1) + [advantage] * len(sampled),
        },
    )
    # model_input = the prompt, then all but the last sampled token; targets = the prompt shifted by one, then
    # every sampled token. Both runs name the sequence they came from by its id.
    return datum.with_provenance(
        model_input=[
            types.PromptProvenanceSpan(sequence_id=sequence.sequence_id, offset=0, length=len(PROMPT)),
            types.SampledProvenanceSpan(sequence_id=sequence.sequence_id, offset=0, length=len(sampled) - 1),
        ],
        loss_fn_inputs=[
            types.PromptProvenanceSpan(sequence_id=sequence.sequence_id, offset=1, length=len(PROMPT) - 1),
            types.SampledProvenanceSpan(sequence_id=sequence.sequence_id, offset=0, length=len(sampled)),
        ],
    )


async def train(base_model: str, steps: int, group_size: int) -> None:
    service_client = tinker.ServiceClient()
    try:
        # 0.38: the creation method returns a future of the client; await it.
        training_client = await service_client.create_lora_training_client(base_model=base_model, rank=8)
        for step in range(steps):
            sampling_client = await training_client.save_weights_and_get_sampling_client()
            response = await sampling_client.sample(
                types.ModelInput.from_ints(PROMPT),
                num_samples=group_size,
                sampling_params=types.SamplingParams(max_tokens=6, temperature=1.0),
            )
            sequences = [seq for seq in response.sequences if len(seq.tokens) >= 2]
            rewards = [reward(list(seq.tokens)) for seq in sequences]
            mean_reward = sum(rewards) / len(rewards)
            data = [datum_for(seq, r - mean_reward) for seq, r in zip(sequences, rewards)]
            forward_backward = await training_client.forward_backward_async(data, "importance_sampling")
            optim_step = await training_client.optim_step_async(types.AdamParams(learning_rate=1e-4))
            result = await forward_backward
            await optim_step
            print(
                json.dumps(
                    {
                        "step": step,
                        "mean_reward": mean_reward,
                        "sequence_ids": [seq.sequence_id for seq in response.sequences],
                        "metrics": result.metrics,
                    }
                ),
                flush=True,
            )
    except BaseException as exc:
        await service_client.close("errored", detail=f"{type(exc).__name__}: {exc}")
        raise
    await service_client.close("success", detail=f"trained {steps} steps")
    print(json.dumps({"closed": "success", "tinker_version": tinker.__version__}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default="Qwen/Qwen3-8B")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--group-size", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(train(args.base_model, args.steps, args.group_size))


if __name__ == "__main__":
    main()
