"""The manifest's ``transport.backend`` picks the base transport under every stack: each of httpx, aiohttp and
pyqwest, named in the manifest itself (the environment variable's path is covered by tests/pristine_transport/boundary, which runs on
every backend), carries a real request to a loopback LocalServer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport
from pyqwest.httpx import AsyncPyqwestTransport

from pristine_transport.client import ManifestClient
from pristine_transport.errors import ConfigurationError
from pristine_transport.stack import build_transport
from tinkex.testing import LocalServer

MANIFEST_PATH = Path(__file__).parents[2] / "manifest.json"
ENV = {"TINKER_API_KEY": "tml-base-transports-0123456789", "CLOUDFLARE_ACCESS_CLIENT_ID": "id",
       "CLOUDFLARE_ACCESS_CLIENT_SECRET": "secret"}
BASES = {"httpx": httpx.AsyncHTTPTransport, "aiohttp": AiohttpTransport, "pyqwest": AsyncPyqwestTransport}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


def manifest_with(backend: str) -> dict[str, Any]:
    manifest = json.loads(MANIFEST_PATH.read_text())
    manifest["transport"].update(backend=backend, backend_env=None)
    for endpoint in manifest["endpoints"].values():
        endpoint.pop("size_estimator", None)  # tinkex's estimators are not what this is about
    return manifest


def base_of(stack: Any) -> Any:
    """The innermost transport: what every layer wraps."""
    while (inner := getattr(stack, "_inner", None)) is not None:
        stack = inner
    return stack


@pytest.mark.anyio
@pytest.mark.parametrize("backend", sorted(BASES))
async def test_the_manifest_names_the_base_transport_and_it_carries_requests(server: LocalServer, backend: str) -> None:
    async with ManifestClient(manifest_with(backend), base_url=server.base_url, env=ENV) as client:
        response = await client.send("healthz")
        assert response.status_code == 200
        router = client.transport
        assert isinstance(base_of(router.stacks["healthz"]), BASES[backend])


def test_an_unknown_backend_is_refused_naming_every_known_one() -> None:
    manifest = manifest_with("httpx")
    manifest["transport"]["backend_env"] = "BENCH_BACKEND"
    with pytest.raises(ConfigurationError, match="'httpx', 'aiohttp' or 'pyqwest'"):
        build_transport(manifest, env={**ENV, "BENCH_BACKEND": "curl"})
