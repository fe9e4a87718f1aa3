"""A SamplingClient pickled into a spawned process samples against the same server, joining the existing session
and sampler (no second create_session), with seq_ids from a high base so they never collide with the parent's."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from sdk_helpers import BASE_MODEL, sample_in_this_process, server_client

from tinkex import types
from tinkex.testing import LocalServer

SHADOW_SEQ_BASE = 1_000_000_000


def test_a_pickled_sampling_client_samples_from_a_spawned_process(server: LocalServer) -> None:
    client = server_client(server)
    try:
        sampler = client.create_sampling_client(base_model=BASE_MODEL)
        sampler.sample(types.ModelInput.from_ints([1, 2]), 1, types.SamplingParams(max_tokens=2)).result(5)
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            child = pool.submit(sample_in_this_process, sampler, [7, 8, 9]).result(timeout=40)
    finally:
        client.close()

    assert child["sampling_session_id"] == sampler.sampling_session_id
    assert child["pid"] != os.getpid()
    assert len(child["tokens"]) == 3
    assert len(server.ledger.received("create_session")) == 1, "the child joined the session instead of making one"
    assert len(server.ledger.received("create_sampling_session")) == 1
    seq_ids = [e.seq_id for e in server.ledger.executions("asample")]
    assert seq_ids[0] == 0
    assert seq_ids[1] is not None and seq_ids[1] >= SHADOW_SEQ_BASE
    assert server.ledger.duplicates_executed() == []
