"""pristine_transport's result formats, with no Tinker in them: a submit names the formats its future's result is
asked in (a manifest dialect's ``result_formats``); the polls send them as ``Accept``; a reply whose
``Content-Type`` is one of them goes to the codec registered for it; anything else is read as JSON."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest

from pristine_transport.client import ManifestClient
from pristine_transport.errors import ConfigurationError
from pristine_transport.futures import FutureResolver, FutureRetrieveError
from pristine_transport.manifest import ManifestError, ResultFormatSpec, load_manifest

pytestmark = pytest.mark.anyio

CSV = "text/csv"
FORMATS = [ResultFormatSpec(content_type=CSV, serializer="csv", message="Pair")]


class Pair(msgspec.Struct):
    left: int
    right: int


def decode_pair(body: bytes) -> Pair:
    left, right = body.decode().split(",")
    return Pair(int(left), int(right))  # a malformed body raises ValueError, as codecs must


MANIFEST: dict[str, Any] = {
    "name": "formats-test",
    "base_url": {"default": "http://formats.test"},
    "headers": {"Accept": {"value": "application/json"}},
    "endpoints": {
        "compute": {
            "method": "POST",
            "path": "/compute",
            "future": {"request_type": "Compute", "result": "Pair"},
            "dialects": {"v2": {"endpoint": "compute2", "result_formats": [{"content_type": CSV, "serializer": "csv",
                                                                         "message": "Pair"}]}},
        },
        "compute2": {"method": "POST", "path": "/v2/compute", "future": {"request_type": "Compute2", "result": "Pair"}},
        "retrieve": {"method": "POST", "path": "/retrieve", "response": "raw", "retry": None},
    },
    "futures": {"retrieve_endpoint": "retrieve", "try_again": {"field": "type", "value": "try_again"},
                "poll_headers": {"request_type": "X-Request-Type"}, "backoff": {"initial_s": 0.0, "max_s": 0.0}},
}


class Server:
    def __init__(self, replies: list[httpx.Response]) -> None:
        self.replies = replies
        self.polls: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("compute"):
            return httpx.Response(200, json={"request_id": "r-1"})
        self.polls.append(request)
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def resolver(server: Server, codecs: dict[tuple[str, str | None], Any] | None = None) -> FutureResolver:
    client = ManifestClient(
        load_manifest(MANIFEST), base_transport=httpx.MockTransport(server.handle), env={}
    )
    return FutureResolver(client, result_codecs={("csv", "Pair"): decode_pair} if codecs is None else codecs)


async def test_a_reply_in_an_asked_format_is_decoded_by_its_codec() -> None:
    server = Server([httpx.Response(200, json={"type": "try_again"}), httpx.Response(200, content=b"3,4",
                                                                                     headers={"Content-Type": CSV})])
    handle = await resolver(server).submit("compute", result_type=Pair, json={}, result_formats=FORMATS)
    assert await handle == Pair(3, 4)
    # Every poll asks in the formats, replacing the manifest's Accept; the try-again between was JSON.
    assert [poll.headers.get_list("accept") for poll in server.polls] == [[CSV], [CSV]]


async def test_a_json_reply_is_still_read_as_json() -> None:
    server = Server([httpx.Response(200, json={"left": 1, "right": 2})])
    handle = await resolver(server).submit("compute", result_type=Pair, json={}, result_formats=FORMATS)
    assert await handle == Pair(1, 2)


async def test_without_formats_polls_keep_the_manifest_accept_and_read_json() -> None:
    server = Server([httpx.Response(200, json={"left": 5, "right": 6})])
    handle = await resolver(server).submit("compute", result_type=Pair, json={})
    assert await handle == Pair(5, 6)
    assert server.polls[0].headers["accept"] == "application/json"


async def test_a_body_its_codec_refuses_is_a_retrieve_error_naming_the_format() -> None:
    server = Server([httpx.Response(200, content=b"3;4", headers={"Content-Type": f"{CSV}; charset=utf-8"})])
    handle = await resolver(server).submit("compute", result_type=Pair, json={}, result_formats=FORMATS)
    with pytest.raises(FutureRetrieveError, match="the text/csv result does not decode as Pair"):
        await handle


async def test_a_codec_giving_another_type_is_refused() -> None:
    server = Server([httpx.Response(200, content=b"3,4", headers={"Content-Type": CSV})])
    codecs = {("csv", "Pair"): lambda body: {"left": 3}}
    handle = await resolver(server, codecs).submit("compute", result_type=Pair, json={}, result_formats=FORMATS)
    with pytest.raises(FutureRetrieveError, match="gave a dict, not a Pair"):
        await handle


async def test_a_format_without_a_registered_codec_sends_nothing() -> None:
    server = Server([httpx.Response(200, json={})])
    with pytest.raises(ConfigurationError, match="no result codec is registered for serializer 'csv'"):
        await resolver(server, codecs={}).submit("compute", result_type=Pair, json={}, result_formats=FORMATS)
    assert server.polls == []


async def test_request_type_can_be_the_logical_endpoints() -> None:
    server = Server([httpx.Response(200, json={"left": 0, "right": 0})])
    handle = await resolver(server).submit("compute2", result_type=Pair, json={}, request_type="Compute")
    await handle
    assert server.polls[0].headers["x-request-type"] == "Compute"


@pytest.mark.parametrize(
    ("formats", "problem"),
    [
        ([{"content_type": CSV, "serializer": "csv"}], "result_formats[0]: serializer 'csv' needs message"),
        ([{"serializer": "csv", "message": "Pair"}], "result_formats[0].content_type: required"),
    ],
)
def test_result_formats_are_checked_at_load(formats: list[dict[str, str]], problem: str) -> None:
    raw = {**MANIFEST, "endpoints": {**MANIFEST["endpoints"]}}
    raw["endpoints"]["compute"] = {**raw["endpoints"]["compute"], "dialects": {"v2": {"result_formats": formats}}}
    with pytest.raises(ManifestError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_manifest(raw)


def test_result_formats_need_a_future() -> None:
    raw = {**MANIFEST, "endpoints": {**MANIFEST["endpoints"]}}
    raw["endpoints"]["retrieve"] = {**raw["endpoints"]["retrieve"],
                                    "dialects": {"v2": {"result_formats": [{"content_type": CSV}]}}}
    with pytest.raises(ManifestError, match="the endpoint answers with no future"):
        load_manifest(raw)
