"""A second API's retry rules: the library (library_manifest.json, no tinkex) states two waits as data, and
pristine_transport's retry layer applies them over real HTTP on a loopback server: a scan that is still being made
(425 "scanning", the policy's backoff, at most 4 requests) and a library card on hold (402 with a body field, a
fixed wait for at most 0.4 s, warned once)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest

from pristine_transport.client import ManifestClient
from pristine_transport.errors import APIStatusError, BillingError
from tests.pristine_transport.flows.conftest import LoopbackServer, ServerReply, ServerRequest

MANIFEST = Path(__file__).with_name("library_manifest.json")
CARD = "card-0123456789-secret"
LOGGER = "pristine_transport.retry"


def _json(status: int, body: object) -> ServerReply:
    return ServerReply(status=status, body=msgspec.json.encode(body))


@dataclass
class Library:
    """Scans take ``scans_left`` more asks per book (a book not listed is never done); the card is on hold for
    ``holds_left`` more loans (-1: for good); ``no_funds`` refuses loans with a 402 no rule waits out."""

    scans_left: dict[str, int] = field(default_factory=dict)
    holds_left: int = 0
    no_funds: bool = False
    requests: list[ServerRequest] = field(default_factory=list)
    loans: int = 0

    async def __call__(self, request: ServerRequest) -> ServerReply:
        self.requests.append(request)
        assert request.headers["library-card"] == CARD
        scan = re.fullmatch(r"/v1/books/([a-z]+)/scan", request.path)
        if scan:
            book = scan.group(1)
            left = self.scans_left.get(book, -1)
            if left != 0:
                self.scans_left[book] = left - 1
                return _json(425, {"detail": f"{book} is still scanning"})
            return _json(200, {"book": book, "pages": 3})
        if request.path == "/v1/loans":
            if self.no_funds:
                return _json(402, {"reason": "no_funds", "card": CARD})
            if self.holds_left:
                self.holds_left -= 1
                return _json(402, {"reason": "card_on_hold"})
            self.loans += 1
            return _json(201, {"loan": self.loans})
        return _json(404, {"detail": "no such desk"})


@asynccontextmanager
async def library_client(library: Library) -> AsyncIterator[ManifestClient]:
    async with LoopbackServer(library) as server:
        client = ManifestClient(
            MANIFEST, base_url=server.url, config={"card": CARD}, env={}, http_client_kwargs={"http2": False}
        )
        try:
            yield client
        finally:
            await client.aclose()


def test_a_scan_is_asked_for_again_while_it_is_still_being_made() -> None:
    async def scenario() -> tuple[object, Library]:
        library = Library(scans_left={"moby": 2})
        async with library_client(library) as client:
            return await client.call("scan", path_params={"book_id": "moby"}, result_type=dict), library

    result, library = asyncio.run(scenario())
    assert result == {"book": "moby", "pages": 3}
    assert [r.headers["library-attempt"] for r in library.requests] == ["0", "1", "2"]


def test_a_scan_that_never_ends_is_given_up_after_the_rules_requests() -> None:
    async def scenario() -> tuple[APIStatusError, Library]:
        library = Library()
        async with library_client(library) as client:
            with pytest.raises(APIStatusError) as caught:
                await client.call("scan", path_params={"book_id": "ulysses"})
            return caught.value, library

    error, library = asyncio.run(scenario())
    assert error.status_code == 425 and "still scanning" in error.message
    assert len(library.requests) == 4  # max_attempts: requests in all, beyond the policy's 2 re-sends


def test_a_card_on_hold_pauses_loans_warns_once_and_gives_up_after_its_duration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[object, BillingError, float, Library, Library]:
        paused = Library(holds_left=3)
        forever = Library(holds_left=-1)
        async with library_client(paused) as client:
            loan = await client.call("borrow", json={"book": "moby"}, result_type=dict)
        async with library_client(forever) as client:
            started = time.monotonic()
            with pytest.raises(BillingError) as caught:
                await client.call("borrow", json={"book": "ulysses"})
            waited = time.monotonic() - started
        return loan, caught.value, waited, paused, forever

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loan, error, waited, paused, forever = asyncio.run(scenario())
    assert loan == {"loan": 1} and len(paused.requests) == 4 and paused.loans == 1
    assert waited >= 0.4 and 3 <= len(forever.requests) <= 11  # a 0.05 s wait each, until 0.4 s have passed
    assert error.outcome == "did_not_run"  # every answer was a 402: nothing ran
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("the library card is on hold" in w for w in warnings)  # once per client
    assert CARD not in caplog.text


def test_an_answer_no_rule_matches_is_final_at_once() -> None:
    async def scenario() -> tuple[BillingError, Library]:
        library = Library(no_funds=True)
        async with library_client(library) as client:
            with pytest.raises(BillingError) as caught:
                await client.call("borrow", json={"book": "moby"})
            return caught.value, library

    error, library = asyncio.run(scenario())
    assert len(library.requests) == 1 and "no_funds" in error.message
    assert CARD not in error.message  # the card the server echoed is masked
