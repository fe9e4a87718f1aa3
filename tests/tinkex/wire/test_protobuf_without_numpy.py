"""The 0.38 protobuf bodies without numpy: a client whose data are plain Python lists never loads it (12 MiB of
memory), and the standard-library packing gives the bytes numpy gives, for lists and for numpy-backed data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tinkex import types as t
from tinkex.proto import tinker_public_pb2 as pb
from tinkex.wire import protobuf_bodies

REPO = Path(__file__).resolve().parents[3]

# Runs in a process that hosts only the client (LocalServer's model needs numpy, so it runs in another one).
CLIENT = textwrap.dedent(
    """
    import json, sys
    import tinkex
    from tinkex import types as t

    client = tinkex.Client(
        api_key="tml-no-numpy", base_url=sys.argv[1], env={"TINKEX_WIRE_DIALECT": "0.38"}, telemetry=False
    )
    sampler = client.create_sampling_client(base_model="tinkex/fake-tiny")
    sample = sampler.sample(
        t.ModelInput.from_ints([1, 2, 3]), 2, t.SamplingParams(max_tokens=4, seed=7), include_prompt_logprobs=True
    ).result(30)
    training = client.create_lora_training_client("tinkex/fake-tiny", rank=4)
    datum = t.Datum(
        model_input=t.ModelInput.from_ints([1, 2, 3]),
        loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [1.0, 0.5, 1.0]},
    )
    backward = training.forward_backward([datum], "cross_entropy").result(30)
    print(json.dumps({
        "tokens": [sequence.tokens for sequence in sample.sequences],
        "prompt_logprobs": sample.prompt_logprobs,
        "logprobs": backward.loss_fn_outputs[0]["logprobs"].data,
        "protobuf_codec_loaded": "tinkex.wire.protobuf_bodies" in sys.modules,
        "numpy_loaded": "numpy" in sys.modules,
    }))
    """
)


def _environment() -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("TINKER_", "TINKEX_"))}
    environment["PYTHONPATH"] = str(REPO)
    return environment


def test_a_0_38_client_with_plain_lists_never_imports_numpy() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "tinkex.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_environment(),
        cwd=REPO,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:"), base_url
        client = subprocess.run(
            [sys.executable, "-c", CLIENT, base_url],
            capture_output=True,
            text=True,
            env=_environment(),
            cwd=REPO,
            timeout=120,
        )
    finally:
        server.kill()
        server.wait(10)
    assert client.returncode == 0, client.stderr
    report = json.loads(client.stdout.strip().splitlines()[-1])
    assert len(report["tokens"]) == 2 and all(len(tokens) == 4 for tokens in report["tokens"])
    assert report["prompt_logprobs"][0] is None and len(report["prompt_logprobs"]) == 3
    assert len(report["logprobs"]) == 3
    assert report["protobuf_codec_loaded"], "the 0.38 bodies did not go through the protobuf codec"
    assert not report["numpy_loaded"]


def _numpy_reference(values: Any, dtype: str) -> bytes:
    with np.errstate(over="ignore"):  # a float past float32's range becomes inf, which is the point
        return np.asarray(values, dtype=dtype).tobytes()


@pytest.mark.parametrize(
    ("data", "dtype", "numpy_dtype"),
    [
        ([1.5, -2.25, 3.0e38, 1e-45, float("inf")], "float32", "<f4"),
        ([1, 2, 3], "float32", "<f4"),  # ints written as floats
        ([True, 2.5], "float32", "<f4"),
        ([1.0e39], "float32", "<f4"),  # past float32's range: inf, as numpy casts it
        ([0, -1, 2**63 - 1], "int64", "<i8"),
        ([1.7, 2], "int64", "<i8"),  # only numpy's conversion accepts floats for int64: it truncates
        ([1.0, None], "float32", "<f4"),  # None reads as NaN in numpy
        (np.arange(5, dtype=np.float64) / 3, "float32", "<f4"),  # numpy-backed data keep numpy's path
        (np.arange(4, dtype=np.int32), "int64", "<i8"),
        ([np.float32(0.1), np.int64(3)], "float32", "<f4"),
    ],
)
def test_tensor_bytes_are_numpy_bytes(data: Any, dtype: str, numpy_dtype: str) -> None:
    tensor = t.TensorData.model_construct(data=data, dtype=dtype)
    message = pb.Tensor()
    protobuf_bodies._write_tensor(message, tensor)
    assert message.dense == _numpy_reference(data, numpy_dtype)


@pytest.mark.parametrize("tokens", [[0, 1, 2**31 - 1, -(2**31)], [], (5, 6)])
def test_token_bytes_are_numpy_bytes(tokens: Any) -> None:
    message = pb.Chunk()
    protobuf_bodies._write_chunk(message, t.EncodedTextChunk.model_construct(tokens=tokens))
    assert message.encoded_text.tokens == _numpy_reference(tokens, "<i4")


def test_a_token_past_int32_is_refused_as_numpy_refuses_it() -> None:
    with pytest.raises(OverflowError):
        protobuf_bodies._write_chunk(pb.Chunk(), t.EncodedTextChunk.model_construct(tokens=[2**31]))


def test_topk_cells_are_the_dense_numpy_form() -> None:
    entries: list[Any] = [[(5, -0.5), (7, -1.25)], None, [(9, -2.0)]]
    message = pb.TopkLogprobs()
    protobuf_bodies._write_topk(message, entries)
    dense = t.TopkLogprobs.from_lists(entries)
    assert (message.length, message.k) == dense.token_ids.shape
    assert message.token_ids == dense.token_ids.astype("<i4").tobytes()
    assert message.logprobs == dense.logprobs.astype("<f4").tobytes()
    assert protobuf_bodies._read_topk(message, "topk") == entries


def test_a_big_endian_host_swaps_every_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """Packed arrays are little-endian on every host: where the native order is big-endian, items are swapped."""
    monkeypatch.setattr(protobuf_bodies, "_LITTLE_ENDIAN", False)
    swapped = protobuf_bodies._pack([1, 2], protobuf_bodies._INT32)
    assert swapped == np.array([1, 2], dtype=">i4").tobytes()
    assert protobuf_bodies._unpack(swapped, protobuf_bodies._INT32, "tokens") == [1, 2]


def test_a_sparse_column_outside_the_shape_is_named() -> None:
    tensor = pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[1, 2])
    tensor.sparse_csr.values = np.array([1.0], dtype="<f4").tobytes()
    tensor.sparse_csr.crow_indices = np.array([0, 1], dtype="<i8").tobytes()
    tensor.sparse_csr.col_indices = np.array([2], dtype="<i8").tobytes()
    with pytest.raises(protobuf_bodies.ProtobufBodyError, match="column 2 is outside shape"):
        protobuf_bodies._read_tensor(tensor, "x")
