"""The server's ``parallel_fwdbwd_chunks`` flag: a batch's chunks submitted together when it is on, one after another
when it is off, on a real loopback LocalServer whose ``forward_backward`` submits are slowed down (a delay fault),
so that what overlaps on the server can be read from its ledger. Also: the dispatch decisions by table, results
combined in chunk order, the per-chunk report of a batch sent together, cancellation and deadlines releasing the
model's turn, and a strict-sequence server (which says the flag is off)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sdk_helpers import API_KEY, BASE_MODEL

import tinkex
from tinkex import types
from tinkex.chunking import chunks_together, first_chunk_held_back, give_back_from, together_waves
from tinkex.errors import ChunkedRequestError
from tinkex.estimate import estimate_datum_bytes
from tinkex.testing import FaultRule, LocalServer
from tinkex.types import ClientConfigResponse as Flags

CHUNKS = 8
SUBMIT_DELAY_S = 0.3
"""How long the server holds each forward_backward submit before running it (and answering its future id)."""


# decisions, by table ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "count", "together"),
    [
        (Flags(), 2, True),  # the official default: on
        (Flags(parallel_fwdbwd_chunks=True), 8, True),
        (Flags(parallel_fwdbwd_chunks=False), 8, False),
        (Flags(), 1, False),  # one chunk: nothing to overlap
        (None, 8, False),  # no flags (a 0.16 server, forced 0.16): as 0.16 sends them
    ],
)
def test_chunks_go_together_only_when_the_server_says_so(flags: Flags | None, count: int, together: bool) -> None:
    assert chunks_together(flags, count) is together


@pytest.mark.parametrize(
    ("count", "waves"), [(1, [[0]]), (2, [[1], [0]]), (4, [[1, 2, 3], [0]])]
)
def test_the_first_chunk_goes_last(count: int, waves: list[list[int]]) -> None:
    assert together_waves(count) == waves


@pytest.mark.parametrize(
    ("others", "held_back"),
    [
        ([None, None], False),  # all accepted
        (["did_not_run", None], False),  # some ran: the first goes too, so the accepted ones can run after it
        (["may_have_run", "did_not_run"], False),  # maybe ran: its seq_id is used, a gap either way
        (["did_not_run", "did_not_run"], True),  # none ran: sending the first would run it alone
    ],
)
def test_the_first_chunk_is_held_back_only_when_no_other_ran(others: list[str | None], held_back: bool) -> None:
    assert first_chunk_held_back(others) is held_back  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outcomes", "start"),
    [
        ([None, None, None], None),
        ([None, None, "did_not_run"], 2),
        ([None, "did_not_run", "did_not_run"], 1),
        (["did_not_run", "did_not_run", "did_not_run"], 0),
        ([None, "did_not_run", None], None),  # a later chunk was accepted: the refused one's seq_id stays used
        ([None, "did_not_run", "may_have_run"], None),
    ],
)
def test_only_a_trailing_run_of_chunks_that_did_not_run_gives_its_seq_ids_back(
    outcomes: list[str | None], start: int | None
) -> None:
    assert give_back_from(outcomes) == start  # type: ignore[arg-type]


# on the wire -----------------------------------------------------------------------------------------------------
def datum(length: int) -> types.Datum:
    """A datum of ``length`` tokens: its output's logprobs have that length, which tells the outputs apart."""
    tokens = [(i % 50) + 1 for i in range(length)]
    return types.Datum(model_input=types.ModelInput.from_ints(tokens), loss_fn_inputs={"target_tokens": tokens})


BATCH = [datum(length) for length in range(1, CHUNKS + 1)]


def slow_submits(count: int = CHUNKS) -> FaultRule:
    return FaultRule(endpoint="forward_backward", delay=SUBMIT_DELAY_S, count=count)


def client_of(server: LocalServer) -> tinkex.Client:
    return tinkex.Client(api_key=API_KEY, base_url=server.base_url, telemetry=False)


