"""The CLI's pure decisions, by table: the connection hint, the SDK's advice in CLI terms, the retry budget."""

from __future__ import annotations

import pytest

from tinkex import cli


@pytest.mark.parametrize(
    ("base_url", "detail", "expected"),
    [
        (
            "http://127.0.0.1:9",
            "Cannot connect to host 127.0.0.1:9 ssl:default [Connection refused]",
            "cannot reach the server at http://127.0.0.1:9: Cannot connect to host 127.0.0.1:9 [Connection refused]. "
            "Is the server running at http://127.0.0.1:9?",
        ),
        (None, "ConnectError", "cannot reach the server at the configured base URL: ConnectError. "
         "Is the server running at the configured base URL?"),
    ],
)
def test_connection_hint(base_url: str | None, detail: str, expected: str) -> None:
    assert cli.connection_hint(base_url, detail) == expected


@pytest.mark.parametrize(
    ("sdk", "for_cli"),
    [
        (
            "No Tinker API key: pass tinkex.Client(api_key='tml-…') or set the TINKER_API_KEY environment variable.",
            "No Tinker API key: pass --api-key or set the TINKER_API_KEY environment variable.",
        ),
        ("./ckpt/x already exists; pass force=True (CLI: --force) to replace it", "./ckpt/x already exists; pass --force to replace it"),
        ("something else", "something else"),
    ],
)
def test_sdk_advice_in_cli_terms(sdk: str, for_cli: str) -> None:
    assert cli._for_the_cli(sdk) == for_cli


@pytest.mark.parametrize(
    ("given", "environment", "no_progress_s"),
    [(None, None, cli.DEFAULT_TIMEOUT_S), (None, "7", 7.0), (3.0, "7", 3.0), (600.0, None, 600.0)],
)
def test_cli_deadlines(
    given: float | None, environment: str | None, no_progress_s: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    if environment is None:
        monkeypatch.delenv(cli.ENV_TIMEOUT, raising=False)
    else:
        monkeypatch.setenv(cli.ENV_TIMEOUT, environment)
    deadlines = cli.cli_deadlines(given)
    assert deadlines.no_progress_s == no_progress_s and deadlines.budget.round_max_s <= 5.0


def test_bad_environment_timeout_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.ENV_TIMEOUT, "-1")
    with pytest.raises(cli.UsageError, match="TINKEX_CLI_TIMEOUT"):
        cli.cli_deadlines(None)
