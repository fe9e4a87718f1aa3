"""The retry layer applying retry rules: a matching answer is waited out on the rule's terms (before the status
rules and the server's retry header), not counted against max_retries nor the no-progress deadline, warned about
at most once per the rule's interval per episode, and final (with the write's outcome) when the rule gives up."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest

from pristine_transport.errors import WRITE_OUTCOME
from pristine_transport.extensions import RETRY_RULES
from pristine_transport.layers.retry import RetryEvent, RetryLayer, RuleEpisodes
from pristine_transport.manifest import RetryPolicySpec, RetryRuleSpec
from pristine_transport.policy import Deadlines, RetryBudget

pytestmark = pytest.mark.anyio

URL = "http://api.test/v1/things"
LOGGER = "pristine_transport.retry"
PAUSED = RetryRuleSpec(
    statuses=[402], wait_s=5.0, max_duration_s=600.0, log="requests are paused (402)", log_interval_s=60.0
)
BUILDING = RetryRuleSpec(statuses=[503], body_contains="building", wait_s=30.0, max_attempts=4, log="still building")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Server:
    """Answers with scripted (status, headers, body) outcomes, the last one repeating; records the requests."""

    def __init__(self, *outcomes: tuple[int, dict[str, str], bytes]) -> None:
        self.outcomes = outcomes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, headers, body = self.outcomes[min(len(self.requests), len(self.outcomes)) - 1]
        return httpx.Response(status, headers=headers, content=body)


def answer(status: int, body: bytes = b"", **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {name.replace("_", "-"): value for name, value in headers.items()}, body


class Setup:
    def __init__(self, server: Server, policy: RetryPolicySpec, *, episodes: RuleEpisodes | None = None,
                 clock: Clock | None = None, deadlines: Deadlines | None = None) -> None:
        self.clock = clock or Clock()
        self.sleeps: list[float] = []
        self.retry_events: list[RetryEvent] = []
        self.layer = RetryLayer(
            httpx.MockTransport(server),
            policy,
            sleep=self._sleep,
            random=lambda: 0.0,
            clock=self.clock,
            deadlines=deadlines or Deadlines(budget=RetryBudget(rounds=False)),
            rule_episodes=episodes,
            on_retry=self.retry_events.append,
        )

    async def _sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.clock.now += delay

    async def post(self, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(transport=self.layer) as client:
            return await client.post(URL, content=b"payload", **kwargs)


def policy_with(**rules: RetryRuleSpec) -> RetryPolicySpec:
    return RetryPolicySpec(max_retries=2, rules=rules)


async def test_a_rule_comes_before_the_servers_retry_header_and_waits_its_own_wait() -> None:
    server = Server(answer(503, b"building", x_should_retry="false"), answer(503, b"building"), answer(200))
    setup = Setup(server, policy_with(building=BUILDING))
    response = await setup.post()
    assert response.status_code == 200 and len(server.requests) == 3
    assert setup.sleeps == [30.0, 30.0]
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1", "2"]


async def test_rule_waits_count_neither_against_max_retries_nor_as_retries_of_a_failure() -> None:
    building = answer(503, b"building")
    server = Server(building, building, building, answer(500), answer(500), answer(200))
    setup = Setup(server, policy_with(building=BUILDING))
    assert (await setup.post()).status_code == 200
    assert setup.sleeps[:3] == [30.0, 30.0, 30.0] and len(setup.sleeps) == 5  # then the policy's two re-sends
    assert [event.reason for event in setup.retry_events] == ["status 500", "status 500"]  # hooks: failures only


async def test_an_answer_the_rule_does_not_match_follows_the_policy() -> None:
    server = Server(answer(503, b"overloaded"), answer(200))
    setup = Setup(server, policy_with(building=BUILDING))
    assert (await setup.post()).status_code == 200
    assert setup.sleeps == [0.5]  # the policy's backoff


async def test_when_the_rule_gives_up_the_answer_is_final_with_the_writes_outcome() -> None:
    server = Server(answer(503, b"building"))
    setup = Setup(server, policy_with(building=BUILDING))
    response = await setup.post()
    assert response.status_code == 503 and len(server.requests) == 4  # max_attempts: requests in all
    assert response.extensions[WRITE_OUTCOME] == "may_have_run"  # a 503 may have run; the policy re-sends no more

    server = Server(answer(402, b'{"detail": "billing"}'))
    setup = Setup(server, policy_with(paused=RetryRuleSpec(statuses=[402], wait_s=1.0, max_attempts=2)))
    response = await setup.post()
    assert (response.status_code, len(server.requests)) == (402, 2)
    assert response.extensions[WRITE_OUTCOME] == "did_not_run"


async def test_a_pause_warns_at_most_once_a_minute_and_gives_up_after_its_duration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = Server(answer(402, b'{"detail": "billing is not set up"}'))
    setup = Setup(server, policy_with(paused=PAUSED))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        response = await setup.post()
    assert response.status_code == 402
    assert set(setup.sleeps) == {5.0} and len(server.requests) == 122  # 0, 5, ... 605 s: past 600 s it is final
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    warned_at = [(int(re.findall(r"\(request (\d+)\)", w)[0]) - 1) * 5 for w in warnings]  # request n: at 5n-5 s
    assert warned_at == [0, 65, 130, 195, 260, 325, 390, 455, 520, 585]
    assert all("billing is not set up" in w and "requests are paused" in w for w in warnings)
    errors = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 1 and "giving up" in errors[0] and "for 605 s" in errors[0]
    infos = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert len(infos) == 121  # every wait still has its INFO line


async def test_a_rules_waits_are_progress_for_the_no_progress_deadline() -> None:
    server = Server(*[answer(503, b"building")] * 3, answer(500), answer(200))
    deadlines = Deadlines(no_progress_s=40.0, budget=RetryBudget(rounds=False))
    setup = Setup(server, policy_with(building=BUILDING), deadlines=deadlines)
    # 90 s of waits, each answer a live server's; the 500 after them still has the whole 40 s to be re-sent in
    assert (await setup.post()).status_code == 200
    assert setup.sleeps == [30.0, 30.0, 30.0, 0.5]


async def test_layers_sharing_episodes_see_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    episodes, clock = RuleEpisodes(), Clock()
    paused_then_ok = (answer(402), answer(200))
    first = Setup(Server(*paused_then_ok), policy_with(paused=PAUSED), episodes=episodes, clock=clock)
    second = Setup(Server(*paused_then_ok), policy_with(paused=PAUSED), episodes=episodes, clock=clock)
    alone = Setup(Server(*paused_then_ok), policy_with(paused=PAUSED), clock=clock)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await first.post()
        await second.post()  # 5 s later, the same episode: no second warning within the minute
        await alone.post()  # a layer with episodes of its own warns on its own
    assert len([r for r in caplog.records if r.name == LOGGER]) == 2
    assert episodes.get("paused").first_at == 0.0


async def test_a_request_brings_rules_of_its_own() -> None:
    server = Server(answer(425), answer(425), answer(200))
    setup = Setup(server, RetryPolicySpec(max_retries=2))
    own = RetryRuleSpec(statuses=[425], wait_s=0.25, max_attempts=5)
    response = await setup.post(extensions={RETRY_RULES: {"too_early": own}})
    assert response.status_code == 200 and setup.sleeps == [0.25, 0.25]
    assert (await Setup(Server(answer(425)), RetryPolicySpec(max_retries=2)).post()).status_code == 425  # without


async def test_a_policy_that_re_sends_nothing_else_still_applies_its_rules() -> None:
    server = Server(answer(402), answer(500), answer(200))
    setup = Setup(server, RetryPolicySpec(max_retries=0, rules={"paused": PAUSED}))
    assert (await setup.post()).status_code == 500 and len(server.requests) == 2  # the 402 waited, the 500 final
