"""``tinkex.auth``: the local credential checks read tinkex's own resolution (``TINKER_API_KEY``), and
``raise_if_tinker_not_accessible`` sends exactly one request and raises the typed error. The environment is
monkeypatched: no real credential is read, and no key appears in any message."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

import tinkex
from tinkex import auth
from tinkex.testing import FaultRule, LocalServer

KEY = "tml-auth-test-key-0123456789abcdef"
OTHER_KEY = "tml-auth-wrong-key-9876543210fedcba"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TINKER_API_KEY", "TINKER_BASE_URL", "TINKER_CREDENTIAL_CMD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no real ~/.tinker/credentials.json is read


@pytest.mark.parametrize(
    ("env", "token"),
    [
        ({"TINKER_API_KEY": KEY}, KEY),
        ({}, None),
        ({"TINKER_API_KEY": ""}, None),
        ({"TINKER_API_KEY": "sk-not-a-tinker-key"}, None),  # tinkex refuses keys without the tml- prefix
        ({"TINKER_API_KEY": KEY, "TINKER_BASE_URL": "not a url"}, KEY),  # a bad URL does not hide the key
    ],
)
def test_the_token_and_credential_checks_follow_tinkex_resolution(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], token: str | None
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert auth.get_tinker_token() == token
    assert auth.tinker_has_credentials() is (token is not None)


def test_a_credential_command_counts_as_a_credential_but_is_not_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As in the official SDK: the command may call a credential service, so the local checks never run it."""
    ran = tmp_path / "ran"
    monkeypatch.setenv("TINKER_CREDENTIAL_CMD", f"touch {ran}; echo tml-from-a-command")
    assert auth.get_tinker_token() is None and auth.tinker_has_credentials()
    assert not ran.exists()


def test_the_stored_default_key_is_a_token(tmp_path: Path) -> None:
    stored = tmp_path / ".tinker" / "credentials.json"
    stored.parent.mkdir()
    stored.write_text(
        json.dumps({"version": 1, "default": "work", "keys": {"work": {"type": "manual", "key": KEY, "name": "work"}}})
    )
    assert auth.get_tinker_token() == KEY and auth.tinker_has_credentials()


def _use(monkeypatch: pytest.MonkeyPatch, server: LocalServer, key: str) -> None:
    monkeypatch.setenv("TINKER_API_KEY", key)
    monkeypatch.setenv("TINKER_BASE_URL", server.base_url)


def test_an_accepted_key_passes_with_one_request(monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalServer(api_key=KEY) as server:
        _use(monkeypatch, server, KEY)
        assert auth.raise_if_tinker_not_accessible() is None
        [request] = server.ledger.received("get_server_capabilities")
        assert (request.method, request.path, request.status) == ("GET", "/api/v1/get_server_capabilities", 200)


def test_a_rejected_key_is_an_authentication_error_that_does_not_show_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalServer(api_key=KEY) as server:
        _use(monkeypatch, server, OTHER_KEY)
        with pytest.raises(tinkex.AuthenticationError) as refused:
            auth.raise_if_tinker_not_accessible()
        assert refused.value.status_code == 401
        assert OTHER_KEY not in str(refused.value) and OTHER_KEY[4:] not in repr(refused.value)
        # One request, refused: the client/config handshake when the dialect is negotiated (as official 0.38 asks
        # first), else the capabilities check itself.
        [request] = server.ledger.received()
        assert request.status == 401


@pytest.mark.parametrize(
    ("status", "error"), [(402, tinkex.BillingError), (503, tinkex.InternalServerError), (429, tinkex.RateLimitError)]
)
def test_a_refusal_is_raised_at_once_without_retries(
    monkeypatch: pytest.MonkeyPatch, status: int, error: type[Exception]
) -> None:
    """Statuses the standard policy re-sends (429, 5xx) are raised after the one request too."""
    with LocalServer(faults=[FaultRule(endpoint="get_server_capabilities", status=status)]) as server:
        _use(monkeypatch, server, KEY)
        with pytest.raises(error):
            auth.raise_if_tinker_not_accessible()
        assert len(server.ledger.received("get_server_capabilities")) == 1


def test_an_unreachable_server_is_a_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TINKER_API_KEY", KEY)
    monkeypatch.setenv("TINKER_BASE_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(tinkex.APIConnectionError) as failed:
        auth.raise_if_tinker_not_accessible()
    assert KEY not in str(failed.value)


def test_no_credential_is_a_tinker_error_saying_what_to_set() -> None:
    with pytest.raises(tinkex.TinkerError, match="TINKER_API_KEY"):
        auth.raise_if_tinker_not_accessible()


def test_the_checks_are_exported_as_in_the_official_sdk() -> None:
    assert tinkex.auth is auth
    assert sorted(auth.__all__) == ["get_tinker_token", "raise_if_tinker_not_accessible", "tinker_has_credentials"]
