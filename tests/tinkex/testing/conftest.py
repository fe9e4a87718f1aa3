"""Fixtures for the local Tinker-compatible server tests: servers, HTTP clients, a self-signed certificate."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tinkex.testing import LocalServer

API_KEY = "tml-test-key"
HEADERS = {"X-API-Key": API_KEY}
BASE_MODEL = "Qwen/Qwen3-8B"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def headers() -> dict[str, str]:
    return dict(HEADERS)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(long_poll_timeout=0.3) as running:
        yield running


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS, timeout=5) as http:
        yield http


@pytest.fixture
def wire(client: httpx.AsyncClient) -> Wire:
    return Wire(client)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class Wire:
    """Spec example bodies (docs/wire.md §12.3, as the 0.16.1 SDK sends them) and call helpers."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @staticmethod
    def create_session_body() -> dict[str, Any]:
        return {"tags": [], "user_metadata": {"purpose": "fake-server-test"}, "sdk_version": "0.16.1", "project_id": None}

    @staticmethod
    def create_model_body(session_id: str, model_seq_id: int = 0) -> dict[str, Any]:
        return {
            "session_id": session_id,
            "model_seq_id": model_seq_id,
            "base_model": BASE_MODEL,
            "user_metadata": None,
            "lora_config": {"rank": 8, "seed": None, "train_unembed": True, "train_mlp": True, "train_attn": True},
        }

    @staticmethod
    def datum(tokens: list[int], targets: list[int], **extra: list[float]) -> dict[str, Any]:
        inputs: dict[str, Any] = {"target_tokens": {"data": targets, "dtype": "int64", "shape": [len(targets)]}}
        for name, values in extra.items():
            inputs[name] = {"data": values, "dtype": "float32", "shape": [len(values)]}
        return {"loss_fn_inputs": inputs, "model_input": {"chunks": [{"tokens": tokens}]}}

    @classmethod
    def forward_backward_body(
        cls, model_id: str, seq_id: int, loss_fn: str = "cross_entropy", data: Any = None
    ) -> dict[str, Any]:
        if data is None:
            data = [cls.datum([1, 2, 3, 4], [2, 3, 4, 5], weights=[1.0, 1.0, 1.0, 1.0])]
        return {
            "forward_backward_input": {"data": data, "loss_fn": loss_fn, "loss_fn_config": None},
            "model_id": model_id,
            "seq_id": seq_id,
        }

    @staticmethod
    def sample_body(sampler_id: str, seq_id: int = 0, **overrides: Any) -> dict[str, Any]:
        body = {
            "num_samples": 2,
            "prompt": {"chunks": [{"tokens": [5, 6, 7]}]},
            "sampling_params": {"max_tokens": 4, "temperature": 0.7},
            "sampling_session_id": sampler_id,
            "seq_id": seq_id,
            "prompt_logprobs": False,
            "topk_prompt_logprobs": 0,
        }
        body.update(overrides)
        return body

    async def post(self, endpoint: str, body: Any, **kwargs: Any) -> httpx.Response:
        return await self.client.post(f"/api/v1/{endpoint}", json=body, **kwargs)

    async def poll(self, request_id: str, allow_metadata_only: bool = False) -> httpx.Response:
        body = {"request_id": request_id, "allow_metadata_only": allow_metadata_only}
        return await self.client.post("/api/v1/retrieve_future", json=body)

    async def result(self, future: httpx.Response | dict[str, Any], allow_metadata_only: bool = False) -> dict[str, Any]:
        """Poll retrieve_future until the result (or a failure body) arrives."""
        handle = future.json() if isinstance(future, httpx.Response) else future
        assert set(handle) <= {"request_id", "model_id", "sample_sequence_ids"}, handle
        for _ in range(100):
            reply = await self.poll(handle["request_id"], allow_metadata_only)
            assert reply.status_code == 200, reply.text
            body: dict[str, Any] = reply.json()
            if body.get("type") != "try_again":
                return body
        raise AssertionError(f"future {handle} never completed")

    async def session(self) -> str:
        reply = await self.post("create_session", self.create_session_body())
        assert reply.status_code == 200, reply.text
        return str(reply.json()["session_id"])

    async def model(self, session_id: str | None = None, model_seq_id: int = 0) -> str:
        session_id = session_id or await self.session()
        reply = await self.post("create_model", self.create_model_body(session_id, model_seq_id))
        assert reply.status_code == 200, reply.text
        return str((await self.result(reply))["model_id"])

    async def sampler(self, session_id: str, seq: int = 0, model_path: str | None = None) -> str:
        body = {
            "session_id": session_id,
            "sampling_session_seq_id": seq,
            "base_model": None if model_path else BASE_MODEL,
            "model_path": model_path,
        }
        reply = await self.post("create_sampling_session", body)
        assert reply.status_code == 200, reply.text
        return str(reply.json()["sampling_session_id"])
