"""The process's retry quota on a real path: two clients of one process against a loopback server that is down
(503 to everything) re-send, together, only what the quota allows, where each alone would re-send its policy's
``max_retries``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from pristine_transport.client import ManifestClient
from pristine_transport.errors import InternalServerError
from pristine_transport.policy import RetryQuota
from pristine_transport.retry_quota import disable_retry_quota, enable_retry_quota
from tests.pristine_transport.flows.conftest import LoopbackServer, ServerReply, ServerRequest

MANIFEST: dict[str, Any] = {
    "name": "quota-test",
    "base_url": {"default": "http://quota.test"},
    "retry_policies": {"quick": {"max_retries": 5, "initial_delay_s": 0.001, "max_delay_s": 0.002}},
    "default_retry": "quick",
    "endpoints": {"status": {"method": "GET", "path": "/status", "timeout_s": 5}},
}


@pytest.fixture(autouse=True)
def no_quota_after() -> Iterator[None]:
    yield
    disable_retry_quota()


async def _calls_against_an_outage(clients: int) -> int:
    hits: list[ServerRequest] = []

    async def down(request: ServerRequest) -> ServerReply:
        hits.append(request)
        return ServerReply(status=503, body=b'{"message": "down"}')

    async with LoopbackServer(down) as server:
        fleet = [
            ManifestClient(MANIFEST, base_url=server.url, env={}, http_client_kwargs={"http2": False})
            for _ in range(clients)
        ]
        try:
            for client in fleet:
                with pytest.raises(InternalServerError):
                    await client.call("status")
        finally:
            for client in fleet:
                await client.aclose()
    return len(hits)


def test_without_a_quota_each_client_re_sends_its_policys_max_retries() -> None:
    assert asyncio.run(_calls_against_an_outage(2)) == 2 * (1 + 5)


def test_the_quota_caps_the_re_sends_of_every_client_of_the_process_together() -> None:
    window = enable_retry_quota(RetryQuota(share=0.0, floor_per_s=0.2, window_s=10.0))  # 2 re-sends in all
    assert asyncio.run(_calls_against_an_outage(3)) == 3 + 2
    assert window.counts == (3, 2)


def test_the_share_grows_with_the_requests_sent() -> None:
    enable_retry_quota(RetryQuota(share=0.5, floor_per_s=0.0, window_s=60.0))
    # each first attempt adds half a re-send: the 2nd, 4th and 6th client's requests each earn one
    assert asyncio.run(_calls_against_an_outage(6)) == 6 + 3