def most_in_flight(server: LocalServer) -> int:
    """The most forward_backward submits the server held at once: received and not yet run (the delay fault sleeps
    between the two), counted at each arrival."""
    arrivals = sorted(r.time for r in server.ledger.received("forward_backward"))
    runs = sorted(e.time for e in server.ledger.executions() if e.endpoint in ("forward_backward", "forward"))
    return max(sum(1 for a in arrivals if a <= t) - sum(1 for r in runs if r <= t) for t in arrivals)


def run_seq_ids(server: LocalServer, model_id: str) -> list[tuple[str, int | None]]:
    """The model's training requests the server ran, in the order it ran them, with their seq_ids."""
    return [(e.endpoint, e.seq_id) for e in server.ledger.executions(model_id=model_id) if e.endpoint != "create_model"]


def logprob_lengths(output: types.ForwardBackwardOutput) -> list[int]:
    return [len(item["logprobs"].data) for item in output.loss_fn_outputs]


@pytest.mark.parametrize("parallel", [True, False], ids=["flag_on", "flag_off"])
def test_chunks_overlap_on_the_server_only_with_the_flag_on_and_combine_in_order(parallel: bool) -> None:
    flags = Flags(fwdbwd_max_chunk_len=1, parallel_fwdbwd_chunks=parallel)
    with LocalServer(client_config=flags, faults=[slow_submits()]) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL, rank=4).result(30)
            started = time.perf_counter()
            output = training.forward(BATCH, "cross_entropy").result(30)
            elapsed = time.perf_counter() - started
            training.optim_step(types.AdamParams(learning_rate=1e-3)).result(30)
            in_flight = most_in_flight(server)
            ran = run_seq_ids(server, training.model_id)
        finally:
            client.close()
    assert logprob_lengths(output) == list(range(1, CHUNKS + 1)), "outputs in the caller's order"
    if parallel:
        # Every chunk but the first held by the server at once; the first sent once they had their future ids.
        assert in_flight == CHUNKS - 1
        assert sorted(seq for _, seq in ran[: CHUNKS - 1]) == list(range(2, CHUNKS + 1))
        assert ran[CHUNKS - 1 :] == [("forward", 1), ("optim_step", CHUNKS + 1)]
        assert elapsed < (CHUNKS - 2) * SUBMIT_DELAY_S  # two waves of submits, not eight
    else:
        assert in_flight == 1
        assert ran == [("forward", seq) for seq in range(1, CHUNKS + 1)] + [("optim_step", CHUNKS + 1)]
        assert elapsed >= CHUNKS * SUBMIT_DELAY_S


def test_the_async_methods_send_chunks_together_on_the_callers_loop() -> None:
    flags = Flags(fwdbwd_max_chunk_len=1, parallel_fwdbwd_chunks=True)
    with LocalServer(client_config=flags, faults=[slow_submits()]) as server:
        client = client_of(server)
        try:

            async def train() -> types.ForwardBackwardOutput:
                training = await client.create_lora_training_client_async(BASE_MODEL, rank=4)
                return await (await training.forward_backward_async(BATCH, "cross_entropy"))

            output = asyncio.run(train())
            in_flight = most_in_flight(server)
        finally:
            client.close()
    assert logprob_lengths(output) == list(range(1, CHUNKS + 1))
    assert in_flight == CHUNKS - 1


def test_the_combined_result_is_the_same_either_way() -> None:
    outputs = []
    for parallel in (True, False):
        flags = Flags(fwdbwd_max_chunk_len=3, parallel_fwdbwd_chunks=parallel)
        with LocalServer(client_config=flags) as server:
            client = client_of(server)
            try:
                training = client.create_lora_training_client(BASE_MODEL, rank=4).result(30)
                outputs.append(training.forward_backward(BATCH, "cross_entropy").result(30))
                assert len(server.ledger.executions("forward_backward")) == 3
            finally:
                client.close()
    together, one_by_one = outputs
    assert logprob_lengths(together) == logprob_lengths(one_by_one) == list(range(1, CHUNKS + 1))
    assert together.loss_fn_outputs == one_by_one.loss_fn_outputs
    assert together.metrics == pytest.approx(one_by_one.metrics)


# the per-chunk report of a batch sent together --------------------------------------------------------------------
def together_flags() -> Flags:
    return Flags(fwdbwd_max_chunk_len=1, parallel_fwdbwd_chunks=True)


