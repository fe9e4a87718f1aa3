"""A second API through pristine_transport: the bakery (bakery.py, bakery_manifest.json) runs through the
ManifestClient, the layer stack (headers from config, retries, idempotency, pools) and the futures flow against a
loopback server, with its own manifest and types and no tinkex."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from pristine_transport.futures import RequestFailedError
from pristine_transport.manifest import load_manifest
from tests.pristine_transport.second_api.bakery import API_KEY, MANIFEST, Cake, CakeOnMenu, Menu, visit_the_bakery

ROOT = Path(__file__).resolve().parents[3]


def test_the_bakery_manifest_is_a_valid_manifest_of_its_own() -> None:
    manifest = load_manifest(MANIFEST)
    assert manifest.name == "bakery"
    assert manifest.futures is not None and manifest.futures.request_id_field == "ticket"


def test_the_bakery_works_through_client_stack_and_futures() -> None:
    outcome = asyncio.run(visit_the_bakery())
    bakery = outcome.bakery

    # retries: the menu's two 503s were re-sent under the bakery's own attempt header, then parsed into its type
    assert outcome.menu == Menu(cakes=[CakeOnMenu("lemon", 450), CakeOnMenu("charcoal", 1)])
    menu_requests = [r for r in bakery.requests if r.path == "/v2/menu"]
    assert [r.headers.get("bakery-attempt") for r in menu_requests] == ["0", "1", "2"]

    # headers: the key from config on every request, the client header's template filled from config
    assert {r.headers["bakery-key"] for r in bakery.requests} == {API_KEY}
    assert {r.headers["bakery-client"] for r in bakery.requests} == {"second-api-test/1.0"}

    # idempotency: each order's lost reply was re-sent with the same key, so each order was taken once
    orders = [r for r in bakery.requests if r.path == "/v2/orders"]
    keys = [r.headers["bakery-request-key"] for r in orders]
    assert len(orders) == 4 and keys[0] == keys[1] and keys[2] == keys[3] and keys[0] != keys[2]
    assert all(key.startswith("order-") for key in keys)
    assert len(bakery.orders) == 2

    # futures: polled by ticket through in_oven to the cake, iterations counted in the poll header; the kitchen's
    # 408 was re-sent by the poll endpoint's retry policy (same poll, next attempt); its 425 is "not yet" by the
    # bakery's poll_statuses (by the defaults it would end the future), so the next poll got the cake
    assert outcome.cake == Cake(cake_id="lemon", layers=2, baked_by="oven-1")
    assert bakery.polls == {"t-1": 5, "t-2": 5}
    first_ticket_polls = [r for r in bakery.requests if r.path == "/v2/orders/status" and b'"t-1"' in r.body]
    assert [(r.headers["bakery-poll"], r.headers["bakery-attempt"]) for r in first_ticket_polls] == [
        ("0", "0"),
        ("1", "0"),
        ("2", "0"),
        ("2", "1"),
        ("3", "0"),
    ]

    # failures: the bakery's failure field and category, and the taxonomy's 404
    assert isinstance(outcome.burnt, RequestFailedError)
    assert outcome.burnt.category == "server"
    assert "the oven ran too hot" in str(outcome.burnt) and "t-2" in str(outcome.burnt)
    assert outcome.missing.status_code == 404
    assert API_KEY not in repr(outcome.missing) and API_KEY not in str(outcome.missing)


def test_the_bakery_never_loads_tinkex() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tests.pristine_transport.second_api.bakery"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"cake": {"cake_id": "lemon", "layers": 2, "baked_by": "oven-1"}, "tinkex_modules": []}
