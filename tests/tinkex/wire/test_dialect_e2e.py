"""tinkex end to end against LocalServer in each wire dialect, forced and negotiated, and against a protobuf-only
server with no setting at all; then the 0.38 dialect's negotiated extras: protobuf results, the poll's request
type for a forward, ``client/dynamic_config`` (a change applied mid-run) and zstd bodies (flag on and off)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import tinkex
from tinkex import types as t
from tinkex.testing import FaultRule, LocalServer
from tinkex.testing.dialect import change_dynamic_config
from tinkex.wire import dynamic_config

API_KEY = "tml-dialect-e2e"
MODEL = "Qwen/Qwen3-8B"
PROTOBUF = "application/x-protobuf"
BATCH = [
    t.Datum(model_input=t.ModelInput.from_ints([1, 2, 3, 4]), loss_fn_inputs={"target_tokens": [2, 3, 4, 5]}),
    t.Datum(model_input=t.ModelInput.from_ints([5, 6, 7]), loss_fn_inputs={"target_tokens": [6, 7, 8]}),
]
PROMPT = t.ModelInput.from_ints([1, 2, 3])


@dataclass(frozen=True)
class Case:
    setting: str | None
    """``TINKEX_WIRE_DIALECT``; None: nothing set (the default, auto)."""
    server: dict[str, Any]
    dialect: str
    """What the client must end up speaking."""
    handshake: bool


CASES = {
    "forced 0.16": Case("0.16", {}, "0.16", handshake=False),
    "forced 0.38": Case("0.38", {}, "0.38", handshake=True),  # for the flags: the dialect stays forced
    "negotiated 0.38": Case("auto", {}, "0.38", handshake=True),
    "negotiated 0.16 (no handshake on the server)": Case(
        "auto", {"faults": [FaultRule(endpoint="client_config", status=404)]}, "0.16", handshake=True
    ),
    "protobuf-only server, no setting": Case(None, {"json_training_bodies": False}, "0.38", handshake=True),
    "protobuf-only server, forced 0.38": Case("0.38", {"json_training_bodies": False}, "0.38", handshake=True),
}


def _client(server: LocalServer, setting: str | None) -> tinkex.Client:
    env = {} if setting is None else {"TINKEX_WIRE_DIALECT": setting}
    return tinkex.Client(api_key=API_KEY, base_url=server.base_url, env=env, telemetry=False)


def _run(client: tinkex.Client) -> dict[str, Any]:
    """The recipe: train, forward, save for the sampler, sample, logprobs, save and load state."""
    training = client.create_lora_training_client(MODEL, rank=4)
    losses = []
    for _ in range(3):
        backward = training.forward_backward(BATCH, "cross_entropy")
        optim = training.optim_step(t.AdamParams(learning_rate=1e-2))
        losses.append(backward.result(20).metrics["loss:sum"])
        optim.result(20)
    forward = training.forward(BATCH, "cross_entropy").result(20)
    sampler = client.create_sampling_client(model_path=training.save_weights_for_sampler("s").result(20).path)
    sample = sampler.sample(PROMPT, 2, t.SamplingParams(max_tokens=4, seed=7)).result(20)
    logprobs = sampler.compute_logprobs(PROMPT).result(20)
    state = training.save_state("c").result(20).path
    training.load_state(state).result(20)
    return {
        "losses": losses,
        "forward": [output["logprobs"].data for output in forward.loss_fn_outputs],
        "tokens": [sequence.tokens for sequence in sample.sequences],
        "sequence_ids": [sequence.sequence_id for sequence in sample.sequences],
        "logprobs": logprobs,
    }


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """The same recipe in the JSON dialect, which every other run must reproduce."""
    with LocalServer() as server:
        client = _client(server, "0.16")
        try:
            return _run(client)
        finally:
            client.close()


def _polls(server: LocalServer, request_type: str) -> list[Any]:
    return [r for r in server.ledger.received("retrieve_future") if r.headers.get("x-tinker-request-type") == request_type]


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_the_recipe_in_each_dialect(case: Case, reference: dict[str, Any]) -> None:
    server_options = dict(case.server)
    faults = server_options.pop("faults", ())
    with LocalServer(faults=faults, **server_options) as server:
        client = _client(server, case.setting)
        try:
            outcome = _run(client)
            assert client.holder.known_wire_dialect() == case.dialect
        finally:
            client.close()
        received = server.ledger.received()
        endpoints = [r.endpoint for r in received]
        assert (endpoints[0] == "client_config") is case.handshake
        assert endpoints.count("client_config") == int(case.handshake)
        # A 0.38 server's dynamic config is read once at start (its refresh interval is minutes).
        assert endpoints.count("client_dynamic_config") == int(case.dialect == "0.38")
        failed = [(r.endpoint, r.status) for r in received if r.status is None or r.status >= 400]
        assert failed == ([("client_config", 404)] if case.dialect == "0.16" and case.handshake else [])
        training = [(r.endpoint, r.headers.get("content-type")) for r in received
                    if r.endpoint in ("forward", "forward_backward")]
        accepts = {r.headers.get("accept") for kind in ("ForwardBackward", "Forward", "Sample") for r in _polls(server, kind)}
        if case.dialect == "0.38":
            assert set(training) == {("forward_backward", PROTOBUF)}
            assert accepts == {PROTOBUF}  # results of these three come back as protobuf
            assert _polls(server, "Forward"), "a forward sent to forward_backward still polls as Forward"
        else:
            assert set(training) == {("forward_backward", "application/json"), ("forward", "application/json")}
            assert accepts == {"application/json"}
        assert {r.headers.get("accept") for r in _polls(server, "OptimStep")} == {"application/json"}
        assert server.ledger.duplicates_executed() == []
    assert outcome["losses"] == pytest.approx(reference["losses"], rel=1e-6)
    for mine, theirs in zip(outcome["forward"], reference["forward"], strict=True):
        assert mine == pytest.approx(theirs, rel=1e-6)
    assert outcome["tokens"] == reference["tokens"]
    assert all(outcome["sequence_ids"])  # from the submit reply in both dialects
    assert outcome["logprobs"][0] is None is reference["logprobs"][0]  # the first token has none
    assert outcome["logprobs"][1:] == pytest.approx(reference["logprobs"][1:], rel=1e-6)


# client/dynamic_config


@pytest.fixture
def quick_refresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """Refreshes every 0.1 s instead of the official floor of 10 s (the server says 0)."""
    monkeypatch.setattr(dynamic_config, "MIN_REFRESH_INTERVAL_S", 0.1)
    yield 0.1


def _wait_until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _cancel_a_sample(sampler: Any, server: LocalServer) -> None:
    """Start a sample that cannot finish soon, then cancel it once it is being polled (the sampler knows its request
    id then, and may cancel it on the server; cancelled while its submit is in flight, it has nothing to name)."""
    polled = len(server.ledger.received("retrieve_future"))
    pending = sampler.sample(PROMPT, 1, t.SamplingParams(max_tokens=2))
    _wait_until(lambda: len(server.ledger.received("retrieve_future")) > polled, "the sample to be polled")
    assert pending.future().cancel()


def test_a_dynamic_config_change_applies_to_requests_after_the_refresh(quick_refresh: float) -> None:
    initial = t.ClientDynamicConfigResponse(refresh_interval_sec=0, sample_cancel_enabled=True)
    with LocalServer(dynamic_config=initial, latency_by_endpoint={"asample": 30.0}, long_poll_timeout=0.2) as server:
        client = _client(server, None)
        try:
            sampler = client.create_sampling_client(base_model=MODEL).result()
            assert client.holder.dynamic_config().sample_cancel_enabled
            _cancel_a_sample(sampler, server)
            _wait_until(lambda: len(server.ledger.executions("cancel_future")) == 1, "the enabled cancel")

            refreshed = len(server.ledger.received("client_dynamic_config"))
            change_dynamic_config(server, sample_cancel_enabled=False)
            # Three refreshes later the client surely holds the new flags: the first may have been answered before
            # the change, and the server records the third only once the client applied the second's answer.
            _wait_until(lambda: len(server.ledger.received("client_dynamic_config")) >= refreshed + 3, "refreshes")
            assert not client.holder.dynamic_config().sample_cancel_enabled
            _cancel_a_sample(sampler, server)
            time.sleep(0.3)  # room for a cancel that must not come
            assert len(server.ledger.received("cancel_future")) == 1
        finally:
            client.close()
        refreshes = server.ledger.received("client_dynamic_config")
        assert len(refreshes) >= 3 and {r.status for r in refreshes} == {200}
        time.sleep(0.3)
        assert len(server.ledger.received("client_dynamic_config")) == len(refreshes), "closing stops the refreshes"


def test_a_server_without_dynamic_config_gives_the_defaults(quick_refresh: float) -> None:
    faults = [FaultRule(endpoint="client_dynamic_config", status=404)]
    with LocalServer(faults=faults, latency_by_endpoint={"asample": 30.0}, long_poll_timeout=0.2) as server:
        client = _client(server, None)
        try:
            sampler = client.create_sampling_client(base_model=MODEL).result()
            assert client.holder.dynamic_config() == t.ClientDynamicConfigResponse()  # cancel off by default
            _cancel_a_sample(sampler, server)
            time.sleep(0.3)
            assert server.ledger.received("cancel_future") == []
        finally:
            client.close()
        assert [r.status for r in server.ledger.received("client_dynamic_config")][0] == 404


# zstd


@pytest.mark.parametrize("compress", [True, False], ids=["zstd on", "zstd off"])
def test_forward_backward_bodies_follow_the_compression_flag(compress: bool, reference: dict[str, Any]) -> None:
    flags = t.ClientConfigResponse(proto_compress_fwdbwd=compress)
    with LocalServer(client_config=flags, json_training_bodies=False) as server:
        client = _client(server, None)
        try:
            outcome = _run(client)
        finally:
            client.close()
        bodies = server.ledger.received("forward_backward")
        assert len(bodies) == 4 and all(r.status == 200 for r in bodies)
        assert {r.headers.get("content-encoding") for r in bodies} == ({"zstd"} if compress else {None})
        assert {r.headers.get("content-type") for r in bodies} == {PROTOBUF}
    assert outcome["losses"] == pytest.approx(reference["losses"], rel=1e-6)
    for mine, theirs in zip(outcome["forward"], reference["forward"], strict=True):
        assert mine == pytest.approx(theirs, rel=1e-6)
