"""Rollouts fanned out to worker processes with ``concurrent.futures.ProcessPoolExecutor`` (no Ray needed).

The parent makes one ``SamplingClient`` and submits one rollout per worker; the pool pickles the client into each
task, and each worker process joins the parent's session (no new one). Workers send back their completions and
rewards; the parent prints them. ``--start-method`` picks fork, spawn or forkserver (docs/fanout.md compares them).

    python examples/process_rollout.py --workers 4                  # against TINKER_BASE_URL / TINKER_API_KEY
    python examples/process_rollout.py --workers 8 --local-server   # a tinkex.testing.LocalServer started here
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import sys
from contextlib import ExitStack

import tinkex
from tinkex import types
from tinkex.sampling_client import SamplingClient


def rollout(sampler: SamplingClient, worker: int, prompts: int, group_size: int, max_tokens: int) -> list[float]:
    """In a worker process: sample a group of completions per prompt, and score each (the share of even token
    ids: a stand-in for a real reward)."""
    tokenizer = sampler.get_tokenizer()
    params = types.SamplingParams(max_tokens=max_tokens, temperature=1.0)
    futures = [
        sampler.sample(types.ModelInput.from_ints(tokenizer.encode(f"worker {worker}, prompt {p}:")), group_size, params)
        for p in range(prompts)
    ]
    rewards = []
    for future in futures:
        for sequence in future.result(timeout=120).sequences:
            rewards.append(sum(1 for t in sequence.tokens if t % 2 == 0) / max(1, len(sequence.tokens)))
    return rewards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default="tinkex/fake-tiny", help="(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default: %(default)s)")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per worker (default: %(default)s)")
    parser.add_argument("--group-size", type=int, default=4, help="completions per prompt (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=8, help="(default: %(default)s)")
    parser.add_argument("--start-method", default=None, choices=multiprocessing.get_all_start_methods(),
                        help="(default: the platform's)")
    parser.add_argument("--local-server", action="store_true", help="start a tinkex.testing.LocalServer here")
    args = parser.parse_args(argv)

    with ExitStack() as stack:
        if args.local_server:
            from tinkex.testing import LocalServer

            server = stack.enter_context(LocalServer(base_models=(args.base_model,)))
            client = tinkex.Client(base_url=server.base_url, api_key="tml-local")
        else:
            client = tinkex.Client()  # TINKER_API_KEY, TINKER_BASE_URL
        stack.callback(client.close)  # after the workers are done: see "Closing the parent's client"
        sampler = client.create_sampling_client(base_model=args.base_model)
        context = multiprocessing.get_context(args.start_method)
        with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=context) as pool:
            futures = [
                pool.submit(rollout, sampler, worker, args.prompts, args.group_size, args.max_tokens)
                for worker in range(args.workers)
            ]
            rewards = [future.result(timeout=300) for future in futures]
        for worker, found in enumerate(rewards):
            print(f"worker {worker}: {len(found)} completions, mean reward {sum(found) / len(found):.3f}")
        print(f"one session for the parent and every worker: {sampler.holder.known_session_id()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
