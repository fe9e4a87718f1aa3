"""The decisions behind credentials and JWT renewal, as tables: when a token is renewed, how a failed renewal is
retried, which credential a request carries for each server flag, which sources are tried in which order, what a
JWT's claims say, and which responses refuse a token."""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path

import httpx
import pytest

from pristine_transport.errors import ConfigurationError
from pristine_transport.layers.notices import notice_level
from pristine_transport.layers.token_auth import (
    Renewal,
    is_invalid_token,
    jwt_validity,
    refresh_delay,
    renew_margin,
    retry_delay,
)
from tinkex.credentials import CredentialPlan, credential_plan, resolve_credentials
from tinkex.types import ClientConfigResponse

KEY = "tml-decisions-key-0123456789abcdef"


def jwt(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part(claims)}.c2ln"


@pytest.mark.parametrize(
    ("lifetime", "random", "delay"),
    [(3600.0, 0.0, 1620.0), (3600.0, 0.5, 1800.0), (3600.0, 1.0, 1980.0), (2.0, 0.5, 1.0), (0.0, 0.5, 0.0)],
)
def test_renewal_comes_after_45_to_55_percent_of_the_lifetime(lifetime: float, random: float, delay: float) -> None:
    assert refresh_delay(lifetime, random=random) == pytest.approx(delay)


@pytest.mark.parametrize(("lifetime", "margin"), [(3600.0, 60.0), (600.0, 60.0), (100.0, 10.0), (2.0, 0.2)])
def test_a_request_renews_first_only_near_expiry(lifetime: float, margin: float) -> None:
    """The official SDK's fixed 60 s would renew a 2 s token on every request; a tenth of short lifetimes instead."""
    assert renew_margin(lifetime) == pytest.approx(margin)


@pytest.mark.parametrize(
    ("failures", "remaining", "delay"),
    [
        (1, 3000.0, 1.0),  # the shared backoff: 1, 2, 4, ... (no jitter at random=0)
        (2, 3000.0, 2.0),
        (7, 3000.0, 60.0),  # capped at retry_max_s
        (7, 10.0, 5.0),  # at most half the time the token has left: several tries before it expires
        (1, 0.02, 0.05),  # never below retry_min_s
        (3, -5.0, 4.0),  # expired: plain backoff
    ],
)
def test_a_failed_renewal_is_retried_with_the_shared_backoff(failures: int, remaining: float, delay: float) -> None:
    assert retry_delay(failures, remaining, random=0.0) == pytest.approx(delay)


def test_retry_jitter_only_shortens() -> None:
    renewal = Renewal(retry_jitter=0.5)
    assert retry_delay(2, 1000.0, renewal, random=1.0) == pytest.approx(1.0)
    assert retry_delay(2, 1000.0, renewal, random=0.0) == pytest.approx(2.0)


