"""``x-sdk-method`` of a client's future used as the client (0.16 code), on the wire against LocalServer: the
submit and its future's polls name the future's own class, as the official 0.38 SDK's do
(``BackcompatTrainingClientFuture.forward_backward``); the client got from ``.result()`` names ``TrainingClient``."""

from __future__ import annotations

import asyncio

from sdk_helpers import API_KEY, BASE_MODEL, datum

import tinkex
from tinkex import types
from tinkex.client_futures import BackcompatSamplingClientFuture, BackcompatTrainingClientFuture
from tinkex.sdk_method import tracked_method_names
from tinkex.testing import LocalServer


def methods(server: LocalServer, since: int) -> list[tuple[str, str | None]]:
    """(endpoint, x-sdk-method) of every request after the first ``since``, heartbeat and telemetry left out."""
    return [
        (r.endpoint, r.headers.get("x-sdk-method"))
        for r in server.ledger.received()[since:]
        if r.endpoint not in ("session_heartbeat", "telemetry")
    ]


def test_a_future_used_as_the_client_names_its_own_class_on_submits_and_polls() -> None:
    with LocalServer() as server:
        client = tinkex.Client(api_key=API_KEY, base_url=server.base_url, telemetry=False)
        try:
            training = client.create_lora_training_client(BASE_MODEL, rank=4)
            assert isinstance(training, BackcompatTrainingClientFuture)
            training.result(30)
            start = len(server.ledger.received())
            training.forward_backward([datum([1, 2, 3])], "cross_entropy").result(30)
            training.optim_step(types.AdamParams(learning_rate=1e-3)).result(30)

            async def on_my_loop() -> None:
                await (await training.forward_async([datum([1, 2, 3])], "cross_entropy"))

            asyncio.run(on_my_loop())
            sampler = training.save_weights_and_get_sampling_client()
            assert isinstance(sampler, BackcompatSamplingClientFuture)
            sampler.sample(types.ModelInput.from_ints([1, 2]), 1, types.SamplingParams(max_tokens=2)).result(30)
            forwarded = methods(server, start)
            start = len(server.ledger.received())
            # The client itself (the future's result) names TrainingClient, as before.
            training.result().optim_step(types.AdamParams(learning_rate=1e-3)).result(30)
            direct = methods(server, start)
        finally:
            client.close()
    trainer, sampling = "BackcompatTrainingClientFuture", "BackcompatSamplingClientFuture"
    assert forwarded == [
        ("forward_backward", f"{trainer}.forward_backward"),
        ("retrieve_future", f"{trainer}.forward_backward"),
        ("optim_step", f"{trainer}.optim_step"),
        ("retrieve_future", f"{trainer}.optim_step"),
        ("forward_backward", f"{trainer}.forward_async"),  # a forward is a forward_only forward_backward in 0.38
        ("retrieve_future", f"{trainer}.forward_async"),
        ("save_weights_for_sampler", f"{trainer}.save_weights_and_get_sampling_client"),
        ("retrieve_future", f"{trainer}.save_weights_and_get_sampling_client"),
        ("asample", f"{sampling}.sample"),
        ("retrieve_future", f"{sampling}.sample"),
    ]
    assert direct == [("optim_step", "TrainingClient.optim_step"), ("retrieve_future", "TrainingClient.optim_step")]


def test_every_forwarded_method_is_named_after_the_future_and_its_own_methods_are_not() -> None:
    for cls, official in (
        (BackcompatTrainingClientFuture, "BackcompatTrainingClientFuture"),
        (BackcompatSamplingClientFuture, "BackcompatSamplingClientFuture"),
    ):
        names = tracked_method_names(cls, official)
        assert f"{official}.sample" in names or f"{official}.forward_backward" in names
        for name in names:
            method = getattr(cls, name.split(".")[1])
            assert method.__tinkex_sdk_method__ == name, name
        # result / result_async / future are the future's own: a wait sends nothing that needs a name
        assert not {f"{official}.{own}" for own in ("result", "result_async", "future", "done")} & set(names)
