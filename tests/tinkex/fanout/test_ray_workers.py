"""A ``SamplingClient`` handed to 8 Ray tasks and to 8 Ray actors on a local Ray instance: the same guarantees as
with worker processes (one session, each sample run once, answers back in the driver, the driver's client closed
mid-way). Ray is the optional extra ``tinkex[ray]``; without it these tests skip.

Ray starts on this machine with 2 CPUs and no dashboard, once for the module, and is shut down after it. Ray pickles
the client into its workers with cloudpickle, which takes ``SamplingClient.__reduce__``: each worker process joins
the session through a shadow holder. Tasks and actors ask for no CPU, so all 8 run at once on 2 CPUs (they wait on
the network, not the CPU).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fanout_checks import ALL_DONE_S, WORKERS, check_every_sample_ran_once, copy_of, wait_for_samples
from fanout_workers import SAMPLES_PER_WORKER, Rollout, RolloutActor, rollout

import tinkex
from tinkex.sampling_client import SamplingClient
from tinkex.testing import LocalServer

ray = pytest.importorskip("ray", reason="Ray is the optional extra tinkex[ray]: pip install -e '.[ray]'")

_HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    """A local Ray instance for the module (never a cluster named by RAY_ADDRESS), shut down at the end."""
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "RAY_USAGE_STATS_ENABLED")}
    # Ray's workers are new processes started by its raylet: they find the worker functions' module as a user's
    # job finds its own code, on the path they inherit.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_HERE), saved["PYTHONPATH"]) if p)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # tests never reach the internet (Ray would report usage)
    started = time.monotonic()
    try:
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
        )
        print(f"ray.init took {time.monotonic() - started:.1f} s")
        yield ray
    finally:
        stopping = time.monotonic()
        ray.shutdown()
        print(f"ray.shutdown took {time.monotonic() - stopping:.1f} s")
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _tasks(ray_module: Any, sampler: SamplingClient) -> list[Any]:
    task = ray_module.remote(rollout).options(num_cpus=0, max_retries=0)
    return [task.remote(sampler, worker, SAMPLES_PER_WORKER) for worker in range(WORKERS)]


def _actors(ray_module: Any, sampler: SamplingClient) -> list[Any]:
    actor_class = ray_module.remote(num_cpus=0, max_restarts=0)(RolloutActor)
    actors = [actor_class.remote(sampler, worker) for worker in range(WORKERS)]
    return [actor.rollout.options(max_task_retries=0).remote(SAMPLES_PER_WORKER) for actor in actors]


@pytest.mark.parametrize("submit", [_tasks, _actors], ids=["tasks", "actors"])
def test_eight_ray_workers_sample_each_prompt_once_while_the_driver_closes_its_client(
    ray_instance: Any,
    server: LocalServer,
    parent: tuple[tinkex.Client, SamplingClient],
    submit: Callable[[Any, SamplingClient], list[Any]],
) -> None:
    client, sampler = parent
    warmups = len(server.ledger.executions("asample"))
    sent_before = len(server.ledger.received("asample"))
    started = time.monotonic()
    refs = submit(ray_instance, sampler)  # max_retries=0: a retried task would sample twice and hide a failure
    wait_for_samples(server, sent_before + WORKERS)
    client.close()  # the driver's client goes mid-sample; the workers' shadow holders go on
    # A worker that hangs fails here; the module's ray.shutdown() then ends it.
    rollouts: list[Rollout] = ray_instance.get(refs, timeout=ALL_DONE_S)
    print(f"{WORKERS} Ray {submit.__name__.strip('_')} x {SAMPLES_PER_WORKER} samples: {time.monotonic() - started:.1f} s")
    with copy_of(sampler) as checker:
        check_every_sample_ran_once(server, checker, rollouts, warmups)


def test_ray_rollout_example_on_the_local_instance(ray_instance: Any) -> None:
    """examples/ray_rollout.py as the README runs it, joining this module's Ray instance (``--ray-address``)."""
    address = ray_instance.get_runtime_context().gcs_address
    done = subprocess.run(
        [sys.executable, "examples/ray_rollout.py", "--local-server", "--workers", "2", "--rounds", "2",
         "--ray-address", address],
        capture_output=True, text=True, timeout=ALL_DONE_S, cwd=_HERE.parents[2], check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rounds = [line for line in done.stdout.splitlines() if line.startswith("round ")]
    assert len(rounds) == 2 and all("from 2 Ray actors" in line for line in rounds), done.stdout
    assert "one session for the driver and every actor: sess-" in done.stdout
