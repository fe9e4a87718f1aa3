"""``TINKER_CREDENTIAL_CMD`` that cannot give a credential: the client's first request fails with a
``ConfigurationError`` naming the variable and what went wrong, never what the command printed, and nothing else is
sent. Against a LocalServer with JWTs on, where the command is the only credential."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

import tinkex
from tinkex.testing import LocalServer
from tinkex.types import ClientConfigResponse

PRINTED = "tml-printed-by-the-command-0123456789"
EXPIRED = "eyJhbGciOiJub25lIn0." + base64.urlsafe_b64encode(json.dumps({"iat": 1, "exp": 2}).encode()).decode().rstrip("=") + ".c2ln"


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TINKER_API_KEY", "TINKER_CREDENTIAL_CMD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        (f"echo {PRINTED}; exit 3", "exited with status 3"),
        ("true", "printed no credential"),
        (f"echo {EXPIRED}", "printed a credential that is a JWT that has expired"),
    ],
)
def test_a_command_that_gives_no_credential_is_named(command: str, problem: str) -> None:
    flags = ClientConfigResponse(pjwt_auth_enabled=True, credential_default_source="credential_cmd")
    with LocalServer(client_config=flags) as server:
        client = tinkex.Client(base_url=server.base_url, telemetry=False, env={"TINKER_CREDENTIAL_CMD": command})
        try:
            with pytest.raises(tinkex.ConfigurationError) as refused:
                client.create_lora_training_client("Qwen/Qwen3-8B", rank=4).result(30)
        finally:
            client.close()
        sent = server.ledger.received()
    message = str(refused.value)
    assert "TINKER_CREDENTIAL_CMD" in message and problem in message
    assert PRINTED not in message and EXPIRED not in message
    assert not sent  # the handshake needed the credential: nothing went out
