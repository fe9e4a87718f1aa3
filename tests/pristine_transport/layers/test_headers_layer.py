"""resolve_headers (precedence, platform facts, errors, secrets) and HeadersLayer (who wins, debug dump)."""

from __future__ import annotations

import logging
import platform
import re

import httpx
import pytest

from pristine_transport.errors import ConfigurationError
from pristine_transport.layers.headers import HeadersLayer, platform_value, resolve_headers
from pristine_transport.manifest import HeaderSource
from pristine_transport.redaction import Redactor

pytestmark = pytest.mark.anyio

API_KEY = "tml-0123456789abcdefwxyz"
KEY_SOURCE = HeaderSource(env="API_KEY_ENV", config="api_key", secret=True, required=True, must_start_with="tml-")


def resolve(sources: dict[str, HeaderSource], config: dict | None = None, env: dict | None = None) -> dict[str, str]:
    return resolve_headers(sources, config=config or {}, env=env or {}, redactor=Redactor())


def test_precedence_config_over_env_over_value() -> None:
    source = HeaderSource(value="default", env="MODE_ENV", config="mode")
    assert resolve({"X-Mode": source}, {"mode": "cfg"}, {"MODE_ENV": "env"}) == {"X-Mode": "cfg"}
    assert resolve({"X-Mode": source}, {}, {"MODE_ENV": "env"}) == {"X-Mode": "env"}
    assert resolve({"X-Mode": source}) == {"X-Mode": "default"}


def test_empty_config_and_env_values_count_as_unset() -> None:
    source = HeaderSource(value="default", env="MODE_ENV", config="mode")
    assert resolve({"X-Mode": source}, {"mode": ""}, {"MODE_ENV": ""}) == {"X-Mode": "default"}
    assert resolve({"X-Mode": source}, {"mode": None}) == {"X-Mode": "default"}


def test_value_placeholders_are_filled_from_config() -> None:
    sources = {"User-Agent": HeaderSource(value="MySDK/Python {version} ({channel})")}
    assert resolve(sources, {"version": "1.2.3", "channel": "beta"}) == {"User-Agent": "MySDK/Python 1.2.3 (beta)"}


def test_optional_header_with_a_missing_placeholder_is_left_out() -> None:
    assert resolve({"X-Project": HeaderSource(value="{project_id}")}) == {}


def test_optional_header_without_a_value_is_left_out() -> None:
    assert resolve({"CF-Access-Client-Id": HeaderSource(env="CF_ID")}) == {}


def test_platform_values_use_stainless_spelling() -> None:
    sources = {f"X-{fact}": HeaderSource(platform=fact) for fact in ("os", "arch", "runtime", "runtime_version")}
    headers = resolve(sources)
    assert re.fullmatch(r"Linux|MacOS|Windows|FreeBSD|OpenBSD|iOS|Android|Other:.+|Unknown", headers["X-os"])
    assert re.fullmatch(r"x64|arm64|arm|x32|other:.+|unknown", headers["X-arch"])
    assert headers["X-runtime"] == platform.python_implementation()
    assert headers["X-runtime_version"] == platform.python_version()


def test_platform_os_and_arch_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "platform", lambda: "macOS-14.4-arm64-arm-64bit")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    assert (platform_value("os"), platform_value("arch")) == ("MacOS", "arm64")
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(platform, "platform", lambda: "Linux-6.1-x86_64-with-glibc2.36")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert (platform_value("os"), platform_value("arch")) == ("Linux", "x64")
    monkeypatch.setattr(platform, "system", lambda: "Plan9")
    monkeypatch.setattr(platform, "platform", lambda: "Plan9-4")
    monkeypatch.setattr(platform, "machine", lambda: "riscv64")
    assert (platform_value("os"), platform_value("arch")) == ("Other:plan9-4", "other:riscv64")


async def test_async_library_inside_a_loop() -> None:
    assert resolve({"X-Stainless-Async": HeaderSource(platform="async_library")}) == {
        "X-Stainless-Async": "async:asyncio"
    }


def test_async_library_outside_a_loop_defaults_to_asyncio() -> None:
    assert platform_value("async_library") == "async:asyncio"


def test_missing_required_header_says_how_to_set_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve({"X-API-Key": KEY_SOURCE})
    message = str(info.value)
    assert "'X-API-Key'" in message
    assert "environment variable API_KEY_ENV" in message
    assert "config key 'api_key'" in message


def test_missing_required_placeholder_names_the_config_key() -> None:
    with pytest.raises(ConfigurationError, match=r"'X-Tenant'.*config key\(s\) 'tenant'"):
        resolve({"X-Tenant": HeaderSource(value="tenant-{tenant}", required=True)})


