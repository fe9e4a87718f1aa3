"""``RefreshingToken`` on its own (pristine_transport is generic: any exchange, any token with ``iat``/``exp``), with
an exchange that mints tokens locally and a home loop on its own thread, as tinkex's runtime loop is: many waiters
on many loops cost one exchange, a waiter that gives up does not cancel it for the others, replaced tokens leave the
Redactor, and a closed source still serves its token."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import gc
import json
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from pristine_transport.layers.token_auth import RefreshingToken, TokenUnavailableError
from pristine_transport.redaction import Redactor


def mint(lifetime: float, serial: int) -> str:
    now = time.time()
    claims = {"iat": now, "exp": now + lifetime, "n": serial}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJub25lIn0.{payload}.sig{serial:04d}"


class Issuer:
    def __init__(self, lifetime: float, delay: float = 0.0) -> None:
        self.lifetime = lifetime
        self.delay = delay
        self.calls = 0
        self.failing = False

    async def __call__(self) -> str:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.failing:
            raise ConnectionError("issuer unreachable")
        return mint(self.lifetime, self.calls)


@pytest.fixture
def home() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), loop).result(5)  # let cancelled renewals wind down
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def runner(loop: asyncio.AbstractEventLoop) -> Any:
    def run(coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, loop)

    return run


def test_many_waiters_on_several_loops_cost_one_exchange(home: asyncio.AbstractEventLoop) -> None:
    issuer = Issuer(lifetime=60.0, delay=0.2)
    source = RefreshingToken(issuer, run=runner(home))

    async def many() -> set[str]:
        return set(await asyncio.gather(*(source.token() for _ in range(20))))

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: asyncio.run(many()), range(3)))
    assert issuer.calls == 1 and source.exchanges == 1
    assert len(set().union(*results)) == 1
    source.close()


def test_a_waiter_that_gives_up_does_not_cancel_the_exchange(home: asyncio.AbstractEventLoop) -> None:
    issuer = Issuer(lifetime=60.0, delay=0.3)
    source = RefreshingToken(issuer, run=runner(home))

    async def impatient_and_patient() -> str:
        impatient = asyncio.create_task(source.token())
        patient = asyncio.create_task(source.token())
        await asyncio.sleep(0.05)
        impatient.cancel()
        return await patient

    assert asyncio.run(impatient_and_patient()).startswith("eyJ")
    assert issuer.calls == 1
    source.close()


def test_a_failed_exchange_whose_only_waiter_gave_up_leaves_no_unread_failure(home: asyncio.AbstractEventLoop) -> None:
    """asyncio reports a failed future nobody read ("Future exception was never retrieved") when it is collected: a
    request that stopped waiting (cancelled, its client closing) must not leave one behind. Seen at a client's close,
    when its renewal was cancelled as its exchange failed; here thirty times, the cancel at a different moment each."""
    reported: list[str] = []

    async def give_up(offset: float) -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: reported.append(context["message"]))
        issuer = Issuer(lifetime=60.0, delay=0.02)
        issuer.failing = True
        source = RefreshingToken(issuer, run=runner(home))
        waiter = asyncio.create_task(source.token())
        await asyncio.sleep(offset)
        waiter.cancel()
        await asyncio.sleep(0.05)  # the exchange fails meanwhile
        source.close()
        gc.collect()

    for attempt in range(30):
        asyncio.run(give_up(0.015 + attempt * 0.0005))
    gc.collect()
    assert reported == []


def test_renewed_tokens_replace_old_ones_in_the_redactor(home: asyncio.AbstractEventLoop) -> None:
    issuer = Issuer(lifetime=0.4)
    redactor = Redactor()
    source = RefreshingToken(issuer, run=runner(home), redactor=redactor)
    first = asyncio.run(source.token())
    time.sleep(2.5)  # renewed about every 0.2 s
    current = asyncio.run(source.token())
    source.close()
    assert issuer.calls >= 6
    assert current != first and current not in redactor.text(f"sent {current}")
    assert first in redactor.text(f"sent {first}")  # long expired: no longer searched for
    assert "secret_values=<4>" in repr(redactor)  # only the last few are kept


def test_a_closed_source_stops_renewing_and_still_serves(home: asyncio.AbstractEventLoop) -> None:
    issuer = Issuer(lifetime=1.0)
    source = RefreshingToken(issuer, run=runner(home))
    token = asyncio.run(source.token())
    source.close()
    time.sleep(0.8)
    assert issuer.calls == 1 and asyncio.run(source.token()) == token


def test_no_token_at_all_is_a_typed_error_naming_the_cause(home: asyncio.AbstractEventLoop) -> None:
    issuer = Issuer(lifetime=60.0)
    issuer.failing = True
    source = RefreshingToken(issuer, run=runner(home), name="test token")
    with pytest.raises(TokenUnavailableError, match="no test token could be obtained: ConnectionError: issuer"):
        asyncio.run(source.token())
