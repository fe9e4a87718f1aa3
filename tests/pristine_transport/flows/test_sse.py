from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx
import pytest

from pristine_transport.sse import ServerSentEvent, SSEDecoder, aiter_sse
from tests.pristine_transport.flows.conftest import LoopbackServer, ServerReply, ServerRequest

pytestmark = pytest.mark.anyio

E = ServerSentEvent

CASES: list[tuple[str, bytes, list[ServerSentEvent]]] = [
    ("simple", b"data: hello\n\n", [E(data="hello")]),
    ("no space after colon", b"data:hello\n\n", [E(data="hello")]),
    ("only one leading space is removed", b"data:  two\n\n", [E(data=" two")]),
    ("multi-line data joined by LF", b"data: a\ndata: b\ndata:\n\n", [E(data="a\nb\n")]),
    ("event type", b"event: update\ndata: {}\n\n", [E(event="update", data="{}")]),
    ("event type resets after dispatch", b"event: x\ndata: 1\n\ndata: 2\n\n", [E(event="x", data="1"), E(data="2")]),
    ("CRLF endings", b"data: a\r\n\r\ndata: b\r\n\r\n", [E(data="a"), E(data="b")]),
    ("CR endings", b"data: a\r\rdata: b\r\r", [E(data="a"), E(data="b")]),
    ("mixed endings", b"data: a\r\ndata: b\rdata: c\n\r\n", [E(data="a\nb\nc")]),
    ("comments ignored", b": keep-alive\ndata: x\n: more\n\n", [E(data="x")]),
    ("blank lines without data dispatch nothing", b"\n\n\nevent: e\n\n", []),
    ("field without colon is an empty value", b"data\n\n", [E(data="")]),
    ("unknown fields ignored", b"foo: bar\ndata: x\n\n", [E(data="x")]),
    ("id persists across events", b"id: 7\ndata: a\n\ndata: b\n\n", [E(data="a", id="7"), E(data="b", id="7")]),
    ("id with NUL ignored", b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", [E(data="a", id="1"), E(data="b", id="1")]),
    ("empty id resets", b"id: 1\ndata: a\n\nid\ndata: b\n\n", [E(data="a", id="1"), E(data="b", id="")]),
    ("retry digits only", b"retry: 1500\ndata: a\n\nretry: 1.5\ndata: b\n\n", [E(data="a", retry=1500), E(data="b")]),
    ("BOM at stream start", b"\xef\xbb\xbfdata: x\n\n", [E(data="x")]),
    ("BOM only at stream start", b"data: \xef\xbb\xbfx\n\n", [E(data="\ufeffx")]),
    ("incomplete final event is discarded", b"data: a\n\ndata: never dispatched\n", [E(data="a")]),
    ("utf-8 multibyte", "data: h\u00e9llo \u2603 \U0001f600\n\n".encode(), [E(data="h\u00e9llo \u2603 \U0001f600")]),
]


def decode_all(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [event for chunk in chunks for event in decoder.decode(chunk)]


@pytest.mark.parametrize(("name", "stream", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decodes_whole_stream(name: str, stream: bytes, expected: list[ServerSentEvent]) -> None:
    assert decode_all([stream]) == expected


@pytest.mark.parametrize(("name", "stream", "expected"), CASES, ids=[c[0] for c in CASES])
def test_any_chunking_gives_the_same_events(name: str, stream: bytes, expected: list[ServerSentEvent]) -> None:
    assert decode_all([bytes([b]) for b in stream]) == expected  # every boundary, incl. inside UTF-8 and CRLF
    for cut in range(len(stream) + 1):
        assert decode_all([stream[:cut], stream[cut:]]) == expected, f"cut at {cut}"


def test_cr_at_chunk_end_followed_by_lf() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b"data: a\r") == []
    assert decoder.decode(b"\n\r") == [E(data="a")]
    assert decoder.decode(b"\ndata: b\r\n\r\n") == [E(data="b")]


def test_split_inside_a_utf8_character() -> None:
    snowman = "\u2603".encode()
    decoder = SSEDecoder()
    assert decoder.decode(b"data: " + snowman[:1]) == []
    assert decoder.decode(snowman[1:2]) == []
    assert decoder.decode(snowman[2:] + b"\n\n") == [E(data="\u2603")]


def test_decoder_state_and_json() -> None:
    decoder = SSEDecoder()
    (event,) = decoder.decode(b'id: 5\nretry: 300\ndata: {"token": 1,\ndata:  "done": false}\n\n')
    assert event.json() == {"token": 1, "done": False}
    assert decoder.last_event_id == "5"
    assert decoder.retry == 300


class TrackedStream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes], *, endless: bool = False) -> None:
        self.chunks = chunks
        self.endless = endless
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        while self.endless:
            yield b"data: more\n\n"
            await asyncio.sleep(0)

    async def aclose(self) -> None:
        self.closed = True


async def streamed(stream: TrackedStream) -> httpx.Response:
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, stream=stream)), base_url="http://sse.test"
    )
    request = client.build_request("GET", "/events")
    return await client.send(request, stream=True)


async def test_aiter_sse_over_a_response_and_closes_it_at_the_end() -> None:
    stream = TrackedStream([b"event: a\nda", b"ta: 1\n", b"\nid: x\ndata: 2\r", b"\n\r\n"])
    response = await streamed(stream)
    events = [event async for event in aiter_sse(response)]
    assert events == [E(event="a", data="1"), E(data="2", id="x")]
    assert response.is_closed and stream.closed


async def test_stopping_early_closes_the_response() -> None:
    stream = TrackedStream([], endless=True)
    response = await streamed(stream)
    async with aclosing(aiter_sse(response)) as events:
        async for event in events:
            assert event.data == "more"
            break
    assert response.is_closed and stream.closed


async def test_an_abandoned_stream_closes_its_response() -> None:
    stream = TrackedStream([], endless=True)
    response = await streamed(stream)
    async for _event in aiter_sse(response):
        break  # no aclosing: the generator is finalized by the loop's async-generator hooks
    gc.collect()
    for _ in range(5):
        await asyncio.sleep(0)
    assert response.is_closed and stream.closed


async def test_events_arrive_incrementally_from_a_real_server() -> None:
    acked = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"data: first\n\n"
        await asyncio.wait_for(acked.wait(), 5)  # the second event exists only after the first was received
        yield "data: sec".encode()
        yield "ond \u2603".encode()[:-1]
        yield "\u2603".encode()[-1:] + b"\r\n\r\n"
        while True:
            await asyncio.sleep(0.01)
            yield b": keep-alive\n\n"

    async def handler(request: ServerRequest) -> ServerReply:
        return ServerReply(body=body(), headers={"content-type": "text/event-stream"})

    async with LoopbackServer(handler) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.send(client.build_request("GET", "/stream"), stream=True)
            received = []
            async with aclosing(aiter_sse(response)) as events:
                async for event in events:
                    received.append(event.data)
                    acked.set()
                    if len(received) == 2:
                        break
            assert received == ["first", "second \u2603"]
            assert response.is_closed
            async with asyncio.timeout(5):
                while server.disconnects == 0:  # the server saw the client hang up on the endless stream
                    await asyncio.sleep(0.01)
