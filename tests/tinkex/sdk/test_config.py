"""Configuration: clear errors at construction, explicit arguments > environment > defaults, and a constructor
that does no network I/O."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import respx
from sdk_helpers import API_KEY, BASE_MODEL, SESSION_ID, WireFake, fake_client

import tinkex
from tinkex import ConfigurationError

PROD_URL = "https://tinker.thinkingmachines.dev/services/tinker-prod"


def build(env: dict[str, str] | None = None, **kwargs: Any) -> tinkex.Client:
    return tinkex.Client(env=env or {}, telemetry=False, **kwargs)


def test_missing_api_key_says_how_to_set_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        build(base_url="http://127.0.0.1:1")
    message = str(caught.value)
    assert "API key" in message
    assert "TINKER_API_KEY" in message and "api_key=" in message


def test_key_without_tml_prefix_is_rejected_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        build(api_key="sk-not-a-tinker-key-123")
    message = str(caught.value)
    assert "'tml-'" in message
    assert "sk-not-a-tinker-key-123" not in message


@pytest.mark.parametrize("url", ["ftp://example.com", "not a url", "http://", "tinker.example.com"])
def test_bad_base_url_names_the_url_and_the_fix(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        build(api_key=API_KEY, base_url=url)
    message = str(caught.value)
    assert "base URL" in message
    assert "TINKER_BASE_URL" in message and "base_url=" in message


def test_bad_base_url_from_the_environment_is_reported_too() -> None:
    with pytest.raises(ConfigurationError, match="TINKER_BASE_URL"):
        build({"TINKER_BASE_URL": "ftp://nope", "TINKER_API_KEY": API_KEY})


def test_unknown_keyword_arguments_are_rejected() -> None:
    with pytest.raises(TypeError, match="base_ulr"):
        build(api_key=API_KEY, base_ulr="http://127.0.0.1:1")


def test_official_http_client_keywords_are_ignored_with_a_warning_as_in_038() -> None:
    with pytest.warns(FutureWarning, match="max_retries, timeout"):
        client = build(api_key=API_KEY, max_retries=3, timeout=60)
    assert client.holder.config.api_key == API_KEY


def test_explicit_arguments_beat_the_environment() -> None:
    env = {
        "TINKER_API_KEY": "tml-from-env-0000000000",
        "TINKER_BASE_URL": "http://env.example:1",
        "TINKER_TAGS": "env-tag",
        "TINKER_TELEMETRY": "1",
        "TINKER_PROJECT_ID": "env-project",
    }
    client = build(env, api_key=API_KEY, base_url="http://arg.example:2/prefix/", tags=["arg-tag"], project_id="p")
    config = client.holder.config
    assert config.api_key == API_KEY
    assert config.base_url == "http://arg.example:2/prefix"
    assert config.tags == ("arg-tag",)
    assert config.project_id == "p"
    assert config.telemetry is False
    client.close()


def test_environment_beats_the_defaults() -> None:
    env = {
        "TINKER_API_KEY": "tml-from-env-0000000000",
        "TINKER_BASE_URL": "http://env.example:1",
        "TINKER_TAGS": "a,b",
        "TINKER_TELEMETRY": "0",
    }
    client = tinkex.Client(env=env)
    config = client.holder.config
    assert (config.api_key, config.base_url, config.tags, config.telemetry) == (
        "tml-from-env-0000000000", "http://env.example:1", ("a", "b"), False
    )
    client.close()


def test_defaults_apply_when_nothing_is_set() -> None:
    client = tinkex.Client(api_key=API_KEY, env={"TINKER_BASE_URL": ""})  # empty counts as unset
    config = client.holder.config
    assert config.base_url == PROD_URL
    assert config.tags == ()
    assert config.telemetry is True
    assert config.project_id is None
    client.close()


def test_the_api_key_never_shows_in_reprs() -> None:
    client = build(api_key=API_KEY, base_url="http://127.0.0.1:1")
    assert API_KEY not in repr(client)
    assert API_KEY not in repr(client.holder.config)
    client.close()


def test_construction_does_no_network_io() -> None:
    # respx patches httpx's own transport, so this test asks for the httpx backend (the manifest's env switch).
    with respx.mock(base_url="http://tinker.test", assert_all_called=False) as router:
        session = router.post("/api/v1/create_session").respond(200, json={"session_id": SESSION_ID})
        # A server without the 0.38 handshake: the client's first use asks, and then speaks the 0.16 dialect.
        handshake = router.post("/api/v1/client/config").respond(404, json={"detail": "Not Found"})
        env = {"TINKEX_HTTP_BACKEND": "httpx"}
        client = tinkex.Client(api_key=API_KEY, base_url="http://tinker.test", env=env, telemetry=False)
        assert not router.calls, "the constructor must not talk to the server"
        sampling = router.post("/api/v1/create_sampling_session").respond(
            200, json={"sampling_session_id": f"{SESSION_ID}:sample:0"}
        )
        client.create_sampling_client(base_model=BASE_MODEL).result()  # first use creates the session
        assert router.calls[0].request.url.path == "/api/v1/client/config"
        client.close()
    assert handshake.call_count == 1
    assert session.call_count == 1
    assert sampling.call_count == 1


@pytest.mark.anyio
async def test_construction_inside_a_running_event_loop_works(wire: WireFake) -> None:
    started = asyncio.get_running_loop().time()
    client = fake_client(wire)
    assert not wire.sent()
    assert asyncio.get_running_loop().time() - started < 1.0
    sampler = await client.create_sampling_client_async(base_model=BASE_MODEL)
    assert sampler.sampling_session_id == f"{SESSION_ID}:sample:0"
    assert wire.endpoints() == ["client/config", "create_session", "create_sampling_session"]
    await client.aclose()


def test_the_session_is_created_once_for_every_client_of_one_service_client(wire: WireFake) -> None:
    client = fake_client(wire)
    try:
        client.create_lora_training_client(BASE_MODEL).result()
        client.create_sampling_client(base_model=BASE_MODEL).result()
        client.create_lora_training_client(BASE_MODEL).result()
    finally:
        client.close()
    assert len(wire.sent("create_session")) == 1
    assert [s.body["model_seq_id"] for s in wire.sent("create_model")] == [0, 1]


def test_a_failed_session_creation_is_retried_on_next_use(wire: WireFake) -> None:
    rejected = False

    async def reject_once(request: httpx.Request, body: Any) -> httpx.Response | None:
        nonlocal rejected
        if not rejected:
            rejected = True
            return httpx.Response(403, json={"detail": "not yet"})
        return None

    wire.overrides["create_session"] = reject_once
    client = fake_client(wire)
    try:
        with pytest.raises(tinkex.PermissionDeniedError):
            client.create_sampling_client(base_model=BASE_MODEL).result()
        client.create_sampling_client(base_model=BASE_MODEL).result()
    finally:
        client.close()
    assert len(wire.sent("create_session")) == 2
