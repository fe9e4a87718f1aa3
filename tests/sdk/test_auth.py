"""``tinkex.auth``: the local credential checks read tinkex's own resolution (``TINKER_API_KEY``), and
``raise_if_tinker_not_accessible`` sends exactly one request and raises the typed error. The environment is
monkeypatched: no real credential is read, and no key appears in any message."""

from __future__ import annotations

import socket

import pytest

import tinkex
from tinkex import auth
from tinkex.testing import FaultRule, LocalServer

KEY = "tml-auth-test-key-0123456789abcdef"
OTHER_KEY = "tml-auth-wrong-key-9876543210fedcba"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TINKER_API_KEY", "TINKER_BASE_URL", "TINKER_CREDENTIAL_CMD"):
        monkeypatch.delenv(name, raising=False)


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


def test_a_credential_command_is_not_a_tinkex_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_CREDENTIAL_CMD", "echo tml-from-a-command")
    assert auth.get_tinker_token() is None and not auth.tinker_has_credentials()


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
        assert len(server.ledger.received("get_server_capabilities")) == 1


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
