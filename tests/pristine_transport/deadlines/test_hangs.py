"""Nothing waits forever: every answer that never ends, or ends the same way forever, ends within its deadline
with ``DeadlineExceededError``, over real HTTP against a scripted raw-socket server on 127.0.0.1.

Deadlines are set per call with ``deadlines(...)`` (seconds, so the tests are fast); the defaults are in
docs/deadlines.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from scripted_server import RawServer, Request, Writer, endless_chunks, reply, trickle

from pristine_transport.client import ManifestClient
from pristine_transport.deadlines import DeadlineExceededError, deadlines
from pristine_transport.futures import FutureResolver
from pristine_transport.policy import Deadlines
from tinkex.config import load_tinker_manifest
from tinkex.request_size import SIZE_ESTIMATORS

pytestmark = pytest.mark.anyio

ENV = {"TINKER_API_KEY": "tml-deadline-tests", "TINKEX_HTTP_BACKEND": "httpx"}
SLACK_S = 1.0
"""How much later than its deadline a wait may end (scheduling on a busy 2-core machine)."""

RESULT = {"sequences": [{"tokens": [1, 2], "stop_reason": "length"}], "type": "sample"}


@contextlib.asynccontextmanager
async def serving(script: Callable[[Request], Writer]) -> AsyncIterator[tuple[RawServer, FutureResolver]]:
    async with RawServer(script) as server:
        client = ManifestClient(load_tinker_manifest(), base_url=server.url, env=ENV, size_estimators=SIZE_ESTIMATORS)
        resolver = FutureResolver(client)
        try:
            yield server, resolver
        finally:
            await resolver.aclose()
            await client.aclose()


def sample_body(tokens: list[int]) -> dict[str, Any]:
    return {
        "sampling_session_id": "s",
        "seq_id": tokens[0],
        "num_samples": 1,
        "prompt": {"chunks": [{"tokens": tokens, "type": "encoded_text"}]},
        "sampling_params": {"max_tokens": 2},
    }


async def timed(work: Any) -> tuple[float, BaseException | Any]:
    started = time.monotonic()
    try:
        outcome = await work
    except Exception as exc:  # noqa: BLE001 - the outcome under test
        outcome = exc
    return time.monotonic() - started, outcome


async def test_a_server_answering_503_forever_ends_at_the_no_progress_deadline() -> None:
    async with serving(lambda request: reply(503, {"detail": "overloaded"})) as (server, resolver):
        with deadlines(no_progress_s=2.0):
            elapsed, error = await timed(resolver.submit("optim_step", result_type=dict, json={"seq_id": 1}))
    assert isinstance(error, DeadlineExceededError) and isinstance(error, TimeoutError), error
    assert elapsed < 2.0 + SLACK_S
    assert error.deadline == "no_progress" and error.last_seen == "HTTP 503" and error.may_have_run
    assert "optim_step made no progress for" in str(error) and "last answer: HTTP 503" in str(error)
    sends = server.seen("/optim_step")
    assert len(sends) >= 2
    assert len({r.headers["x-idempotency-key"] for r in sends}) == 1  # one logical write, one key
    assert {r.body for r in sends} == {sends[0].body}  # and the same seq_id


async def test_a_trickling_body_cannot_extend_the_attempt() -> None:
    # Each byte arrives well inside any read timeout; only a whole-attempt deadline ends it.
    async with serving(lambda request: trickle(200, 1000, 0.1)) as (server, resolver):
        with deadlines(attempt_s=0.5, no_progress_s=2.0):
            elapsed, error = await timed(resolver.submit("optim_step", result_type=dict, json={"seq_id": 1}))
    assert isinstance(error, DeadlineExceededError), error
    assert elapsed < 2.0 + SLACK_S
    assert error.last_seen == "AttemptDeadline" and error.may_have_run
    assert len(server.seen("/optim_step")) >= 2  # each attempt was cut at 0.5 s and sent again


async def test_a_chunked_body_that_never_ends_cannot_extend_the_attempt() -> None:
    async with serving(lambda request: endless_chunks(200, 0.05)) as (server, resolver):
        with deadlines(attempt_s=0.5, no_progress_s=2.0):
            elapsed, error = await timed(resolver.submit("optim_step", result_type=dict, json={"seq_id": 1}))
    assert isinstance(error, DeadlineExceededError), error
    assert elapsed < 2.0 + SLACK_S


async def test_a_poll_that_trickles_is_cut_and_the_future_ends_with_its_id() -> None:
    def script(request: Request) -> Writer:
        if request.path.endswith("/optim_step"):
            return reply(200, {"request_id": "req-7"})
        return trickle(200, 1000, 0.1)

    async with serving(script) as (server, resolver):
        with deadlines(attempt_s=0.3, no_progress_s=2.0):
            handle = await resolver.submit("optim_step", result_type=dict, json={"seq_id": 1})
            elapsed, error = await timed(handle.result_async())
    assert isinstance(error, DeadlineExceededError), error
    assert elapsed < 2.0 + SLACK_S
    assert error.request_id == "req-7" and "request_id='req-7'" in str(error) and error.may_have_run


async def test_a_poison_sample_fails_after_its_cap_while_other_samples_succeed() -> None:
    def script(request: Request) -> Writer:
        if request.path.endswith("/asample"):
            if request.json()["prompt"]["chunks"][0]["tokens"][0] == 666:
                return reply(500, {"detail": "this prompt crashes the sampler"})
            return reply(200, {"request_id": "req-ok"})
        return reply(200, RESULT)

    async with serving(script) as (server, resolver):
        stop = asyncio.Event()

        async def others() -> int:
            done = 0
            while not stop.is_set():
                handle = await resolver.submit("asample", result_type=dict, json=sample_body([done + 1, 2]))
                await handle
                done += 1
                await asyncio.sleep(0.05)
            return done

        background = asyncio.create_task(others())
        # The no-progress deadline is far; the cap on failures in a row ends the poison sample first.
        with deadlines(no_progress_s=60.0, failed_attempts=3):
            elapsed, error = await timed(resolver.submit("asample", result_type=dict, json=sample_body([666, 1])))
        stop.set()
        succeeded = await background
    assert isinstance(error, DeadlineExceededError), error
    assert error.deadline == "failed_attempts" and error.last_seen == "HTTP 500"
    assert "kept failing while others succeed" in str(error)
    assert len([r for r in server.seen("/asample") if r.json()["seq_id"] == 666]) == 3
    assert succeeded > 0 and elapsed < 10.0


async def test_backpressure_forever_is_bounded_by_the_no_progress_deadline() -> None:
    async with serving(lambda request: reply(429, {"detail": "slow down"})) as (server, resolver):
        with deadlines(no_progress_s=2.5):
            elapsed, error = await timed(resolver.submit("asample", result_type=dict, json=sample_body([1, 2])))
    assert isinstance(error, DeadlineExceededError), error
    assert elapsed < 2.5 + SLACK_S
    assert error.last_seen == "HTTP 429 (backpressure)" and not error.may_have_run
    assert "did not run on the server" in str(error)


async def test_a_429_forever_outside_sampling_ends_too() -> None:
    async with serving(lambda request: reply(429, {"detail": "rate limited"})) as (server, resolver):
        with deadlines(no_progress_s=2.0):
            elapsed, error = await timed(resolver.submit("optim_step", result_type=dict, json={"seq_id": 1}))
    assert isinstance(error, DeadlineExceededError), error
    assert elapsed < 2.0 + SLACK_S and not error.may_have_run


async def test_metadata_only_after_the_full_result_was_asked_for_backs_off() -> None:
    def script(request: Request) -> Writer:
        if request.path.endswith("/optim_step"):
            return reply(200, {"request_id": "req-9"})
        return reply(200, {"status": "complete_metadata", "response_payload_size": 10})

    async with serving(script) as (server, resolver):
        with deadlines(no_progress_s=2.0):
            handle = await resolver.submit("optim_step", result_type=dict, json={"seq_id": 1})
            elapsed, error = await timed(handle.result_async())
    polls = server.seen("/retrieve_future")
    assert isinstance(error, DeadlineExceededError), error
    assert "complete_metadata again" in error.last_seen and error.request_id == "req-9"
    assert elapsed < 2.0 + SLACK_S
    # Without backoff this loop re-polled as fast as the loop could go (thousands in 2 s).
    assert len(polls) <= 12, len(polls)
    assert [p.json()["allow_metadata_only"] for p in polls[:2]] == [True, False]


async def test_a_long_queue_is_progress_and_is_not_cut_off() -> None:
    polls = 0

    def script(request: Request) -> Writer:
        nonlocal polls
        if request.path.endswith("/optim_step"):
            return reply(200, {"request_id": "req-3"})
        polls += 1
        if polls < 8:
            return reply(200, {"type": "try_again", "request_id": "req-3", "queue_state": "paused_capacity"})
        return reply(200, {"ok": True})

    async with serving(script) as (server, resolver):
        with deadlines(no_progress_s=0.5):
            handle = await resolver.submit("optim_step", result_type=dict, json={"seq_id": 1})
            elapsed, result = await timed(handle.result_async())
    assert result == {"ok": True}, result
    assert elapsed > 0.5  # longer than the no-progress deadline: each queue answer was progress


async def test_empty_body_400s_on_a_write_are_re_sent_with_the_same_key_and_seq_id() -> None:
    answers = iter([reply(400), reply(400), reply(200, {"request_id": "req-5"})])

    def script(request: Request) -> Writer:
        if request.path.endswith("/optim_step"):
            return next(answers)
        return reply(200, {"ok": True})

    async with serving(script) as (server, resolver):
        with deadlines(no_progress_s=30.0):
            handle = await resolver.submit("optim_step", result_type=dict, json={"seq_id": 4})
            assert await handle == {"ok": True}
    sends = server.seen("/optim_step")
    assert len(sends) == 3
    assert len({r.headers["x-idempotency-key"] for r in sends}) == 1
    assert [r.json()["seq_id"] for r in sends] == [4, 4, 4]


async def test_deadlines_per_client_and_per_call() -> None:
    async with RawServer(lambda request: reply(503, {"detail": "down"})) as server:
        client = ManifestClient(load_tinker_manifest(), base_url=server.url, env=ENV, size_estimators=SIZE_ESTIMATORS)
        resolver = FutureResolver(client, deadlines=Deadlines(no_progress_s=1.5))  # this client's default
        try:
            elapsed, error = await timed(resolver.submit("optim_step", result_type=dict, json={"seq_id": 1}))
            assert isinstance(error, DeadlineExceededError) and 1.0 < elapsed < 1.5 + SLACK_S, (elapsed, error)
            with deadlines(no_progress_s=0.6):  # a call's scope wins over the client's default
                elapsed, error = await timed(resolver.submit("optim_step", result_type=dict, json={"seq_id": 2}))
            assert isinstance(error, DeadlineExceededError) and elapsed < 0.6 + SLACK_S, (elapsed, error)
        finally:
            await resolver.aclose()
            await client.aclose()
