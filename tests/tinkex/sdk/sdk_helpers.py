"""Shared by the tinkex SDK tests: a recording wire fake (exact request bytes) and client builders that ignore the
developer's own ``TINKER_*`` environment (the local server is used for behaviour)."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

import tinkex
from tinkex import types
from tinkex.testing import LocalServer

API_KEY = "tml-sdk-test-key-0123456789"
BASE_MODEL = "Qwen/Qwen3-8B"
SESSION_ID = "sess-b4eedb46"
MODEL_ID = f"{SESSION_ID}:train:0"

Override = Callable[[httpx.Request, Any], Awaitable[httpx.Response | None]]


@dataclass(frozen=True)
class Sent:
    """One request as the wire fake received it."""

    endpoint: str
    method: str
    path: str
    headers: httpx.Headers
    raw: bytes
    body: Any
    time: float
    query: httpx.QueryParams = httpx.QueryParams()


class WireFake:
    """Answers every Tinker endpoint the way the 0.16 server does (docs/wire.md §12.2) and records each request.

    Thread-safe: the runtime loop, the heartbeat thread and a test's own loop all send through it. ``overrides``
    maps an endpoint name to an async hook ``(request, body) -> Response | None``; ``None`` falls through to the
    canned answer.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: list[Sent] = []
        self._results: dict[str, Any] = {}
        self._future_ids: dict[str, list[str]] = {}
        self._request_ids = itertools.count(1)
        self._sampler_ids = itertools.count(0)
        self.overrides: dict[str, Override] = {}

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.MockTransport(self.handle)

    def sent(self, endpoint: str | None = None) -> list[Sent]:
        with self._lock:
            return [s for s in self._sent if endpoint is None or s.endpoint == endpoint]

    def endpoints(self) -> list[str]:
        return [s.endpoint for s in self.sent()]

    @staticmethod
    def try_again(request_id: str) -> httpx.Response:
        return httpx.Response(200, json={"type": "try_again", "request_id": request_id, "queue_state": "active"})

    def future_ids(self, endpoint: str) -> list[str]:
        """The request ids answered to ``endpoint``'s submissions, in order."""
        with self._lock:
            return list(self._future_ids.get(endpoint, ()))

    async def handle(self, request: httpx.Request) -> httpx.Response:
        raw = await request.aread()
        body = msgspec.json.decode(raw) if raw else None
        endpoint = request.url.path.rsplit("/api/v1/", 1)[-1]
        with self._lock:
            self._sent.append(
                Sent(endpoint, request.method, request.url.path, request.headers, raw, body, time.monotonic(),
                     request.url.params)
            )
        override = self.overrides.get(endpoint)
        if override is not None:
            answered = await override(request, body)
            if answered is not None:
                return answered
        return self._answer(endpoint, body)

    def _future(self, endpoint: str, result: Any, model_id: str | None = None) -> httpx.Response:
        with self._lock:
            request_id = f"req-{next(self._request_ids)}"
            self._results[request_id] = result
            self._future_ids.setdefault(endpoint, []).append(request_id)
        return httpx.Response(200, json={"request_id": request_id, "model_id": model_id})

    def _answer(self, endpoint: str, body: Any) -> httpx.Response:
        if endpoint == "create_session":
            return httpx.Response(200, json={"session_id": SESSION_ID})
        if endpoint in ("session_heartbeat",):
            return httpx.Response(200, json={})
        if endpoint == "telemetry":
            return httpx.Response(200, json={"status": "accepted"})
        if endpoint == "create_sampling_session":
            return httpx.Response(200, json={"sampling_session_id": f"{SESSION_ID}:sample:{next(self._sampler_ids)}"})
        if endpoint == "create_model":
            return self._future(endpoint, {"model_id": MODEL_ID}, MODEL_ID)
        if endpoint in ("forward", "forward_backward"):
            key = "forward_input" if endpoint == "forward" else "forward_backward_input"
            data = body[key]["data"]
            outputs = [
                {"logprobs": {"data": [-0.5] * len(d["model_input"]["chunks"][0]["tokens"]), "dtype": "float32"}}
                for d in data
            ]
            metrics = {"loss:sum": float(len(data)), "tokens:max": float(len(data))}
            result = {"loss_fn_output_type": "ArrayRecord", "loss_fn_outputs": outputs, "metrics": metrics}
            return self._future(endpoint, result)
        if endpoint == "optim_step":
            return self._future(endpoint, {"metrics": {}})
        if endpoint == "save_weights":
            return self._future(endpoint, {"path": f"tinker://{body['model_id']}/weights/{body['path']}"})
        if endpoint == "load_weights":
            return self._future(endpoint, {"path": body["path"]})
        if endpoint == "save_weights_for_sampler":
            if "path" in body:
                return self._future(endpoint, {"path": f"tinker://{body['model_id']}/sampler_weights/{body['path']}"})
            sampler = f"{SESSION_ID}:sample:{body['sampling_session_seq_id']}"
            return self._future(endpoint, {"sampling_session_id": sampler, "path": None})
        if endpoint == "asample":
            tokens = body["prompt"]["chunks"][0]["tokens"]
            max_tokens = body["sampling_params"].get("max_tokens") or 4
            sequence = {"stop_reason": "length", "tokens": [8] * max_tokens, "logprobs": [-0.1] * max_tokens}
            result: dict[str, Any] = {"sequences": [sequence] * body["num_samples"]}
            if body["prompt_logprobs"]:
                result["prompt_logprobs"] = [None] + [-0.25] * (len(tokens) - 1)
            return self._future(endpoint, result)
        if endpoint == "retrieve_future":
            with self._lock:
                result = self._results.get(body["request_id"])
            if result is None:
                return httpx.Response(404, json={"detail": f"no future {body['request_id']}"})
            return httpx.Response(200, json=result)
        if endpoint == "get_info":
            return httpx.Response(
                200,
                json={"model_data": {"arch": "qwen3", "model_name": BASE_MODEL}, "model_id": body["model_id"],
                      "is_lora": True, "lora_rank": 8},
            )
        if endpoint == "get_server_capabilities":
            return httpx.Response(200, json={"supported_models": [{"model_name": BASE_MODEL}]})
        if endpoint == "weights_info":
            return httpx.Response(200, json={"base_model": BASE_MODEL, "is_lora": True, "lora_rank": 8})
        # 0.38 endpoints
        if endpoint.startswith("sessions/") and endpoint.endswith("/finish"):
            return httpx.Response(200, json={})
        if endpoint == "save_weights_external":
            return self._future(endpoint, {"path": f"tinker://{body['model_id']}/external_weights/{body['path']}"})
        if endpoint == "copy_weights":
            return httpx.Response(200, json={"tinker_path": "tinker://copy-1/weights/copied"})
        if endpoint == "auth/apikey/me":
            return httpx.Response(200, json={"user_urn": "tml:user:u1", "org_urn": "tml:organization:o1", "email": None})
        if endpoint == "training_runs":
            return httpx.Response(200, json={"training_runs": [], "cursor": {"offset": 0, "limit": 20, "total_count": 0}})
        if endpoint == "sessions/search":
            return httpx.Response(200, json={"sessions": [], "next_cursor": None})
        return httpx.Response(404, json={"detail": f"wire fake has no endpoint {endpoint}"})


