"""Training and sampling clients created in a forked child are the child's own, and the parent's next creations are
the parent's: the holder's model and sampler counters restart from fresh random blocks in the child.

Why: the server answers a ``create_model`` / ``create_sampling_session`` whose seq_id it has already seen from its
replay cache. With counters copied by fork, the parent's next sampler silently sampled from the child's checkpoint
and the parent's next training client was the child's model (received twice, executed once).
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

import tinkex
from tinkex.testing import LocalServer

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")

MODEL = "tinkex/fake-tiny"
CHILD_LIMIT_S = 60.0


def _child_creates(queue: Any, training: Any, client: tinkex.Client, sampler_path: str) -> None:
    try:
        sampler = training.create_sampling_client(sampler_path)
        model = client.create_lora_training_client(MODEL, rank=4)
        queue.put((sampler.sampling_session_id, model.model_id))
    except BaseException as exc:  # the parent reports what went wrong in the child
        queue.put(repr(exc))


def test_creations_in_a_forked_child_do_not_take_the_parents_next_ids() -> None:
    with LocalServer(base_models=(MODEL,)) as server:
        client = tinkex.Client(api_key="tml-fork-creations", base_url=server.base_url, telemetry=False)
        try:
            training = client.create_lora_training_client(MODEL, rank=4)
            path_a = training.save_weights_for_sampler("a").result(timeout=30).path
            path_b = training.save_weights_for_sampler("b").result(timeout=30).path

            context = multiprocessing.get_context("fork")
            queue = context.Queue()
            child = context.Process(target=_child_creates, args=(queue, training, client, path_b))
            child.start()
            answer = queue.get(timeout=CHILD_LIMIT_S)
            child.join(CHILD_LIMIT_S)
            assert isinstance(answer, tuple), answer
            child_sampler, child_model = answer

            parent_sampler = training.create_sampling_client(path_a).sampling_session_id
            parent_model = client.create_lora_training_client(MODEL, rank=4).model_id
        finally:
            client.close()

        assert parent_sampler != child_sampler
        assert parent_model not in (child_model, training.model_id)
        ledger = server.ledger
        for endpoint in ("create_sampling_session", "create_model"):
            assert len(ledger.received(endpoint)) == len(ledger.executions(endpoint)), endpoint
        sampled = server.call(lambda api: api.registry.sampler(parent_sampler).model_path)
        assert sampled == path_a