def test_a_refused_later_chunk_is_reported_and_the_first_still_goes() -> None:
    refuse_one = FaultRule(endpoint="forward_backward", status=400, body={"detail": "chunk refused"}, count=1)
    batch = BATCH[:4]
    with LocalServer(client_config=together_flags(), faults=[refuse_one]) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL, rank=4).result(30)
            with pytest.raises(ChunkedRequestError) as caught:
                training.forward_backward(batch, "cross_entropy").result(30)
            training.optim_step(types.AdamParams(learning_rate=1e-3)).result(30)
            ran = run_seq_ids(server, training.model_id)
        finally:
            client.close()
    error = caught.value
    failed = [c for c in error.chunks if c.state == "failed"]
    assert len(failed) == 1 and failed[0].index != 0 and failed[0].outcome == "did_not_run"
    assert [c.state for c in error.chunks if c is not failed[0]] == ["ran"] * 3
    # The report is the server's truth: what it ran is exactly what is reported as ran.
    reported_ran = {c.seq_id for c in error.chunks if c.state == "ran"}
    assert {seq for endpoint, seq in ran if endpoint == "forward_backward"} == reported_ran
    assert error.data_not_run() == [(failed[0].data_start, failed[0].data_stop)]
    last_refused = failed[0].index == len(batch) - 1
    # A refused last chunk gives its seq_id back; one in the middle stays used (a gap the later ones sit after).
    assert ran[-1] == ("optim_step", failed[0].seq_id if last_refused else len(batch) + 1)
    message = str(error)
    assert "sent together with the rest of its batch" in message and "chunk refused" in message
    assert ("goes to this model's next requests" in message) is last_refused


def test_when_every_later_chunk_is_refused_the_first_is_not_sent_and_no_seq_id_is_used() -> None:
    refuse = FaultRule(endpoint="forward_backward", status=400, body={"detail": "chunk refused"}, count=3)
    with LocalServer(client_config=together_flags(), faults=[refuse]) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL, rank=4).result(30)
            with pytest.raises(ChunkedRequestError) as caught:
                training.forward_backward(BATCH[:4], "cross_entropy").result(30)
            training.optim_step(types.AdamParams(learning_rate=1e-3)).result(30)
            ran = run_seq_ids(server, training.model_id)
            statuses = [r.status for r in server.ledger.received("forward_backward")]
        finally:
            client.close()
    error = caught.value
    assert [c.state for c in error.chunks] == ["not_sent", "failed", "failed", "failed"]
    assert {c.outcome for c in error.chunks} == {"did_not_run"} and error.data_not_run() == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert statuses == [400, 400, 400], "the first chunk never went out"
    assert ran == [("optim_step", 1)], "the whole batch's seq_ids went back: no gap"
    assert "chunk 0 (data[0:1]) was not sent" in str(error)


def test_a_refused_first_chunk_leaves_the_others_ran() -> None:
    refuse_first = FaultRule(endpoint="forward_backward", status=400, body={"detail": "first refused"}, skip=3)
    with LocalServer(client_config=together_flags(), faults=[refuse_first]) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL, rank=4).result(30)
            with pytest.raises(ChunkedRequestError) as caught:
                training.forward_backward(BATCH[:4], "cross_entropy").result(30)
            ran = run_seq_ids(server, training.model_id)
        finally:
            client.close()
    error = caught.value
    assert [c.state for c in error.chunks] == ["failed", "ran", "ran", "ran"]
    assert error.chunks[0].seq_id == 1 and error.outcome == "did_not_run"
    assert sorted(seq for _, seq in ran) == [2, 3, 4]
    assert "seq_id 1 of model" in str(error) and "which stays used" in str(error)


def test_a_chunk_whose_future_fails_is_reported_beside_the_others() -> None:
    fail_one = FaultRule(endpoint="forward_backward", kind="request_failed", message="chunk blew up", count=1)
    with LocalServer(client_config=together_flags(), faults=[fail_one]) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL, rank=4).result(30)
            with pytest.raises(ChunkedRequestError) as caught:
                training.forward_backward(BATCH[:4], "cross_entropy").result(30)
        finally:
            client.close()
    error = caught.value
    assert sorted(c.state for c in error.chunks) == ["failed", "ran", "ran", "ran"]
    assert {c.outcome for c in error.chunks} == {"ran"} and all(c.request_id for c in error.chunks)
    assert "ran and failed: Request failed: chunk blew up" in str(error)