def fake_client(wire: WireFake, env: Mapping[str, str] | None = None, **kwargs: Any) -> tinkex.Client:
    """A client speaking to ``wire``; telemetry off unless the test asks for it."""
    kwargs.setdefault("telemetry", False)
    return tinkex.Client(
        api_key=API_KEY, base_url="http://tinker.test", transport=wire.transport, env=dict(env or {}), **kwargs
    )


def server_client(server: LocalServer, env: Mapping[str, str] | None = None, **kwargs: Any) -> tinkex.Client:
    kwargs.setdefault("telemetry", False)
    return tinkex.Client(api_key=API_KEY, base_url=server.base_url, env=dict(env or {}), **kwargs)


def datum(tokens: list[int]) -> types.Datum:
    """A next-token datum: targets are the tokens shifted by one."""
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens),
        loss_fn_inputs={"target_tokens": [t + 1 for t in tokens], "weights": [1.0] * len(tokens)},
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


async def async_wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


def sample_in_this_process(sampler: tinkex.SamplingClient, tokens: list[int]) -> dict[str, Any]:
    """Run in a spawned worker: sample with an unpickled SamplingClient and say what it used."""
    result = sampler.sample(types.ModelInput.from_ints(tokens), 1, types.SamplingParams(max_tokens=3)).result(20)
    return {
        "sampling_session_id": sampler.sampling_session_id,
        "tokens": result.sequences[0].tokens,
        "pid": os.getpid(),
    }
