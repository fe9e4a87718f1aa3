"""tinkex chooses its wire dialect per server with ``auto``: the client/config handshake first (404/405: the JSON
dialect of 0.16, silently, asked once); or the dialect is forced by ``resolve_config(dialect=...)`` /
``TINKEX_WIRE_DIALECT``. In the 0.38 dialect forward and forward_backward bodies are protobuf, which protobuf-only
servers require."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

import tinkex
from pristine_transport.errors import ConfigurationError
from pristine_transport.manifest import ManifestError, load_manifest
from tinkex import types as t
from tinkex.config import load_tinker_manifest, resolve_config
from tinkex.testing import FaultRule, LocalServer
from tinkex.wire.dialect import dialect_of_handshake, dialect_setting, training_body
from tinkex.wire.protobuf_bodies import decode_forward_backward_request

API_KEY = "tml-dialect"
DATUM = t.Datum(model_input=t.ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={"target_tokens": [2, 3, 4]})


@pytest.mark.parametrize(
    ("explicit", "env", "expected"),
    [
        (None, {}, None),  # DEFAULT_DIALECT_SETTING: auto
        (None, {"TINKEX_WIRE_DIALECT": "0.38"}, "0.38"),
        (None, {"TINKEX_WIRE_DIALECT": " 0.16 "}, "0.16"),
        (None, {"TINKEX_WIRE_DIALECT": "AUTO"}, None),
        (None, {"TINKEX_WIRE_DIALECT": ""}, None),  # empty counts as unset
        ("0.16", {"TINKEX_WIRE_DIALECT": "0.38"}, "0.16"),  # the argument wins
        ("auto", {"TINKEX_WIRE_DIALECT": "0.38"}, None),
    ],
)
def test_dialect_setting(explicit: str | None, env: dict[str, str], expected: str | None) -> None:
    assert dialect_setting(explicit, env) == expected


@pytest.mark.parametrize(("explicit", "env"), [("json", {}), (None, {"TINKEX_WIRE_DIALECT": "protobuf"})])
def test_an_unknown_dialect_is_a_configuration_error(explicit: str | None, env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="is not a wire dialect: use '0.16', '0.38' or 'auto'"):
        resolve_config(api_key=API_KEY, dialect=explicit, env=env)


@pytest.mark.parametrize(("status", "expected"), [(200, "0.38"), (204, "0.38"), (404, "0.16"), (405, "0.16")])
def test_dialect_of_handshake(status: int, expected: str) -> None:
    assert dialect_of_handshake(status) == expected


@pytest.mark.parametrize("status", [400, 401, 403, 500, 503])
def test_other_handshake_answers_say_nothing(status: int) -> None:
    with pytest.raises(ValueError, match=f"HTTP {status}"):
        dialect_of_handshake(status)


def test_without_a_setting_tinkex_asks_the_server_first() -> None:
    with LocalServer() as server:
        client = tinkex.ServiceClient(base_url=server.base_url, api_key=API_KEY, env={})
        try:
            client.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=8).forward([DATUM], "cross_entropy").result()
        finally:
            client.close()
        assert [r.endpoint for r in server.ledger.received()][0] == "client_config"
        assert _training_requests(server) == [("forward_backward", "application/x-protobuf")]


def _train(server: LocalServer, dialect: str = "auto") -> tuple[list[float], list[float]]:
    env = {"TINKEX_WIRE_DIALECT": dialect}
    client = tinkex.ServiceClient(base_url=server.base_url, api_key=API_KEY, env=env)
    try:
        training = client.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=8)
        backward = training.forward_backward([DATUM, DATUM], "cross_entropy").result()
        forward = training.forward([DATUM], "cross_entropy").result()
        # A second training client of the same ServiceClient: no second handshake.
        client.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=8).forward([DATUM], "cross_entropy").result()
    finally:
        client.close()
    return backward.loss_fn_outputs[1]["logprobs"].data, forward.loss_fn_outputs[0]["logprobs"].data


def _training_requests(server: LocalServer) -> list[tuple[str, str | None]]:
    return [
        (r.endpoint, r.headers.get("content-type"))
        for r in server.ledger.received()
        if r.endpoint in ("forward", "forward_backward")
    ]


def test_negotiated_038_sends_protobuf_and_agrees_with_json() -> None:
    with LocalServer() as server:
        negotiated = _train(server)
        received = server.ledger.received()
        assert received[0].endpoint == "client_config"
        assert [r.endpoint for r in received].count("client_config") == 1
        assert _training_requests(server) == [("forward_backward", "application/x-protobuf")] * 3
    with LocalServer() as server:
        forced_json = _train(server, dialect="0.16")
        assert "client_config" not in [r.endpoint for r in server.ledger.received()]
        assert _training_requests(server) == [
            ("forward_backward", "application/json"), ("forward", "application/json"), ("forward", "application/json")
        ]
    assert negotiated[0] == pytest.approx(forced_json[0], rel=1e-6)
    assert negotiated[1] == pytest.approx(forced_json[1], rel=1e-6)


@pytest.mark.parametrize("status", [404, 405])
def test_a_server_without_the_handshake_gets_json_silently(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with LocalServer(faults=[FaultRule(endpoint="client_config", status=status)]) as server:
        with caplog.at_level(logging.DEBUG):
            _train(server)
        assert [r.endpoint for r in server.ledger.received()].count("client_config") == 1  # asked once
        assert {content_type for _, content_type in _training_requests(server)} == {"application/json"}
    # Only this client's records count: a client another test dropped may still be logging its own troubles.
    about_the_handshake = ("client/config", "client_config", "dialect", "405", "404")
    assert not [
        r for r in caplog.records
        if r.levelno >= logging.WARNING and any(word in r.getMessage() for word in about_the_handshake)
    ]


def test_the_handshake_is_retried_like_any_request() -> None:
    with LocalServer(faults=[FaultRule(endpoint="client_config", status=503, count=2)]) as server:
        _train(server)
        statuses = [r.status for r in server.ledger.received() if r.endpoint == "client_config"]
        assert statuses == [503, 503, 200]
        assert {content_type for _, content_type in _training_requests(server)} == {"application/x-protobuf"}


def test_a_protobuf_only_server_works_negotiated_and_refuses_forced_json() -> None:
    with LocalServer(json_training_bodies=False) as server:
        _train(server)
        assert all(r.status == 200 for r in server.ledger.received())
    with LocalServer(json_training_bodies=False) as server:
        with pytest.raises(tinkex.APIStatusError) as refused:
            _train(server, dialect="0.16")
        assert refused.value.status_code == 415
        assert server.ledger.executions("forward_backward") == []


def test_forced_038_reads_the_servers_flags_and_keeps_its_dialect() -> None:
    """The handshake also carries the server's flags (JWT, limits): a forced 0.38 asks for them as 0.38 does, and
    keeps its dialect when the server has no handshake."""
    with LocalServer(client_config=t.ClientConfigResponse(pjwt_auth_enabled=True)) as server:
        _train(server, dialect="0.38")
        endpoints = [r.endpoint for r in server.ledger.received()]
        assert endpoints[0] == "client_config" and endpoints.count("client_config") == 1
        assert "auth_token" in endpoints  # the flag was read: the key was exchanged for a JWT
        assert {content_type for _, content_type in _training_requests(server)} == {"application/x-protobuf"}
    with LocalServer(faults=[FaultRule(endpoint="client_config", status=404)]) as server:
        _train(server, dialect="0.38")
        assert {content_type for _, content_type in _training_requests(server)} == {"application/x-protobuf"}


def _fb(forward: bool) -> t.ForwardBackwardRequest | t.ForwardRequest:
    fb_input = t.ForwardBackwardInput(data=[DATUM], loss_fn="cross_entropy")
    if forward:
        return t.ForwardRequest(forward_input=fb_input, model_id="m", seq_id=1)
    return t.ForwardBackwardRequest(forward_backward_input=fb_input, model_id="m", seq_id=1)


@pytest.mark.parametrize(
    ("forward", "dialect", "endpoint", "content_type"),
    [
        (False, "0.16", "forward_backward", None),
        (True, "0.16", "forward", None),
        (False, "0.38", "forward_backward", "application/x-protobuf"),
        (True, "0.38", "forward_backward", "application/x-protobuf"),
    ],
)
def test_the_shipped_manifest_says_how_training_bodies_travel(
    forward: bool, dialect: str, endpoint: str, content_type: str | None
) -> None:
    body = training_body(_fb(forward), dialect, load_tinker_manifest())  # type: ignore[arg-type]
    assert body.endpoint == endpoint
    if content_type is None:
        assert body.send_kwargs == {"json": _fb(forward)}
    else:
        assert body.send_kwargs["headers"] == {"Content-Type": content_type}
        assert decode_forward_backward_request(body.send_kwargs["content"]) == _fb(forward)


def _manifest_with(dialects: dict[str, object]) -> dict[str, object]:
    raw = json.loads(Path(tinkex.__file__).with_name("manifest.json").read_text())
    raw["endpoints"]["forward_backward"]["dialects"] = dialects
    return raw


@pytest.mark.parametrize(
    ("dialects", "problem"),
    [
        ({"0.38": {"endpoint": "nowhere"}}, "endpoints.forward_backward.dialects.0.38.endpoint: unknown endpoint"),
        ({"0.38": {"serializer": "protobuf", "message": "x.Y"}}, "serializer 'protobuf' needs message and content_type"),
    ],
)
def test_manifest_dialect_entries_are_checked(dialects: dict[str, object], problem: str) -> None:
    with pytest.raises(ManifestError, match=re.escape(problem)):
        load_manifest(_manifest_with(dialects))


def test_a_serializer_tinkex_has_no_codec_for_is_named() -> None:
    manifest = load_manifest(_manifest_with(
        {"0.38": {"serializer": "msgpack", "message": "x.Y", "content_type": "application/msgpack"}}
    ))
    with pytest.raises(ConfigurationError, match="no 'msgpack' codec for 'x.Y'"):
        training_body(_fb(False), "0.38", manifest)


def test_the_constructor_keyword_picks_the_dialect_over_the_environment() -> None:
    with LocalServer(json_training_bodies=False) as server:
        client = tinkex.ServiceClient(
            base_url=server.base_url, api_key=API_KEY, dialect="auto", env={"TINKEX_WIRE_DIALECT": "0.16"}
        )
        try:
            training = client.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=8)
            training.forward_backward([DATUM], "cross_entropy").result()
        finally:
            client.close()
        assert [r.endpoint for r in server.ledger.received()][0] == "client_config"
        assert _training_requests(server) == [("forward_backward", "application/x-protobuf")]
    with pytest.raises(tinkex.ConfigurationError, match="dialect"):
        tinkex.ServiceClient(api_key=API_KEY, dialect="0.99")
