"""pristine_transport alone: an error about a write carries the write's outcome over every attempt the retry layer
made (field and message); an error about a read carries none. Through ManifestClient and a scripted transport."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import httpx
import pytest

from pristine_transport.client import ManifestClient
from pristine_transport.errors import APIConnectionError, APIStatusError, BadRequestError
from pristine_transport.policy import CALL_DEADLINES

pytestmark = pytest.mark.anyio

Answer = Callable[[httpx.Request], httpx.Response]

MANIFEST = {
    "name": "outcomes",
    "base_url": {"default": "http://api.test"},
    "retry_policies": {
        "quick": {"kind": "standard", "max_retries": 2, "initial_delay_s": 0.0, "max_delay_s": 0.0,
                  "retry_statuses": [409], "retry_server_errors": True, "retry_connection_errors": True},
    },
    "default_retry": "quick",
    "endpoints": {
        "write": {"method": "POST", "path": "/v1/write"},
        "read": {"method": "GET", "path": "/v1/read"},
        "write_once": {"method": "POST", "path": "/v1/write_once", "retry": {"policy": "quick", "max_retries": 0}},
    },
}


def scripted(*answers: int | bytes | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """Answers in order (the last repeats): a status (JSON body), ``bytes`` (a 400 with that body), or a failure."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, bytes):
            return httpx.Response(400, content=answer)
        return httpx.Response(answer, json={"detail": f"answer {len(seen)}"})

    return httpx.MockTransport(handle), seen


def client(transport: httpx.MockTransport) -> ManifestClient:
    return ManifestClient(MANIFEST, base_transport=transport, env={}, deadlines=CALL_DEADLINES)


@pytest.mark.parametrize(
    ("answers", "outcome", "error_type"),
    [
        ((503, b""), "may_have_run", BadRequestError),  # ran, answer lost; the re-send refused by a proxy
        ((422,), "did_not_run", APIStatusError),  # refused before it ran
        ((b"",), "did_not_run", BadRequestError),  # a proxy's empty 400 (re-sent here once: no budget token)
        ((409, 409, 409), "may_have_run", APIStatusError),
        ((httpx.ConnectError("refused"),), "did_not_run", APIConnectionError),
        ((httpx.ReadTimeout("slow"), httpx.ConnectError("refused")), "may_have_run", APIConnectionError),
    ],
)
async def test_the_outcome_is_judged_over_every_attempt(
    answers: tuple[int | bytes | Exception, ...], outcome: str, error_type: type[Exception]
) -> None:
    transport, seen = scripted(*answers)
    async with client(transport) as api:
        with pytest.raises(error_type) as caught:
            await api.call("write", json={"x": 1})
    error = caught.value
    assert error.outcome == outcome  # type: ignore[attr-defined]
    words = outcome.replace("_", " ")
    assert f"POST /v1/write {words} on the server" in str(error)
    assert len(seen) >= len(answers) - (1 if outcome == "did_not_run" and answers == (b"",) else 0)
    assert pickle.loads(pickle.dumps(error)).outcome == outcome  # type: ignore[attr-defined]


async def test_a_write_without_re_sends_is_judged_by_its_one_answer() -> None:
    transport, _ = scripted(503)
    async with client(transport) as api:
        with pytest.raises(APIStatusError) as caught:
            await api.call("write_once", json={})
    assert caught.value.outcome == "may_have_run" and "may have run on the server" in caught.value.message


async def test_a_read_carries_no_outcome() -> None:
    transport, _ = scripted(404)
    async with client(transport) as api:
        with pytest.raises(APIStatusError) as caught:
            await api.call("read")
    assert caught.value.outcome is None
    assert caught.value.message == 'Error code: 404 - {"detail":"answer 1"}'
