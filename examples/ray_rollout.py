"""A parallel RL rollout with Ray: the driver trains, Ray actors sample.

Each round the driver saves the policy for sampling (``save_weights_and_get_sampling_client``) and hands that
``SamplingClient`` to every actor. Ray pickles it into the actors' processes, where it joins the driver's session
(no new session per worker, one heartbeat per worker process however many rounds). Each actor samples a group of
completions for each of its prompts, scores them with a reward function and sends back tokens, logprobs and rewards;
the driver turns the rewards into group-relative advantages and takes one ``importance_sampling`` step.

    pip install -e '.[ray]'
    python examples/ray_rollout.py --local-server            # a local Ray instance and a local Tinker server
    TINKER_API_KEY=... python examples/ray_rollout.py --base-model Qwen/Qwen3-8B --workers 16   # the service

Ray: without ``--ray-address`` (or ``RAY_ADDRESS``) a local Ray instance starts with ``--num-cpus`` CPUs; with
``--ray-address auto`` (on a cluster node, or in a ``ray job submit`` job) the script joins that cluster. The Tinker
server is ``TINKER_BASE_URL`` / ``TINKER_API_KEY`` (the service's URL is the default), or with ``--local-server`` a
``tinkex.testing.LocalServer`` started in the driver (reachable from this machine only). See docs/fanout.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass

import tinkex
from tinkex import types
from tinkex.sampling_client import SamplingClient

try:
    import ray
except ImportError:  # the example needs the optional extra; tinkex itself never imports ray
    sys.exit("examples/ray_rollout.py needs Ray: pip install -e '.[ray]'")


@dataclass
class Group:
    """One prompt's completions, as an actor sends them back to the driver (pickled by Ray)."""

    prompt_tokens: list[int]
    completions: list[list[int]]
    logprobs: list[list[float]]
    rewards: list[float]


def reward(completion: list[int]) -> float:
    """The toy task: the share of even token ids in the completion (any function of the tokens will do)."""
    return sum(1 for token in completion if token % 2 == 0) / max(1, len(completion))


class RolloutWorker:
    """A Ray actor: gets the round's sampler, samples its prompts, scores the completions."""

    def __init__(self, worker: int) -> None:
        self.worker = worker

    def rollout(
        self, sampler: SamplingClient, prompts: list[str], group_size: int, max_tokens: int, timeout: float
    ) -> list[Group]:
        tokenizer = sampler.get_tokenizer()
        params = types.SamplingParams(max_tokens=max_tokens, temperature=1.0)
        futures = []
        for text in prompts:  # every prompt's sample is sent at once; they run concurrently on the server
            prompt = tokenizer.encode(text)
            futures.append((prompt, sampler.sample(types.ModelInput.from_ints(prompt), group_size, params)))
        groups = []
        for prompt, future in futures:
            response = future.result(timeout=timeout)
            completions = [list(sequence.tokens) for sequence in response.sequences]
            logprobs = [list(sequence.logprobs or [0.0] * len(sequence.tokens)) for sequence in response.sequences]
            groups.append(Group(prompt, completions, logprobs, [reward(c) for c in completions]))
        return groups


def training_data(groups: list[Group]) -> list[types.Datum]:
    """Each completion as a datum for the ``importance_sampling`` loss, with its group-relative advantage on the
    completion's tokens (prompt tokens get none)."""
    data = []
    for group in groups:
        mean = statistics.fmean(group.rewards)
        for completion, logprobs, score in zip(group.completions, group.logprobs, group.rewards):
            if not completion or score == mean:
                continue  # no advantage, nothing to learn from this one
            tokens = group.prompt_tokens + completion
            prompt_targets = len(group.prompt_tokens) - 1
            data.append(
                types.Datum(
                    model_input=types.ModelInput.from_ints(tokens[:-1]),
                    loss_fn_inputs={
                        "target_tokens": tokens[1:],
                        "logprobs": [0.0] * prompt_targets + logprobs,
                        "advantages": [0.0] * prompt_targets + [score - mean] * len(completion),
                    },
                )
            )
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default="tinkex/fake-tiny", help="the model to train (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=4, help="Ray actors sampling (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="sample-then-train rounds (default: %(default)s)")
    parser.add_argument("--prompts-per-worker", type=int, default=2, help="(default: %(default)s)")
    parser.add_argument("--group-size", type=int, default=4, help="completions per prompt (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=8, help="per completion (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="(default: %(default)s)")
    parser.add_argument("--ray-address", default=None, help="a Ray cluster to join ('auto'); default: a local instance")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of a local Ray instance (default: %(default)s)")
    parser.add_argument("--local-server", action="store_true", help="start a tinkex.testing.LocalServer here")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a round may take (default: %(default)s)")
    args = parser.parse_args(argv)

    with ExitStack() as stack:
        if args.local_server:
            from tinkex.testing import LocalServer

            server = stack.enter_context(LocalServer(base_models=(args.base_model,)))
            client = tinkex.Client(base_url=server.base_url, api_key="tml-local")
        else:
            client = tinkex.Client()  # TINKER_API_KEY, TINKER_BASE_URL
        stack.callback(client.close)
        training = client.create_lora_training_client(args.base_model, rank=8)

        address = args.ray_address or os.environ.get("RAY_ADDRESS")
        if address is None:  # a local instance, as light as it gets
            ray.init(num_cpus=args.num_cpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
        else:
            ray.init(address=address, configure_logging=False)
        stack.callback(ray.shutdown)
        # Actors wait on the network, not on a CPU: asking for none lets any number share a small machine.
        actor_class = ray.remote(num_cpus=0)(RolloutWorker)
        actors = [actor_class.remote(worker) for worker in range(args.workers)]

        for round_index in range(args.rounds):
            started = time.monotonic()
            sampler = training.save_weights_and_get_sampling_client()  # this round's policy, sent to every actor
            refs = [
                actor.rollout.remote(
                    sampler,
                    [f"round {round_index}, worker {worker}, prompt {p}:" for p in range(args.prompts_per_worker)],
                    args.group_size,
                    args.max_tokens,
                    args.timeout,
                )
                for worker, actor in enumerate(actors)
            ]
            groups = [group for groups in ray.get(refs, timeout=args.timeout) for group in groups]
            data = training_data(groups)
            if data:
                training.forward_backward(data, "importance_sampling").result(timeout=args.timeout)
                training.optim_step(types.AdamParams(learning_rate=args.learning_rate)).result(timeout=args.timeout)
            rewards = [score for group in groups for score in group.rewards]
            print(
                f"round {round_index}: mean reward {statistics.fmean(rewards):.3f} over {len(rewards)} completions "
                f"from {args.workers} Ray actors, {len(data)} trained on, {time.monotonic() - started:.1f} s"
            )
        print(f"one session for the driver and every actor: {training.holder.known_session_id()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
