"""What every fan-out test checks in the parent once its workers are done, and the waits they share."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fanout_workers import SAMPLES_PER_WORKER, WORKER_DEADLINE_S, Rollout, prompt_text, sampling_params

from tinkex import types
from tinkex.sampling_client import SamplingClient
from tinkex.testing import LocalServer

WORKERS = 8
SAMPLE_LATENCY_S = 0.15
"""Each sample's future resolves this late, so the parent's close lands while workers are mid-sample."""
ALL_DONE_S = 120.0
"""The whole fan-out's deadline (8 new interpreters importing tinkex on a loaded 2-core machine included)."""
API_KEY = "tml-fanout"


def wait_for_samples(server: LocalServer, count: int, deadline_s: float = ALL_DONE_S) -> None:
    """Until the server has received ``count`` samples in all (the workers are under way)."""
    deadline = time.monotonic() + deadline_s
    while len(server.ledger.received("asample")) < count:
        assert time.monotonic() < deadline, f"the workers sent {len(server.ledger.received('asample'))} samples"
        time.sleep(0.02)


@contextmanager
def copy_of(sampler: SamplingClient) -> Iterator[SamplingClient]:
    """A client of ``sampler``'s sampler in this process, in the same session (the parent's own is closed)."""
    copy = SamplingClient.from_sampler_handle(sampler.get_sampler_handle(), api_key=API_KEY)
    try:
        yield copy
    finally:
        copy.holder.close()


def check_every_sample_ran_once(
    server: LocalServer, sampler: SamplingClient, rollouts: list[Rollout], warmups: int
) -> None:
    """The server's ledger: one session, each worker sample executed once (none answered from the replay cache,
    none re-sent), and the answers the parent got are those of the prompts it asked (not another worker's).
    ``sampler`` must be usable (it samples again to compare)."""
    ledger = server.ledger
    assert sorted(r.worker for r in rollouts) == list(range(WORKERS))
    assert all(r.pid != os.getpid() for r in rollouts)
    assert all(len(r.responses) == SAMPLES_PER_WORKER for r in rollouts)
    # One session: the parent's, which every worker joined.
    session_id = sampler.holder.known_session_id()
    assert session_id is not None
    assert server.call(lambda api: list(api.registry.sessions)) == [session_id]
    assert len(ledger.received("create_session")) == 1
    assert {r.session_id for r in rollouts} == {session_id}
    assert {r.sampling_session_id for r in rollouts} == {sampler.sampling_session_id}
    # Exactly once: as many executions as samples asked for, each received once, no identity run twice.
    executions = ledger.executions("asample")
    assert len(executions) == warmups + WORKERS * SAMPLES_PER_WORKER
    assert len(ledger.received("asample")) == len(executions)
    assert ledger.duplicates_executed() == []
    assert len({(e.seq_scope, e.seq_id) for e in executions}) == len(executions)
    assert {e.session_id for e in executions} == {session_id}
    # The answers back in the parent are each prompt's own: the same seeded sample made here agrees.
    tokenizer = sampler.get_tokenizer()
    for r in rollouts:
        assert r.prompts == [prompt_text(r.worker, index) for index in range(SAMPLES_PER_WORKER)]
    checked = [(r.worker, index, r.responses[index]) for r in rollouts for index in (0, SAMPLES_PER_WORKER - 1)]
    for worker, index, response in checked:
        prompt = types.ModelInput.from_ints(tokenizer.encode(prompt_text(worker, index)))
        expected = sampler.sample(prompt, 1, sampling_params(worker, index)).result(timeout=WORKER_DEADLINE_S)
        assert response.sequences[0].tokens == expected.sequences[0].tokens, (worker, index)
