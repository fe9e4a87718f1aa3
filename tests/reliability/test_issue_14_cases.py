"""Issue 14, one test per numbered case, against a real LocalServer over HTTP: what the caller is told (error type,
``outcome`` and message) and what the server's ledger says ran.

1. an expired forward_backward future: the step ran; do not submit it again; continue.
2. an optim_step that ran, whose answer was lost (503) and whose re-send got an empty 400: "may have run".
3. a chunked batch with a refused chunk: per chunk, which ran, which failed, which were not sent.
4. a request refused before it ran leaves no gap in the model's seq_ids (a strict-sequence server would answer
   every later request 409 otherwise).
5. a sampler path this client cannot parse goes to the server, which may accept it.
6. a LocalServer restarted on its state directory repeats no id and answers the earlier futures with their results.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from reliability_helpers import API_KEY, BASE_MODEL, client_of, datum, ran, refused

import tinkex
from pristine_transport.policy import RetryBudget
from tinkex import types
from tinkex.errors import ChunkedRequestError
from tinkex.testing import FaultRule, LocalServer

BOUNDED = {"no_progress_s": 15.0}
"""A regression (a 409 cascade re-sent for the official 300 s) fails in seconds instead."""


def test_case_1_an_expired_forward_backward_ran_and_must_not_be_submitted_again() -> None:
    expire = FaultRule.expired(future_endpoint="forward_backward")
    with LocalServer(faults=[expire], strict_sequence=True) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL).result()
            with tinkex.deadlines(**BOUNDED):
                with pytest.raises(tinkex.FutureExpiredError) as caught:
                    training.forward_backward([datum([1, 2, 3])], "cross_entropy").result(10)
                training.optim_step(types.AdamParams(learning_rate=1e-3)).result(10)  # how to continue: the next step
        finally:
            client.close()
    error = caught.value
    assert error.outcome == "ran" and error.changes_state
    message = str(error)
    for phrase in ("the ForwardBackward request ran on the server", "do not submit it again", "apply it twice",
                   "continue with the next step", "only the returned result is lost"):
        assert phrase in message, (phrase, message)
    assert "submit it again only" not in message
    assert ran(server, training.model_id) == [("forward_backward", 1), ("optim_step", 2)], "ran once, not re-sent"


def test_case_1_an_expired_forward_changed_nothing_and_may_be_sent_again_for_its_result() -> None:
    expire = FaultRule.expired(future_endpoint="forward")
    with LocalServer(faults=[expire]) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL).result()
            with pytest.raises(tinkex.FutureExpiredError) as caught:
                training.forward([datum([1, 2, 3])], "cross_entropy").result(10)
        finally:
            client.close()
    assert caught.value.outcome == "ran" and not caught.value.changes_state
    assert "submit it again only if you need its result" in str(caught.value)
    assert ran(server, training.model_id) == [("forward", 1)]


@pytest.mark.parametrize("ends_with", ["bare_400_budget_spent", "no_progress_deadline"])
def test_case_2_an_optim_step_whose_answer_was_lost_and_whose_resend_got_an_empty_400_may_have_run(
    ends_with: str,
) -> None:
    lost = FaultRule(endpoint="optim_step", status=503, after_execute=True, count=1)
    proxy = FaultRule(endpoint="optim_step", status=400, body=b"", skip=1, count=1000)  # every re-send
    scope = (
        {"budget": RetryBudget(bare_400_retries=0)}  # the empty-400 budget is spent: the 400 is final
        if ends_with == "bare_400_budget_spent"
        else {"no_progress_s": 2.0}  # re-sent as connection failures until the deadline
    )
    with LocalServer(faults=[lost, proxy], strict_sequence=True) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL).result()
            with tinkex.deadlines(**scope):
                with pytest.raises(tinkex.APIError) as caught:
                    training.optim_step(types.AdamParams(learning_rate=1e-3)).result(30)
            with tinkex.deadlines(**BOUNDED):
                training.forward_backward([datum([1, 2])], "cross_entropy").result(10)  # the sequence goes on
        finally:
            client.close()
    error = caught.value
    expected_type = tinkex.BadRequestError if ends_with == "bare_400_budget_spent" else tinkex.DeadlineExceededError
    assert type(error) is expected_type
    assert error.outcome == "may_have_run"
    message = str(error)
    for phrase in ("may have run on the server", "check whether it took effect",
                   "optim_step had seq_id 1", "stays used", "sent from seq_id 2"):
        assert phrase in message, (phrase, message)
    statuses = refused(server, "optim_step")
    assert statuses[:2] == [503, 400] and set(statuses[1:]) == {400}
    assert ran(server, training.model_id) == [("optim_step", 1), ("forward_backward", 2)], "it did run, once"


def test_case_3_a_chunked_batch_says_which_chunks_ran_failed_and_were_not_sent() -> None:
    refuse_second = FaultRule(endpoint="forward_backward", status=400, body={"detail": "chunk refused"}, skip=1)
    batch = [datum([i % 50 + 1, i % 7 + 1]) for i in range(2049)]  # 1024 + 1024 + 1: three chunks
    with LocalServer(faults=[refuse_second], strict_sequence=True) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL).result()
            with tinkex.deadlines(**BOUNDED):
                with pytest.raises(ChunkedRequestError) as caught:
                    training.forward_backward(batch, "cross_entropy").result(30)
                training.optim_step(types.AdamParams(learning_rate=1e-3)).result(10)
        finally:
            client.close()
    error = caught.value
    assert [c.state for c in error.chunks] == ["ran", "failed", "not_sent"]
    assert [c.outcome for c in error.chunks] == ["ran", "did_not_run", "did_not_run"]
    assert [c.seq_id for c in error.chunks] == [1, 2, None] and error.outcome == "did_not_run"
    assert error.data_not_run() == [(1024, 2048), (2048, 2049)]
    assert isinstance(error.__cause__, tinkex.BadRequestError)
    message = str(error)
    for phrase in ("forward_backward of 2049 data in 3 chunks", "chunk 0 (data[0:1024], seq_id 1) ran",
                   "chunk 1 (data[1024:2048], seq_id 2) did not run: Error code: 400", "chunk refused",
                   "the 1 later chunk(s) of its batch were held back (not sent)",
                   "seq_id 2 goes to this model's next request", "the requests after the batch are sent in order",
                   "chunk 2 (data[2048:2049]) was not sent", "chunk(s) 0 ran and stay applied to the model",
                   "submit only data[1024:2048], data[2048:2049]"):
        assert phrase in message, (phrase, message)
    # the refused chunk's seq_id 2 went to the optim_step: no gap, no 409 from the strict server
    assert ran(server, training.model_id) == [("forward_backward", 1), ("optim_step", 2)]
    assert refused(server, "forward_backward") == [200, 400]


def test_case_3_a_chunk_whose_future_fails_is_reported_beside_the_chunks_that_ran() -> None:
    fail_second = FaultRule(endpoint="forward_backward", kind="request_failed", message="chunk blew up", skip=1)
    batch = [datum([i % 50 + 1]) for i in range(2049)]
    # One after another, so the second chunk is the second to arrive (the fault's skip=1); sent together, any of the
    # later chunks may arrive first (tests/tinkex/sdk/test_parallel_chunks covers that mode).
    serial = types.ClientConfigResponse(parallel_fwdbwd_chunks=False)
    with LocalServer(faults=[fail_second], client_config=serial) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL).result()
            with pytest.raises(ChunkedRequestError) as caught:
                training.forward_backward(batch, "cross_entropy").result(30)
        finally:
            client.close()
    error = caught.value
    assert [c.state for c in error.chunks] == ["ran", "failed", "ran"]
    assert [c.outcome for c in error.chunks] == ["ran", "ran", "ran"] and error.data_not_run() == []
    assert all(c.request_id for c in error.chunks)
    message = str(error)
    for phrase in ("chunk 1 (data[1024:2048], seq_id 2) ran and failed: Request failed: chunk blew up",
                   "chunk(s) 0, 2 ran and stay applied to the model: do not submit them again",
                   "chunk(s) 1 ran on the server and failed there"):
        assert phrase in message, (phrase, message)
    assert ran(server, training.model_id) == [("forward_backward", 1), ("forward_backward", 2), ("forward_backward", 3)]


@pytest.mark.parametrize("refusal", ["validation_400", "unsupported_body_415"])
def test_case_4_a_request_refused_before_it_ran_leaves_no_gap_in_the_sequence(refusal: str) -> None:
    """A strict-sequence server answers 409 to any seq_id but the next; the later requests all run."""
    options = {"json_training_bodies": False} if refusal == "unsupported_body_415" else {}
    with LocalServer(strict_sequence=True, **options) as server:
        client = client_of(server, dialect="0.16")  # JSON bodies: a protobuf-only server refuses them with 415
        try:
            training = client.create_lora_training_client(BASE_MODEL).result()
            with tinkex.deadlines(**BOUNDED):
                # submitted back to back: the later ones wait behind the refused one, then go
                if refusal == "validation_400":
                    refused_future = training.optim_step(types.AdamParams(learning_rate=-1.0))
                else:
                    refused_future = training.forward_backward([datum([1, 2])], "cross_entropy")
                later = [
                    training.optim_step(types.AdamParams(learning_rate=1e-3)),
                    training.save_state("after-refusal"),
                    training.optim_step(types.AdamParams(learning_rate=1e-3)),
                ]
                results = [future.result(10) for future in later]
                with pytest.raises(tinkex.APIStatusError) as caught:
                    refused_future.result(10)
        finally:
            client.close()
    error = caught.value
    assert error.status_code == (400 if refusal == "validation_400" else 415)
    assert error.outcome == "did_not_run"
    message = str(error)
    endpoint = "optim_step" if refusal == "validation_400" else "forward_backward"
    for phrase in (f"POST /api/v1/{endpoint} did not run on the server", f"{endpoint} had seq_id 1 of model",
                   "seq_id 1 goes to this model's next request", "the requests after it are sent in order"):
        assert phrase in message, (phrase, message)
    assert results[1].path.endswith("/weights/after-refusal")
    assert ran(server, training.model_id) == [("optim_step", 1), ("save_weights", 2), ("optim_step", 3)]
    assert 409 not in [r.status for r in server.ledger.received()], "no sequence conflict anywhere"


def test_case_4_the_strict_server_does_answer_a_gap_with_409() -> None:
    """The mode proves something: a client that skipped a seq_id is refused, naming expected and got."""
    with LocalServer(strict_sequence=True) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL).result()
            training.optim_step(types.AdamParams(learning_rate=1e-3)).result(10)
            with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}) as http:
                body = {"adam_params": {"learning_rate": 1e-3}, "model_id": training.model_id, "seq_id": 3}
                gap = http.post("/api/v1/optim_step", json=body)
                body["seq_id"] = 1
                replayed = http.post("/api/v1/optim_step", json=body)  # a re-send of what ran: replayed, no 409
        finally:
            client.close()
    assert gap.status_code == 409 and "expected seq_id 2, got 3" in gap.text
    assert replayed.status_code == 200
    assert ran(server, training.model_id) == [("optim_step", 1)]


def test_case_5_a_sampler_path_this_client_cannot_parse_goes_to_the_server_which_may_accept_it() -> None:
    unusual = "tinker://run-x/sampler_weights/team/nested/step-7"  # more segments than the client's parser knows
    third_party = FaultRule(endpoint="create_sampling_session", status=200, body={"sampling_session_id": "tp:sample:0"})
    with LocalServer(faults=[third_party]) as server:
        client = client_of(server)
        try:
            sampler = client.create_sampling_client(model_path=unusual).result()
        finally:
            client.close()
    assert sampler.sampling_session_id == "tp:sample:0"
    assert refused(server, "create_sampling_session") == [200], "sent, and the server's answer is what counts"


def test_case_6_a_restarted_local_server_repeats_no_id_and_answers_earlier_futures(tmp_path: Path) -> None:
    first_ids: set[str]
    with LocalServer(state_dir=tmp_path) as server:
        client = client_of(server)
        try:
            training = client.create_lora_training_client(BASE_MODEL).result()
            first = training.forward_backward([datum([1, 2, 3])], "cross_entropy").result(10)
            training.optim_step(types.AdamParams(learning_rate=1e-3)).result(10)
        finally:
            client.close()
        first_run = server.ledger.executions()
        first_ids = {e.request_id for e in first_run if e.request_id is not None}
        step_id = next(e.request_id for e in first_run if e.endpoint == "forward_backward")

    with LocalServer(state_dir=str(tmp_path)) as server:  # the same directory, given as text
        client = client_of(server)
        try:
            again = client.create_lora_training_client(BASE_MODEL).result()
            again.forward_backward([datum([4, 5])], "cross_entropy").result(10)
        finally:
            client.close()
        with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}) as http:
            old = http.post("/api/v1/retrieve_future", json={"request_id": step_id})
        second_run = server.ledger.executions()
    second_ids = {e.request_id for e in second_run if e.request_id is not None} - first_ids
    assert second_ids and not second_ids & first_ids, "no request id of the first run is handed out again"
    assert [e.request_id for e in second_run[: len(first_run)]] == [e.request_id for e in first_run], "ledger kept"
    assert old.status_code == 200 and old.json()["metrics"] == first.metrics, "the earlier future, its own result"
    assert again.model_id != training.model_id
