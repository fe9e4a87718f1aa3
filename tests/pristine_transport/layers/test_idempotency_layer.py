"""IdempotencyLayer: one key per logical request, reused on every re-send of the retry layer beneath it."""

from __future__ import annotations

import os
import re

import httpx
import pytest

from pristine_transport import extensions
from pristine_transport.layers.idempotency import IdempotencyLayer, uuid4_string
from pristine_transport.layers.retry import RetryLayer
from pristine_transport.manifest import RetryPolicySpec

pytestmark = pytest.mark.anyio

URL = "http://api.test/v1/things"
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


class Recorder:
    """Answers with the scripted statuses (the last repeats) and records the requests."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = statuses
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.statuses[min(len(self.requests), len(self.statuses)) - 1])

    def keys(self, header: str = "X-Idempotency-Key") -> list[str | None]:
        return [r.headers.get(header) for r in self.requests]


async def no_sleep(delay: float) -> None:
    return None


async def send(layer: httpx.AsyncBaseTransport, n: int = 1, **kwargs: object) -> None:
    async with httpx.AsyncClient(transport=layer) as client:
        for _ in range(n):
            await client.post(URL, content=b"{}", **kwargs)  # type: ignore[arg-type]


async def test_mints_prefix_plus_uuid4_once_per_logical_request() -> None:
    recorder = Recorder(200)
    await send(IdempotencyLayer(httpx.MockTransport(recorder), prefix="stainless-python-retry-"), n=3)
    keys = recorder.keys()
    assert all(re.fullmatch("stainless-python-retry-" + UUID4, k or "") for k in keys)
    assert len(set(keys)) == 3


async def test_every_re_send_carries_the_same_key() -> None:
    recorder = Recorder(503, 429, 200)
    retry = RetryLayer(httpx.MockTransport(recorder), RetryPolicySpec(), sleep=no_sleep)
    await send(IdempotencyLayer(retry, prefix="p-"), n=2)
    keys = recorder.keys()
    assert len(keys) == 4  # 503, 429, 200 for the first request; 200 for the second
    assert keys[0] == keys[1] == keys[2] != keys[3]
    assert [r.headers["x-stainless-retry-count"] for r in recorder.requests] == ["0", "1", "2", "0"]


async def test_caller_key_from_the_extension_is_used_as_is_on_every_re_send() -> None:
    recorder = Recorder(500, 200)
    retry = RetryLayer(httpx.MockTransport(recorder), RetryPolicySpec(), sleep=no_sleep)
    await send(IdempotencyLayer(retry, prefix="p-"), extensions={extensions.IDEMPOTENCY_KEY: "caller-key-1"})
    assert recorder.keys() == ["caller-key-1", "caller-key-1"]


async def test_a_key_already_in_the_headers_wins() -> None:
    recorder = Recorder(200)
    await send(
        IdempotencyLayer(httpx.MockTransport(recorder), header="Idempotency-Key"),
        headers={"idempotency-key": "from-header"},
        extensions={extensions.IDEMPOTENCY_KEY: "from-extension"},
    )
    assert recorder.keys("Idempotency-Key") == ["from-header"]


async def test_key_factory_and_custom_header() -> None:
    recorder = Recorder(200)
    counter = iter(range(100))
    layer = IdempotencyLayer(
        httpx.MockTransport(recorder),
        header="x-idempotency-key",
        prefix="k-",
        key_factory=lambda: f"{next(counter):032x}",
    )
    await send(layer, n=2)
    assert recorder.keys("x-idempotency-key") == ["k-" + "0" * 32, "k-" + "0" * 31 + "1"]


async def test_a_malformed_caller_key_is_rejected_with_its_type() -> None:
    layer = IdempotencyLayer(httpx.MockTransport(Recorder(200)))
    with pytest.raises(TypeError, match=r"pristine\.idempotency_key.*got int"):
        await send(layer, extensions={extensions.IDEMPOTENCY_KEY: 42})


def test_uuid4_strings_are_version_4_and_distinct() -> None:
    keys = [uuid4_string() for _ in range(2000)]
    assert all(re.fullmatch(UUID4, key) for key in keys)
    assert len(set(keys)) == len(keys)
    assert {key[19] for key in keys} == set("89ab")  # the variant bits vary only where RFC 4122 lets them


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_draws_other_keys_than_its_parent() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next key and leave without running any test teardown
        os.write(write_end, uuid4_string().encode())
        os._exit(0)
    os.close(write_end)
    parent_key = uuid4_string()
    with os.fdopen(read_end, "rb") as pipe:
        child_key = pipe.read().decode()
    os.waitpid(pid, 0)
    assert re.fullmatch(UUID4, child_key) and child_key != parent_key


async def test_the_key_goes_on_the_request_the_layer_was_given() -> None:
    recorder = Recorder(200)
    request = httpx.Request("POST", URL, content=b"{}")
    await IdempotencyLayer(httpx.MockTransport(recorder)).handle_async_request(request)
    assert recorder.requests == [request] and re.fullmatch(UUID4, request.headers["X-Idempotency-Key"])