def test_jwt_times_come_from_its_claims() -> None:
    assert jwt_validity(jwt({"iat": 100, "exp": 160.5})) == (100.0, 160.5)


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("tml-not-a-jwt", "3 dot-separated parts"),
        ("a.!!!.c", "not base64url JSON"),
        (jwt({"exp": 5}), "numeric 'iat' and 'exp'"),
        (jwt({"iat": "soon", "exp": 5}), "numeric 'iat' and 'exp'"),
        (jwt({"iat": 10, "exp": 5}), "before it was issued"),
    ],
)
def test_an_unreadable_jwt_is_named_without_quoting_it(token: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as raised:
        jwt_validity(token)
    assert token not in str(raised.value)


@pytest.mark.parametrize(
    ("status", "challenge", "refused"),
    [
        (401, 'Bearer error="invalid_token"', True),
        (401, 'Bearer realm="x", error="invalid_token", error_description="expired"', True),
        (401, "", False),  # a wrong key: replaying with another token would not help
        (401, 'Bearer error="invalid_request"', False),
        (403, 'Bearer error="invalid_token"', False),
    ],
)
def test_only_a_401_invalid_token_refuses_the_token_itself(status: int, challenge: str, refused: bool) -> None:
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    assert is_invalid_token(httpx.Response(status, headers=headers)) is refused


ON = ClientConfigResponse(pjwt_auth_enabled=True)
CMD = ClientConfigResponse(pjwt_auth_enabled=True, credential_default_source="credential_cmd")


@pytest.mark.parametrize(
    ("has_key", "key_is_jwt", "has_command", "flags", "plan"),
    [
        (True, False, False, None, CredentialPlan(jwt=False)),
        (True, False, True, ClientConfigResponse(), CredentialPlan(jwt=False)),
        (True, False, False, ON, CredentialPlan(jwt=True, exchange_with="api_key")),
        (True, False, True, ON, CredentialPlan(jwt=True, exchange_with="api_key")),
        (False, False, True, ON, CredentialPlan(jwt=True, exchange_with="command")),
        (True, False, True, CMD, CredentialPlan(jwt=True, exchange_with="command")),
        (True, True, True, CMD, CredentialPlan(jwt=True, exchange_with="api_key")),  # a JWT key is dynamic already
    ],
)
def test_which_credential_requests_carry(
    has_key: bool, key_is_jwt: bool, has_command: bool, flags: ClientConfigResponse | None, plan: CredentialPlan
) -> None:
    assert credential_plan(has_key=has_key, key_is_jwt=key_is_jwt, has_command=has_command, flags=flags) == plan


@pytest.mark.parametrize(
    ("has_key", "has_command", "flags", "problem"),
    [
        (False, True, None, "TINKER_CREDENTIAL_CMD is used only to obtain tokens"),
        (False, True, ClientConfigResponse(), "TINKER_CREDENTIAL_CMD is used only to obtain tokens"),
        (True, False, CMD, "requires dynamic credentials: set TINKER_CREDENTIAL_CMD"),
    ],
)
def test_a_credential_the_server_cannot_take_is_named(
    has_key: bool, has_command: bool, flags: ClientConfigResponse | None, problem: str
) -> None:
    plan = credential_plan(has_key=has_key, key_is_jwt=False, has_command=has_command, flags=flags)
    assert plan.problem is not None and problem in plan.problem


def stored(path: Path, key: str, default: str | None = "main") -> Path:
    path.write_text(
        json.dumps({"version": 1, "default": default, "keys": {"main": {"type": "manual", "key": key, "name": "main"}}})
    )
    return path


LIVE_JWT = jwt({"iat": time.time(), "exp": time.time() + 3600})
EXPIRED_JWT = jwt({"iat": 1.0, "exp": 2.0})


@pytest.mark.parametrize(
    ("argument", "env", "file_key", "key", "command", "source"),
    [
        (KEY, {"TINKER_API_KEY": "tml-env-key-00000000"}, "tml-stored-0000000000", KEY, None, "the api_key argument"),
        (None, {"TINKER_API_KEY": KEY}, "tml-stored-0000000000", KEY, None, "TINKER_API_KEY"),
        (None, {"TINKER_API_KEY": KEY, "TINKER_CREDENTIAL_CMD": "echo x"}, None, KEY, "echo x", "TINKER_API_KEY"),
        (None, {"TINKER_CREDENTIAL_CMD": "echo x"}, KEY, None, "echo x", "TINKER_CREDENTIAL_CMD"),  # never shadowed
        (None, {}, KEY, KEY, None, "credentials.json"),
        ("sk-wrong", {"TINKER_CREDENTIAL_CMD": "echo x"}, None, None, "echo x", "TINKER_CREDENTIAL_CMD"),  # fallback
        (LIVE_JWT, {}, None, LIVE_JWT, None, "the api_key argument"),
        (None, {"TINKER_API_KEY": ""}, KEY, KEY, None, "credentials.json"),  # empty counts as unset
    ],
)
def test_credential_sources_in_the_official_order(
    tmp_path: Path,
    argument: str | None,
    env: dict[str, str],
    file_key: str | None,
    key: str | None,
    command: str | None,
    source: str,
) -> None:
    path = stored(tmp_path / "credentials.json", file_key) if file_key else tmp_path / "none.json"
    found = resolve_credentials(argument, env, credentials_path=path)
    assert (found.api_key, found.command) == (key, command)
    assert source in found.source
    assert (key or "unset-value") not in repr(found)


@pytest.mark.parametrize(
    ("argument", "env", "file_text", "messages"),
    [
        (
            None,
            {},
            None,
            [
                "No Tinker API key",
                "the api_key argument (not given)",
                "TINKER_API_KEY (not set)",
                "TINKER_CREDENTIAL_CMD (not set)",
                "none.json (no such file)",
            ],
        ),
        (None, {}, {"version": 1, "keys": {"a": {"key": KEY}}}, ["credentials.json (no default key)"]),
        (None, {}, {"version": 1, "default": "gone", "keys": {}}, ["its default names no stored key"]),
        (None, {}, {"version": 2, "keys": {}}, ["has version 2"]),
        (None, {}, {"version": 1, "default": "a", "keys": {"a": {"name": "a"}}}, ["not a Tinker credentials file"]),
        ("sk-wrong-key-000000", {}, None, ["the api_key argument must start with 'tml-'"]),
        (None, {"TINKER_API_KEY": "sk-wrong-key-000000"}, None, ["from TINKER_API_KEY must start with 'tml-'"]),
        (EXPIRED_JWT, {}, None, ["is a JWT that has expired"]),
        (None, {}, {"version": 1, "default": "a", "keys": {"a": {"key": "sk-stored-00000000"}}}, ["default key in"]),
    ],
)
def test_no_usable_credential_names_what_was_tried_never_a_value(
    tmp_path: Path, argument: str | None, env: dict[str, str], file_text: object, messages: list[str]
) -> None:
    path = tmp_path / ("credentials.json" if file_text is not None else "none.json")
    if file_text is not None:
        path.write_text(json.dumps(file_text))
    with pytest.raises(ConfigurationError) as refused:
        resolve_credentials(argument, env, credentials_path=path)
    for message in messages:
        assert message in str(refused.value)
    for value in (KEY, EXPIRED_JWT, "sk-wrong-key-000000", "sk-stored-00000000"):
        assert value not in str(refused.value)


@pytest.mark.parametrize(
    ("header", "level"),
    [
        ("error", logging.ERROR),
        (" ERROR ", logging.ERROR),
        ("warning", logging.WARNING),
        ("", logging.WARNING),
        (None, logging.WARNING),
    ],
)
def test_a_deprecation_note_is_logged_at_its_level(header: str | None, level: int) -> None:
    assert notice_level(header) == level
