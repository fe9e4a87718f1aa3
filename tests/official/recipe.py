"""The recipe a new user runs first, written against the official SDK's public API only (0.16.1 and 0.38.0 alike).

Run by tests/official/test_official_sdk.py with an official ``tinker`` in its own venv, against a LocalServer:
create a client -> forward_backward (and forward) -> optim_step -> save weights for the sampler -> sample ->
compute_logprobs -> save state -> load state. Configuration comes from the environment (TINKER_BASE_URL,
TINKER_API_KEY), as the SDK reads it. Prints one JSON object with what each step returned; any failure raises.
"""

from __future__ import annotations

import tinker
from script_exit import report
from tinker import types

BASE_MODEL = "Qwen/Qwen3-8B"


def ready(client_or_future):
    """0.38's creation methods return a future of the client (usable as the client, deprecated); 0.16's the client."""
    return client_or_future.result() if type(client_or_future).__name__.startswith("Backcompat") else client_or_future


def main() -> None:
    service = tinker.ServiceClient()
    training = ready(service.create_lora_training_client(base_model=BASE_MODEL, rank=8))
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3, 4]),
        loss_fn_inputs={"target_tokens": [2, 3, 4, 5], "weights": [1.0, 1.0, 0.5, 1.0]},
    )
    forward_backward = training.forward_backward([datum, datum], "cross_entropy").result()
    forward = training.forward([datum], "cross_entropy").result()
    optim = training.optim_step(types.AdamParams(learning_rate=1e-4)).result()
    sampler_path = training.save_weights_for_sampler("step-1").result().path
    sampler = ready(service.create_sampling_client(model_path=sampler_path))
    sample = sampler.sample(
        prompt=types.ModelInput.from_ints([5, 6, 7]),
        num_samples=2,
        sampling_params=types.SamplingParams(max_tokens=4, temperature=0.7),
    ).result()
    logprobs = sampler.compute_logprobs(types.ModelInput.from_ints([5, 6, 7, 8])).result()
    state_path = training.save_state("ckpt-1").result().path
    training.load_state(state_path).result()
    after_load = training.forward([datum], "cross_entropy").result()
    report(
        {
            "sdk_version": tinker.__version__,
            "model_id": training.model_id,
            "forward_backward": {
                "outputs": [{k: list(v.tolist()) for k, v in o.items()} for o in forward_backward.loss_fn_outputs],
                "metrics": forward_backward.metrics,
            },
            "forward_logprobs": list(forward.loss_fn_outputs[0]["logprobs"].tolist()),
            "after_load_logprobs": list(after_load.loss_fn_outputs[0]["logprobs"].tolist()),
            "optim_metrics": optim.metrics,
            "sampler_path": sampler_path,
            "sequences": [
                {
                    "tokens": list(s.tokens),
                    "logprobs": None if s.logprobs is None else list(s.logprobs),
                    "stop_reason": s.stop_reason,
                    "sequence_id": getattr(s, "sequence_id", None),
                }
                for s in sample.sequences
            ],
            "compute_logprobs": list(logprobs),
            "state_path": state_path,
        }
    )


if __name__ == "__main__":
    main()
