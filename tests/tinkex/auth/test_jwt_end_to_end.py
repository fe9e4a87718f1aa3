"""JWTs end to end, against a LocalServer that exchanges them (``client_config.pjwt_auth_enabled``) with lifetimes
of seconds: renewal during a long run (sync and async), the one replay on ``401 invalid_token``, a renewal that keeps
failing (the current token serves until it expires, then a typed AuthenticationError, then recovery), the
credential command run per exchange, and the feature off (no exchange at all)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import tinkex
from pristine_transport.layers.token_auth import TokenUnavailableError
from tinkex import types
from tinkex.testing import FaultRule, LocalServer
from tinkex.types import ClientConfigResponse

KEY = "tml-jwt-end-to-end-0123456789abcdef"
MODEL = "Qwen/Qwen3-8B"
JWT_ON = ClientConfigResponse(pjwt_auth_enabled=True)
INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TINKER_API_KEY", "TINKER_CREDENTIAL_CMD", "TINKER_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def datum() -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints([5, 6, 7, 8]),
        loss_fn_inputs={"target_tokens": [6, 7, 8, 9], "weights": [1.0, 1.0, 1.0, 1.0]},
    )


def step(training: tinkex.TrainingClient) -> None:
    training.forward_backward([datum()], "cross_entropy").result(30)


def issued(server: LocalServer) -> int:
    return server.call(lambda api: api.jwt.issued)


def statuses(server: LocalServer, endpoint: str) -> list[int | None]:
    return [request.status for request in server.ledger.received(endpoint)]


def client_for(server: LocalServer, **options: object) -> tinkex.Client:
    return tinkex.Client(api_key=KEY, base_url=server.base_url, telemetry=False, **options)  # type: ignore[arg-type]


def test_tokens_are_renewed_at_about_half_their_lifetime_during_a_long_run() -> None:
    lifetime, run_s = 2.0, 6.0
    with LocalServer(client_config=JWT_ON, jwt_lifetime=lifetime) as server:
        client = client_for(server)
        try:
            training = client.create_lora_training_client(MODEL, rank=4)
            steps = 0
            started = time.monotonic()
            while time.monotonic() - started < run_s:
                step(training)
                steps += 1
            exchanges = client.holder.auth.jwt.exchanges
        finally:
            client.close()
        refused = server.call(lambda api: api.jwt.refused)
        count = issued(server)
    # Renewed every ~1 s (45-55 % of 2 s): about six exchanges, never one per request.
    assert steps > 6
    assert run_s / lifetime <= count <= 2 * run_s / (0.45 * lifetime)
    assert exchanges == count
    # Every request carried a JWT the renewal kept fresh: on a loaded machine one may still reach the server just
    # after its expiry (sent with a tenth of its life left), and is then replayed once with a new one; every step
    # above succeeded either way.
    assert refused <= 2
    assert sum(request.status == 401 for request in server.ledger.received()) == refused
    # The handshake and the exchanges carry the key itself; nothing else could have (the server takes JWTs only).
    assert statuses(server, "client_config") == [200]


def test_tokens_are_renewed_for_async_calls_on_the_callers_loop() -> None:
    with LocalServer(client_config=JWT_ON, jwt_lifetime=1.5) as server:

        async def run() -> int:
            client = client_for(server)
            try:
                training = await client.create_lora_training_client_async(MODEL, rank=4)
                count = 0
                started = time.monotonic()
                while time.monotonic() - started < 4.0:
                    await (await training.forward_backward_async([datum()], "cross_entropy"))
                    count += 1
                return count
            finally:
                await client.aclose()

        steps = asyncio.run(run())
        count = issued(server)
    assert steps > 3 and count >= 3
    assert all(request.status != 401 for request in server.ledger.received())


def test_a_refused_token_is_replaced_and_the_request_replayed_once() -> None:
    with LocalServer(client_config=JWT_ON, jwt_lifetime=600.0) as server:
        client = client_for(server)
        try:
            training = client.create_lora_training_client(MODEL, rank=4)
            step(training)
            before = issued(server)
            assert server.call(lambda api: api.jwt.revoke_issued()) >= 1  # as if the signing key rotated
            step(training)
            after_revoke = issued(server)
            # The server refuses twice in a row: the one replay is spent, the refusal reaches the caller.
            server.faults.add(FaultRule(endpoint="forward_backward", status=401, headers=INVALID_TOKEN, count=2))
            sent_before = len(server.ledger.received("forward_backward"))
            with pytest.raises(tinkex.AuthenticationError) as refused:
                step(training)
            sent_after = len(server.ledger.received("forward_backward"))
        finally:
            client.close()
    # One exchange replaced the revoked token, however many requests it refused.
    assert after_revoke == before + 1
    refusals = [request for request in server.ledger.received() if request.status == 401]
    assert refusals and all(request.endpoint != "auth_token" for request in refusals)
    for refusal in refusals[: len(refusals) - 2]:  # each revoked-token refusal was followed by its replay, accepted
        replays = [r for r in server.ledger.received(refusal.endpoint) if r.time > refusal.time and r.status == 200]
        assert replays, f"{refusal.endpoint} was not replayed"
    assert sent_after - sent_before == 2  # the request and its one replay, no more
    assert refused.value.status_code == 401


def test_a_failing_renewal_keeps_the_token_until_it_expires_then_raises_a_typed_error() -> None:
    lifetime = 4.0
    with LocalServer(client_config=JWT_ON, jwt_lifetime=lifetime) as server:
        client = client_for(server)
        try:
            training = client.create_lora_training_client(MODEL, rank=4)
            step(training)
            outage = FaultRule(endpoint="auth_token", status=503, count=10_000)
            server.faults.add(outage)
            first_token_at = min(r.time for r in server.ledger.received("auth_token"))
            # Work goes on with the current token while renewals fail.
            while time.monotonic() < first_token_at + lifetime - 1.0:
                step(training)
            assert server.faults.fired(outage) >= 2, "renewal was not retried"
            # Past its expiry, with renewal still failing: a typed authentication error naming why.
            while time.monotonic() < first_token_at + lifetime + 0.2:
                time.sleep(0.1)
            with pytest.raises(tinkex.AuthenticationError) as unavailable:
                step(training)
            error = unavailable.value
            assert isinstance(error, TokenUnavailableError)
            assert "expired" in str(error) and "could not be renewed" in str(error)
            assert "InternalServerError" in str(error) or "503" in str(error)
            # The outage ends: the next request obtains a token and goes through.
            server.faults.remove(outage)
            step(training)
        finally:
            client.close()
    assert {r.endpoint for r in server.ledger.received() if r.status != 200} == {"auth_token"}


def test_the_credential_command_runs_for_each_exchange(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    command = f"echo run >> {runs}; echo {KEY}"
    flags = ClientConfigResponse(pjwt_auth_enabled=True, credential_default_source="credential_cmd")
    with LocalServer(client_config=flags, jwt_lifetime=1.5) as server:
        client = tinkex.Client(base_url=server.base_url, telemetry=False, env={"TINKER_CREDENTIAL_CMD": command})
        try:
            training = client.create_lora_training_client(MODEL, rank=4)
            started = time.monotonic()
            while time.monotonic() - started < 3.5:
                step(training)
        finally:
            client.close()
        exchanges = issued(server)
    assert exchanges >= 3
    # Once for the handshake (no key: the command's output is the credential), then once per exchange.
    assert len(runs.read_text().splitlines()) == exchanges + 1


def test_a_credential_command_alone_cannot_serve_a_server_without_jwts() -> None:
    with LocalServer() as server:
        client = tinkex.Client(base_url=server.base_url, telemetry=False, env={"TINKER_CREDENTIAL_CMD": f"echo {KEY}"})
        try:
            with pytest.raises(tinkex.ConfigurationError, match="TINKER_CREDENTIAL_CMD is used only to obtain tokens"):
                client.create_lora_training_client(MODEL, rank=4).result(30)
        finally:
            client.close()
        assert not server.ledger.received("create_session")


def test_without_the_flag_no_token_is_exchanged() -> None:
    with LocalServer() as server:  # client/config answers pjwt_auth_enabled=false
        client = client_for(server)
        try:
            step(client.create_lora_training_client(MODEL, rank=4))
            exchanges = client.holder.auth.jwt.exchanges
        finally:
            client.close()
    assert statuses(server, "client_config") == [200]
    assert not server.ledger.received("auth_token") and exchanges == 0


def test_a_forced_dialect_asks_nothing_and_sends_the_key() -> None:
    """No handshake (dialect forced), so no flags: the key itself, as to any 0.16 server."""
    with LocalServer() as server:
        client = client_for(server, dialect="0.16")
        try:
            step(client.create_lora_training_client(MODEL, rank=4))
        finally:
            client.close()
    assert not server.ledger.received("client_config") and not server.ledger.received("auth_token")
