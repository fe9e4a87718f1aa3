"""What tinkex tells the server about itself and what the server tells back, against LocalServer: every request of a
public call carries ``x-sdk-version`` and ``x-sdk-method`` (the official class and method names), work of the
client as a whole carries neither; a deprecation note the server repeats on every response is shown once per client
as a ``ServerDeprecationWarning`` (and logged at its level)."""

from __future__ import annotations

import asyncio
import logging
import warnings

import pytest

import tinkex
from tinkex import types
from tinkex.deprecation import ServerDeprecationWarning
from tinkex.sdk_method import tracked_method_names
from tinkex.testing import LocalServer

KEY = "tml-sdk-headers-0123456789abcdef"
MODEL = "Qwen/Qwen3-8B"


def datum() -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints([5, 6, 7, 8]),
        loss_fn_inputs={"target_tokens": [6, 7, 8, 9], "weights": [1.0, 1.0, 1.0, 1.0]},
    )


def methods_by_endpoint(server: LocalServer) -> dict[str, set[str | None]]:
    seen: dict[str, set[str | None]] = {}
    for request in server.ledger.received():
        seen.setdefault(request.endpoint, set()).add(request.headers.get("x-sdk-method"))
    return seen


def test_requests_of_a_public_call_name_it_and_background_work_names_nothing() -> None:
    with LocalServer() as server:
        client = tinkex.Client(api_key=KEY, base_url=server.base_url, telemetry=True)
        try:
            training = client.create_lora_training_client(MODEL, rank=4).result(30)
            training.forward_backward([datum()], "cross_entropy").result(30)
            sampler = training.save_weights_and_get_sampling_client()
            sampler.sample(types.ModelInput.from_ints([1, 2]), 1, types.SamplingParams(max_tokens=3)).result(30)
            client.create_rest_client().list_training_runs().result(30)

            async def on_my_loop() -> None:
                await (await training.forward_backward_async([datum()], "cross_entropy"))

            asyncio.run(on_my_loop())
        finally:
            client.close()
        seen = methods_by_endpoint(server)
        versions = {request.headers.get("x-sdk-version") for request in server.ledger.received()}
    assert seen["create_model"] == {"ServiceClient.create_lora_training_client"}
    assert seen["forward_backward"] == {"TrainingClient.forward_backward", "TrainingClient.forward_backward_async"}
    assert seen["save_weights_for_sampler"] == {"TrainingClient.save_weights_and_get_sampling_client"}
    # the sampler's future used as the client names its own class, as officially (tests/tinkex/sdk/test_backcompat_sdk_method)
    assert seen["asample"] == {"BackcompatSamplingClientFuture.sample"}
    assert seen["list_training_runs"] == {"RestClient.list_training_runs"}
    # The client's own work: handshake, session, heartbeat and telemetry belong to no call.
    for endpoint in ("client_config", "create_session", "session_heartbeat", "telemetry"):
        assert seen.get(endpoint, {None}) == {None}, endpoint
    assert versions == {"0.38.0", None}


def test_the_tracked_names_are_the_official_classes_methods() -> None:
    names = tracked_method_names(tinkex.Client, "ServiceClient")
    assert "ServiceClient.create_lora_training_client" in names and "ServiceClient.create_rest_client" in names
    assert all(not name.split(".")[1].startswith("_") for name in names)


def test_a_deprecation_note_is_shown_once_per_client(caplog: pytest.LogCaptureFixture) -> None:
    note = "tinkex 0.16-dialect bodies are deprecated; use the 0.38 dialect before 2027-01-01"
    with LocalServer(deprecation_note=note, deprecation_level="error") as server:
        with warnings.catch_warnings(record=True) as shown, caplog.at_level(logging.WARNING):
            warnings.simplefilter("always")
            for _ in range(2):  # two clients: each is told once
                client = tinkex.Client(api_key=KEY, base_url=server.base_url, telemetry=False)
                try:
                    training = client.create_lora_training_client(MODEL, rank=4).result(30)
                    for _ in range(3):
                        training.forward_backward([datum()], "cross_entropy").result(30)
                finally:
                    client.close()
            answered = len(server.ledger.received())
    notices = [w for w in shown if issubclass(w.category, ServerDeprecationWarning)]
    assert answered > 10  # every one of these responses carried the note
    assert len(notices) == 2 and all(note in str(w.message) for w in notices)
    assert issubclass(ServerDeprecationWarning, FutureWarning)  # shown by default
    logged = [r for r in caplog.records if note in r.getMessage()]
    assert len(logged) == 2 and {r.levelno for r in logged} == {logging.ERROR}


def test_no_note_no_warning() -> None:
    with LocalServer() as server:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            client = tinkex.Client(api_key=KEY, base_url=server.base_url, telemetry=False)
            try:
                client.create_lora_training_client(MODEL, rank=4).result(30)
            finally:
                client.close()
    assert not [w for w in shown if issubclass(w.category, ServerDeprecationWarning)]