def test_prefix_violation_names_header_and_prefix_but_not_the_value() -> None:
    redactor = Redactor()
    bad_key = "sk-live-9876543210secretvalue"
    with pytest.raises(ConfigurationError) as info:
        resolve_headers({"X-API-Key": KEY_SOURCE}, config={}, env={"API_KEY_ENV": bad_key}, redactor=redactor)
    message = str(info.value)
    assert "'X-API-Key'" in message and "'tml-'" in message and "API_KEY_ENV" in message
    assert bad_key not in message and "9876" not in message
    assert bad_key not in redactor.text(f"value={bad_key}")  # rejected, yet still known as a secret


def test_secret_values_are_registered_with_the_redactor() -> None:
    redactor = Redactor()
    headers = resolve_headers(
        {"X-API-Key": KEY_SOURCE, "CF-Access-Client-Secret": HeaderSource(env="CF_SECRET", secret=True)},
        config={"api_key": API_KEY},
        env={"CF_SECRET": "cloudflare-secret-value-5678"},
        redactor=redactor,
    )
    assert headers == {"X-API-Key": API_KEY, "CF-Access-Client-Secret": "cloudflare-secret-value-5678"}
    assert redactor.text(f"{API_KEY} and cloudflare-secret-value-5678") == "tml-…wxyz and clou…5678"


def test_custom_secret_header_becomes_a_secret_header() -> None:
    redactor = Redactor()
    resolve_headers({"X-Session-Token": HeaderSource(value="abc", secret=True)}, config={}, env={}, redactor=redactor)
    assert redactor.is_secret_header("x-session-token")


class Captured:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200)


LAYER_HEADERS = {
    "User-Agent": "MySDK/Python 1.0",
    "Accept": "application/json",
    "X-API-Key": API_KEY,
    "X-Stainless-OS": "Linux",
}


async def test_layer_replaces_httpx_client_defaults_and_adds_missing_headers() -> None:
    captured = Captured()
    async with httpx.AsyncClient(transport=HeadersLayer(httpx.MockTransport(captured), LAYER_HEADERS)) as client:
        await client.get("http://api.test/v1/things")
    sent = captured.requests[0].headers
    assert sent["user-agent"] == "MySDK/Python 1.0"
    assert sent["accept"] == "application/json"
    assert sent["x-api-key"] == API_KEY
    assert sent["x-stainless-os"] == "Linux"
    assert len(sent.get_list("user-agent")) == 1


async def test_layer_keeps_headers_the_caller_set_explicitly() -> None:
    captured = Captured()
    async with httpx.AsyncClient(transport=HeadersLayer(httpx.MockTransport(captured), LAYER_HEADERS)) as client:
        await client.get(
            "http://api.test/v1/things",
            headers={"user-agent": "caller/2", "ACCEPT": "text/plain", "x-api-key": "tml-caller-key-abcdefgh"},
        )
    sent = captured.requests[0].headers
    assert (sent["user-agent"], sent["accept"], sent["x-api-key"]) == (
        "caller/2",
        "text/plain",
        "tml-caller-key-abcdefgh",
    )
    assert sent["x-stainless-os"] == "Linux"


async def test_a_repeated_default_looking_header_is_the_callers_and_kept() -> None:
    captured = Captured()
    caller = [("User-Agent", f"python-httpx/{httpx.__version__}"), ("User-Agent", "extra/1")]
    request = httpx.Request("GET", "http://api.test/v1/things", headers=caller)
    await HeadersLayer(httpx.MockTransport(captured), LAYER_HEADERS).handle_async_request(request)
    assert captured.requests[0].headers.get_list("user-agent") == [v for _, v in caller]


async def test_two_spellings_of_one_header_add_it_once() -> None:
    captured = Captured()
    layer = HeadersLayer(httpx.MockTransport(captured), {"X-Team": "first", "x-team": "second"})
    await layer.handle_async_request(httpx.Request("GET", "http://api.test/v1/things"))
    assert captured.requests[0].headers.get_list("x-team") == ["first"]


async def test_debug_dump_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    redactor = Redactor(secret_values=[API_KEY])
    layer = HeadersLayer(httpx.MockTransport(Captured()), LAYER_HEADERS, redactor=redactor)
    with caplog.at_level(logging.DEBUG, logger="pristine_transport.headers"):
        async with httpx.AsyncClient(transport=layer) as client:
            await client.get(f"http://api.test/v1/things?token={API_KEY}&page=2")
    (record,) = [r for r in caplog.records if r.name == "pristine_transport.headers"]
    line = record.getMessage()
    assert API_KEY not in line
    assert "'X-API-Key': 'tml-…wxyz'" in line
    assert "token=***&page=2" in line
    assert "'User-Agent': 'MySDK/Python 1.0'" in line


async def test_no_dump_unless_debug_is_enabled(caplog: pytest.LogCaptureFixture) -> None:
    layer = HeadersLayer(httpx.MockTransport(Captured()), LAYER_HEADERS)
    with caplog.at_level(logging.INFO, logger="pristine_transport.headers"):
        async with httpx.AsyncClient(transport=layer) as client:
            await client.get("http://api.test/v1/things")
    assert [r for r in caplog.records if r.name == "pristine_transport.headers"] == []
