"""The tiny language model behind the server, over HTTP: training responds to optim_step, sampling is seeded and
reports what the model computes."""

from __future__ import annotations

import httpx
import pytest

from tinkex.testing import LocalServer, tiny_lm

from .conftest import BASE_MODEL

pytestmark = pytest.mark.anyio


async def test_loss_falls_in_a_demo_loop(wire, server: LocalServer) -> None:
    model_id = await wire.model()
    losses = []
    for step in range(5):
        fb = await wire.post("forward_backward", wire.forward_backward_body(model_id, 2 * step + 1))
        await wire.post("optim_step", {"adam_params": {"learning_rate": 1e-3}, "model_id": model_id, "seq_id": 2 * step + 2})
        losses.append((await wire.result(fb))["metrics"]["loss:sum"])
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert losses[-1] < 0.8 * losses[0]


async def test_learning_rate_and_weights_matter(wire) -> None:
    session_id = await wire.session()
    slow, fast = await wire.model(session_id, 0), await wire.model(session_id, 1)
    for model_id, rate in ((slow, 1e-5), (fast, 1e-3)):
        await wire.result(await wire.post("forward_backward", wire.forward_backward_body(model_id, 1)))
        await wire.result(await wire.post("optim_step", {"adam_params": {"learning_rate": rate}, "model_id": model_id, "seq_id": 2}))
    probe = [wire.datum([1, 2, 3, 4], [2, 3, 4, 5], weights=[1.0, 1.0, 0.0, 0.0])]
    losses = []
    for model_id in (slow, fast):
        out = await wire.result(await wire.post("forward", {"forward_input": wire.forward_backward_body(model_id, 3, data=probe)["forward_backward_input"], "model_id": model_id, "seq_id": 3}))
        logprobs = out["loss_fn_outputs"][0]["logprobs"]["data"]
        assert out["metrics"]["loss:sum"] == pytest.approx(-(logprobs[0] + logprobs[1]), rel=1e-5)  # zero weights drop out
        losses.append(out["metrics"]["loss:sum"])
    assert losses[1] < losses[0]


@pytest.mark.parametrize("loss_fn", ["importance_sampling", "ppo", "cispo", "dro"])
async def test_rl_losses_accept_their_inputs(wire, loss_fn: str) -> None:
    model_id = await wire.model()
    data = [wire.datum([1, 2, 3], [2, 3, 4], logprobs=[-0.5, -0.5, -0.5], advantages=[1.0, -0.5, 2.0])]
    out = await wire.result(await wire.post("forward_backward", wire.forward_backward_body(model_id, 1, loss_fn, data)))
    assert set(out["metrics"]) == {"loss:sum"} and len(out["loss_fn_outputs"][0]["logprobs"]["data"]) == 3


def test_positive_advantages_raise_the_sampled_logprobs() -> None:
    base = tiny_lm.base_weights(BASE_MODEL, tiny_lm.DEFAULT_VOCAB_SIZE)
    state = tiny_lm.ModelState.fresh(base.vocab_size, 8, ("attn", "mlp", "unembed"), seed=0)
    data = [tiny_lm.DatumInput([1, 2, 3], {"target_tokens": [2, 3, 4], "logprobs": [-1.0] * 3, "advantages": [1.0] * 3})]
    before, _ = tiny_lm.run_builtin_loss(base, state, data, "importance_sampling", None, backward=True)
    state.apply_optimizer(tiny_lm.AdamSettings())
    after, _ = tiny_lm.run_builtin_loss(base, state, data, "importance_sampling", None, backward=False)
    assert sum(after[0].logprobs) > sum(before[0].logprobs)


async def test_sampling_is_seeded_and_honours_max_tokens_and_stop(wire) -> None:
    sampler_id = await wire.sampler(await wire.session())
    params = {"max_tokens": 6, "temperature": 1.0, "seed": 42}
    first = await wire.result(await wire.post("asample", wire.sample_body(sampler_id, 0, sampling_params=params)))
    again = await wire.result(await wire.post("asample", wire.sample_body(sampler_id, 1, sampling_params=params)))
    # The same draw; each sequence still gets its own id.
    ids = [s.pop("sequence_id") for s in first["sequences"] + again["sequences"]]
    assert first == again and len(set(ids)) == len(ids)
    tokens = first["sequences"][0]["tokens"]
    assert len(tokens) == 6 and all(0 <= t < tiny_lm.DEFAULT_VOCAB_SIZE for t in tokens)
    assert first["sequences"][0]["stop_reason"] == "length"

    stop = tokens[1]
    stopped = await wire.result(
        await wire.post("asample", wire.sample_body(sampler_id, 2, sampling_params={**params, "stop": [stop]}))
    )
    sequence = stopped["sequences"][0]
    assert sequence["stop_reason"] == "stop" and sequence["tokens"][-1] == stop
    assert sequence["tokens"] == tokens[: len(sequence["tokens"])]
    assert len(sequence["logprobs"]) == len(sequence["tokens"])


async def test_unseeded_samples_are_reproducible_across_servers(headers: dict[str, str]) -> None:
    async def run() -> dict:
        async with LocalServer(seed=3) as server:
            async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
                session = (await http.post("/api/v1/create_session", json={"tags": [], "user_metadata": {}, "sdk_version": "x"})).json()
                body = {"session_id": session["session_id"], "sampling_session_seq_id": 0, "base_model": "Qwen/Qwen3-8B", "model_path": None}
                sampler_id = (await http.post("/api/v1/create_sampling_session", json=body)).json()["sampling_session_id"]
                sample = {"num_samples": 3, "prompt": {"chunks": [{"tokens": [11, 12, 13, 14]}]}, "sampling_params": {"max_tokens": 5}, "sampling_session_id": sampler_id, "seq_id": 0}
                future = (await http.post("/api/v1/asample", json=sample)).json()
                return (await http.post("/api/v1/retrieve_future", json={"request_id": future["request_id"]})).json()

    first, second = await run(), await run()
    assert first == second
    assert len({tuple(s["tokens"]) for s in first["sequences"]}) > 1  # the samples differ from each other


async def test_prompt_logprobs_and_topk(wire) -> None:
    sampler_id = await wire.sampler(await wire.session())
    body = wire.sample_body(sampler_id, num_samples=1, prompt_logprobs=True, topk_prompt_logprobs=2, sampling_params={"max_tokens": 1, "temperature": 0.0})
    result = await wire.result(await wire.post("asample", body))
    assert result["prompt_logprobs"][0] is None and all(v < 0 for v in result["prompt_logprobs"][1:])
    topk = result["topk_prompt_logprobs"]
    assert topk[0] is None and all(len(row) == 2 and row[0][1] >= row[1][1] for row in topk[1:])
    # Greedy picks the model's likeliest next token, and every number is the base model's own.
    base = tiny_lm.base_weights(BASE_MODEL, tiny_lm.DEFAULT_VOCAB_SIZE)
    expected = tiny_lm.topk_prompt_logprobs(base, {}, 1.0, [5, 6, 7, 0], 1)[-1][0][0]
    assert result["sequences"][0]["tokens"][0] == expected
    assert result["prompt_logprobs"][1:] == pytest.approx(tiny_lm.prompt_logprobs(base, {}, 1.0, [5, 6, 7])[1:], abs=1e-6)
