"""Run by tests/official/test_official_parallel_chunks.py with an official ``tinker`` against a LocalServer: uses
the futures the creation methods return as the clients (0.16 style), so the server records the ``x-sdk-method`` the
official SDK sends for them. Prints one JSON line; any failure raises."""

from __future__ import annotations

import warnings

import tinker
from script_exit import report
from tinker import types

BASE_MODEL = "Qwen/Qwen3-8B"


def main() -> None:
    warnings.simplefilter("ignore")  # using the future as the client is deprecated officially
    service = tinker.ServiceClient()
    training = service.create_lora_training_client(base_model=BASE_MODEL, rank=4)
    training.result()
    datum = types.Datum(model_input=types.ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={"target_tokens": [1, 2, 3]})
    training.forward_backward([datum], "cross_entropy").result()
    training.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    sampler = training.save_weights_and_get_sampling_client()
    sampler.sample(types.ModelInput.from_ints([1, 2]), 1, types.SamplingParams(max_tokens=2)).result()
    report({"done": True})


if __name__ == "__main__":
    main()
