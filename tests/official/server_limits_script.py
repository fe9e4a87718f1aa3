"""Run by tests/official/test_official_server_limits.py with an official ``tinker`` against a LocalServer whose
client/config sets limits: ``samples`` sends 20 samples at once, ``chunks`` one forward_backward of 5 data. Prints
one JSON line with what came back; any failure raises."""

from __future__ import annotations

import sys

import tinker
from script_exit import report
from tinker import types

BASE_MODEL = "Qwen/Qwen3-8B"


def main(mode: str) -> None:
    service = tinker.ServiceClient()
    if mode == "samples":
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result()
        prompt = types.ModelInput.from_ints([1, 2, 3])
        pending = [sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2, seed=i)) for i in range(20)]
        report({"sequences": [len(p.result().sequences) for p in pending]})
    else:
        training = service.create_lora_training_client(base_model=BASE_MODEL, rank=4).result()
        data = [
            types.Datum(
                model_input=types.ModelInput.from_ints([1, 2, 3, i]), loss_fn_inputs={"target_tokens": [2, 3, 4, 5]}
            )
            for i in range(5)
        ]
        output = training.forward_backward(data, "cross_entropy").result()
        report({"outputs": len(output.loss_fn_outputs)})


if __name__ == "__main__":
    main(sys.argv[1])
