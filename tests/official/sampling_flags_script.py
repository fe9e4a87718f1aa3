"""Run by tests/official/test_official_sampling_flags.py with an official ``tinker`` against a LocalServer whose
client/config sets sampling flags: ``samples`` sends 12 samples at once; ``copy`` samples through an unpickled copy of
a sampling client (as a worker process would get it); ``expired`` sends one sample whose future the server expires.
Prints one JSON line with what came back; any unexpected failure raises."""

from __future__ import annotations

import pickle
import sys

import tinker
from script_exit import report
from tinker import types

BASE_MODEL = "Qwen/Qwen3-8B"
PROMPT = types.ModelInput.from_ints([1, 2, 3])


def main(mode: str) -> None:
    service = tinker.ServiceClient()
    sampler = service.create_sampling_client(base_model=BASE_MODEL).result()
    if mode == "samples":
        pending = [sampler.sample(PROMPT, 1, types.SamplingParams(max_tokens=2, seed=i)) for i in range(12)]
        report({"sequence_ids": [p.result().sequences[0].sequence_id for p in pending]})
    elif mode == "copy":
        sampler.sample(PROMPT, 1, types.SamplingParams(max_tokens=2)).result()
        copy = pickle.loads(pickle.dumps(sampler))
        results = [copy.sample(PROMPT, 1, types.SamplingParams(max_tokens=2, seed=i)).result() for i in range(3)]
        report({"copy_samples": len(results)})
    else:
        try:
            sampler.sample(PROMPT, 1, types.SamplingParams(max_tokens=2)).result()
            outcome = "answered"
        except Exception as exc:  # noqa: BLE001 - which error is what the test reads
            outcome = type(exc).__name__
        report({"outcome": outcome})


if __name__ == "__main__":
    main(sys.argv[1])