# cancellation and deadlines --------------------------------------------------------------------------------------
def test_a_batch_cancelled_while_its_chunks_are_submitted_releases_the_models_turn_and_byte_budget() -> None:
    hold_s = 2.0
    hold = FaultRule(endpoint="forward_backward", delay=hold_s, count=CHUNKS - 1)  # the cancelled batch's submits
    # A dispatch byte budget that the cancelled submits fill up (all of it): a permit they kept would stall the next batch.
    budget = sum(estimate_datum_bytes(d) for d in BATCH[1:])
    flags = Flags(fwdbwd_max_chunk_len=1, parallel_fwdbwd_chunks=True, fwdbwd_dispatch_bytes_semaphore_size=budget)
    with LocalServer(client_config=flags, faults=[hold]) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL, rank=4).result(30)
            pending = training.forward_backward(BATCH, "cross_entropy")
            deadline = time.monotonic() + 5
            while len(server.ledger.received("forward_backward")) < CHUNKS - 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert pending.cancel()
            started = time.monotonic()
            step = training.optim_step(types.AdamParams(learning_rate=1e-3)).result(30)
            waited = time.monotonic() - started
            time.sleep(hold_s + 0.5)  # a submit left running would have been answered by now, and the first sent
            received = len(server.ledger.received("forward_backward"))
            again = training.forward_backward(BATCH, "cross_entropy").result(30)
        finally:
            client.close()
    assert step is not None
    assert waited < hold_s - 0.5, "the step did not wait for the cancelled submits' answers"
    assert received == CHUNKS - 1, "the first chunk was never sent"
    assert logprob_lengths(again) == list(range(1, CHUNKS + 1)), "the budget came back whole"


def test_a_deadline_ends_a_batch_sent_together_and_the_model_goes_on() -> None:
    hold_s = 5.0
    hold = FaultRule(endpoint="forward_backward", delay=hold_s, count=100)  # every attempt, re-sends too
    with LocalServer(client_config=together_flags(), faults=[hold]) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL, rank=4).result(30)
            started = time.monotonic()
            with tinkex.deadlines(attempt_s=0.5, no_progress_s=1.0, failed_attempts=1):
                with pytest.raises(ChunkedRequestError) as caught:
                    training.forward_backward(BATCH[:4], "cross_entropy").result(30)
            elapsed = time.monotonic() - started
            training.optim_step(types.AdamParams(learning_rate=1e-3)).result(30)
            ran = run_seq_ids(server, training.model_id)
        finally:
            client.close()
    error = caught.value
    assert elapsed < hold_s - 0.5, "the deadline, not the server, ended the batch"
    assert {c.state for c in error.chunks} == {"failed"} and {c.outcome for c in error.chunks} == {"may_have_run"}
    assert "may have run" in str(error)
    assert ran[-1] == ("optim_step", 5), "seq_ids that may have run stay used"


# a strict-sequence server ----------------------------------------------------------------------------------------
def test_a_strict_sequence_server_says_the_flag_is_off_and_gets_its_chunks_in_order() -> None:
    with LocalServer(strict_sequence=True, client_config=together_flags(), faults=[slow_submits(4)]) as server:
        with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}) as http:
            answered = http.post("/api/v1/client/config", json={"sdk_version": "0.38.0"}).json()
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL, rank=4).result(30)
            output = training.forward_backward(BATCH[:4], "cross_entropy").result(30)
            in_flight = most_in_flight(server)
            ran = run_seq_ids(server, training.model_id)
            statuses = {r.status for r in server.ledger.received("forward_backward")}
        finally:
            client.close()
    assert answered["parallel_fwdbwd_chunks"] is False and answered["fwdbwd_max_chunk_len"] == 1
    assert logprob_lengths(output) == [1, 2, 3, 4]
    assert in_flight == 1 and ran == [("forward_backward", seq) for seq in (1, 2, 3, 4)]
    assert statuses == {200}, "no 409"
