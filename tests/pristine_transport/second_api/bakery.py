"""A small made-up API, "the bakery", that is not Tinker: its manifest (bakery_manifest.json), its types, a loopback
server for it, and a scenario that exercises pristine_transport's client, stack and futures flow against it.

Nothing here imports tinkex: a second API needs only its own manifest and types."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from pristine_transport.client import ManifestClient
from pristine_transport.errors import NotFoundError
from pristine_transport.futures import FutureResolver, RequestFailedError
from tests.pristine_transport.flows.conftest import LoopbackServer, ServerReply, ServerRequest

MANIFEST = Path(__file__).with_name("bakery_manifest.json")
API_KEY = "bk-test-key-0123456789"


class CakeOnMenu(msgspec.Struct, frozen=True):
    id: str
    price_cents: int


class Menu(msgspec.Struct, frozen=True):
    cakes: list[CakeOnMenu]


class Order(msgspec.Struct, frozen=True):
    cake_id: str
    layers: int


class Cake(msgspec.Struct, frozen=True):
    cake_id: str
    layers: int
    baked_by: str


def _json(status: int, body: object) -> ServerReply:
    return ServerReply(status=status, body=msgspec.json.encode(body))


@dataclass
class Bakery:
    """The bakery's server side. The menu fails twice with 503 before it answers; an order's first reply is lost
    (500 after the order is taken), so only the idempotency key keeps the re-send from baking a second cake; a
    ticket is "in_oven" twice, then the kitchen times a poll out (408, re-sent by the retry policy), then says
    "too early" (425, not yet by the bakery's own poll statuses), then the cake is ready."""

    requests: list[ServerRequest] = field(default_factory=list)
    orders: dict[str, Order] = field(default_factory=dict)
    """Tickets by idempotency key: each one an oven's work."""
    polls: dict[str, int] = field(default_factory=dict)
    menu_failures_left: int = 2

    async def __call__(self, request: ServerRequest) -> ServerReply:
        self.requests.append(request)
        if request.headers.get("bakery-key") != API_KEY:
            return _json(401, {"message": "who are you?"})
        if request.method == "GET" and request.path == "/v2/menu":
            if self.menu_failures_left:
                self.menu_failures_left -= 1
                return _json(503, {"message": "the menu board is being repainted"})
            return _json(200, {"cakes": [{"id": "lemon", "price_cents": 450}, {"id": "charcoal", "price_cents": 1}]})
        cake = re.fullmatch(r"/v2/cakes/([a-z]+)", request.path)
        if request.method == "GET" and cake:
            if cake.group(1) != "lemon":
                return _json(404, {"message": f"no cake {cake.group(1)!r}"})
            return _json(200, {"id": "lemon", "price_cents": 450})
        if request.method == "POST" and request.path == "/v2/orders":
            key = request.headers["bakery-request-key"]
            first = key not in self.orders
            self.orders.setdefault(key, msgspec.json.decode(request.body, type=Order))
            if first:
                return _json(500, {"message": "the order slip blew away"})
            return _json(200, {"ticket": f"t-{list(self.orders).index(key) + 1}"})
        if request.method == "POST" and request.path == "/v2/orders/status":
            ticket = msgspec.json.decode(request.body)["ticket"]
            order = list(self.orders.values())[int(ticket.removeprefix("t-")) - 1]
            seen = self.polls[ticket] = self.polls.get(ticket, 0) + 1
            if seen <= 2:
                return _json(200, {"progress": "in_oven"})
            if seen == 3:
                return _json(408, {"message": "the kitchen is busy"})
            if seen == 4:
                return _json(425, {"message": "the cake is cooling"})
            if order.cake_id == "charcoal":
                return _json(200, {"burnt": "the oven ran too hot", "kind": "server"})
            return _json(200, {"cake_id": order.cake_id, "layers": order.layers, "baked_by": "oven-1"})
        return _json(404, {"message": "no such counter"})


@dataclass
class Outcome:
    menu: Menu
    cake: Cake
    burnt: RequestFailedError
    missing: NotFoundError
    bakery: Bakery


async def visit_the_bakery() -> Outcome:
    """Every call the bakery's client makes, through pristine_transport only."""
    bakery = Bakery()
    async with LoopbackServer(bakery) as server:
        client = ManifestClient(
            MANIFEST,
            base_url=server.url,
            config={"api_key": API_KEY, "version": "1.0"},
            env={},
            http_client_kwargs={"http2": False},
        )
        resolver = FutureResolver(client)
        try:
            menu = await client.call("menu", result_type=Menu)
            try:
                await client.call("cake", path_params={"cake_id": "carrot"}, result_type=CakeOnMenu)
            except NotFoundError as exc:
                missing = exc
            handle = await resolver.submit("order", result_type=Cake, json=Order(cake_id="lemon", layers=2))
            cake = await handle
            burning = await resolver.submit("order", result_type=Cake, json=Order(cake_id="charcoal", layers=1))
            try:
                await burning
            except RequestFailedError as exc:
                burnt = exc
        finally:
            await resolver.aclose()
            await client.aclose()
    return Outcome(menu=menu, cake=cake, burnt=burnt, missing=missing, bakery=bakery)


if __name__ == "__main__":
    import sys

    outcome = asyncio.run(visit_the_bakery())
    loaded = sorted(name for name in sys.modules if name == "tinkex" or name.startswith("tinkex."))
    print(msgspec.json.encode({"cake": outcome.cake, "tinkex_modules": loaded}).decode())
