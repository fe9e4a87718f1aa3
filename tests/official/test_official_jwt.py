"""Official 0.38.0 runs the first-user recipe against a LocalServer that exchanges JWTs (``pjwt_auth_enabled``): the
key (or ``TINKER_CREDENTIAL_CMD``'s output, when the server names the command as the default source) goes to
``client/config`` and ``auth/token`` only, every other request carries a JWT of the server, and none is refused. With
a 2 s lifetime the official SDK renews before every request (it renews whenever less than 60 s are left), which the
server must keep up with; with an hour, one exchange serves the run. This is what proves LocalServer's JWT mode is
the protocol the official SDK speaks, not one tinkex made up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tinkex.testing import LocalServer
from tinkex.types import ClientConfigResponse

from .conftest import run_official

HERE = Path(__file__).resolve().parent
RECIPE = HERE / "recipe.py"
API_KEY = "tml-official-sdk-jwt"


def run_recipe(official_python: Callable[[str], Path], server: LocalServer, **env: str) -> dict[str, Any]:
    return run_official(official_python("0.38.0"), RECIPE, base_url=server.base_url, **env)

@pytest.mark.parametrize(
    ("lifetime", "source", "env"),
    [
        (3600.0, "api_key", {"TINKER_API_KEY": API_KEY}),
        (2.0, "api_key", {"TINKER_API_KEY": API_KEY}),
        (3600.0, "credential_cmd", {"TINKER_CREDENTIAL_CMD": f"echo {API_KEY}"}),
    ],
)
def test_official_038_exchanges_and_sends_jwts(
    official_python: Callable[[str], Path], lifetime: float, source: str, env: dict[str, str]
) -> None:
    flags = ClientConfigResponse(pjwt_auth_enabled=True, credential_default_source=source)
    with LocalServer(client_config=flags, jwt_lifetime=lifetime) as server:
        result = run_recipe(official_python, server, **env)
        received = server.ledger.received()
        issued, refused = server.call(lambda api: (api.jwt.issued, api.jwt.refused))
    assert result["sdk_version"] == "0.38.0" and len(result["sequences"]) == 2
    assert received[0].endpoint == "client_config"
    exchanges = [r for r in received if r.endpoint == "auth_token"]
    assert exchanges and all(r.status == 200 for r in exchanges) and issued == len(exchanges)
    if lifetime < 60:
        # The official SDK renews on demand whenever less than 60 s are left: many exchanges in one short run.
        assert issued > 5
    else:
        assert issued == 1
    # Every request carried what the server takes: a refused one would be a 401 here.
    assert refused == 0 and all(r.status == 200 for r in received)
