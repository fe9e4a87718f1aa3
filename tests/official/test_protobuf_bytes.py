"""Byte-level parity: tinkex's protobuf forward_backward bodies decode, with the official 0.38.0 descriptors, to the
same messages the official SDK builds for the same calls; and tinkex's .proto describes the same file.

Each case is described once, neutrally; tinkex builds its request from the description here and the official SDK
builds its own in its venv (tests/official/official_bodies.py), so neither side's types leak into the other.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from tinkex import types as t
from tinkex.proto import tinker_public_pb2 as pb
from tinkex.wire.protobuf_bodies import encode_forward_backward_request

from .conftest import official_environment

SCRIPT = Path(__file__).resolve().parent / "official_bodies.py"
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"

CASES: dict[str, dict[str, Any]] = {
    "cross_entropy, two datums": {
        "model_id": "sess-1:train:0", "seq_id": 3, "loss_fn": "cross_entropy", "loss_fn_config": None,
        "forward_only": False,
        "data": [
            {"chunks": [{"tokens": [1, 2, 3, 4]}],
             "inputs": {"target_tokens": {"data": [2, 3, 4, 5], "dtype": "int64", "shape": [4]},
                        "weights": {"data": [1.0, 1.0, 0.5, 0.0], "dtype": "float32", "shape": [4]}}},
            {"chunks": [{"tokens": [7, 8]}, {"tokens": [9, 100000, 2**31 - 1]}],
             "inputs": {"target_tokens": {"data": [8, 9, 10, 11, 12], "dtype": "int64", "shape": [5]},
                        "weights": {"data": [0.25] * 5, "dtype": "float32", "shape": [5]}}},
        ],
    },
    "forward only": {
        "model_id": "sess-1:train:0", "seq_id": 1, "loss_fn": "cross_entropy", "loss_fn_config": None,
        "forward_only": True,
        "data": [{"chunks": [{"tokens": [5, 6]}],
                  "inputs": {"target_tokens": {"data": [6, 7], "dtype": "int64", "shape": [2]}}}],
    },
    "ppo with number and text config, 2-D input, image chunk": {
        "model_id": "sess-2:train:1", "seq_id": 12, "loss_fn": "ppo",
        "loss_fn_config": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2, "variant": "stable"},
        "forward_only": False,
        "data": [{"chunks": [{"image": {"data_b64": base64.b64encode(PNG).decode(), "format": "png",
                                        "expected_tokens": 3}},
                             {"tokens": [11, 12]}],
                  "inputs": {"target_tokens": {"data": [1, 2, 3, 4, 5], "dtype": "int64", "shape": [5]},
                             "advantages": {"data": [0.5, -0.5, 1.5, 2.0, -1.0, 0.0], "dtype": "float32",
                                            "shape": [2, 3]}}}],
    },
    "importance sampling with provenance spans": {
        "model_id": "sess-3:train:0", "seq_id": 2, "loss_fn": "importance_sampling", "loss_fn_config": None,
        "forward_only": False,
        "data": [{"chunks": [{"tokens": [1, 2, 3, 4, 5]}],
                  "inputs": {"target_tokens": {"data": [2, 3, 4, 5, 6], "dtype": "int64", "shape": [5]},
                             "logprobs": {"data": [0.0, 0.0, -0.5, -0.25, -1.0], "dtype": "float32", "shape": [5]},
                             "advantages": {"data": [0.0, 0.0, 1.0, 1.0, 1.0], "dtype": "float32", "shape": [5]}},
                  "model_input_spans": [{"kind": "prompt", "sequence_id": "s:seq:1", "offset": 0, "length": 3},
                                        {"kind": "sampled", "sequence_id": "s:seq:1", "offset": 0, "length": 2}],
                  "loss_fn_input_spans": [{"kind": "prompt", "sequence_id": "s:seq:1", "offset": 1, "length": 2},
                                          {"kind": "sampled", "sequence_id": "s:seq:1", "offset": 0, "length": 3}]}],
    },
}


def _span(spec: dict[str, Any]) -> t.PromptProvenanceSpan | t.SampledProvenanceSpan:
    kind = t.PromptProvenanceSpan if spec["kind"] == "prompt" else t.SampledProvenanceSpan
    return kind(sequence_id=spec["sequence_id"], offset=spec["offset"], length=spec["length"])


def _chunk(spec: dict[str, Any]) -> Any:
    if "tokens" in spec:
        return t.EncodedTextChunk(tokens=spec["tokens"])
    image = spec["image"]
    return t.ImageChunk(
        data=base64.b64decode(image["data_b64"]), format=image["format"], expected_tokens=image["expected_tokens"]
    )


def tinkex_request(case: dict[str, Any]) -> t.ForwardBackwardRequest | t.ForwardRequest:
    data = []
    for spec in case["data"]:
        datum = t.Datum(
            model_input=t.ModelInput(chunks=[_chunk(c) for c in spec["chunks"]]),
            loss_fn_inputs={name: t.TensorData(**tensor) for name, tensor in spec["inputs"].items()},
        )
        if "model_input_spans" in spec:
            datum = datum.with_provenance(
                [_span(s) for s in spec["model_input_spans"]], [_span(s) for s in spec["loss_fn_input_spans"]]
            )
        data.append(datum)
    fb_input = t.ForwardBackwardInput(data=data, loss_fn=case["loss_fn"], loss_fn_config=case["loss_fn_config"])
    if case["forward_only"]:
        return t.ForwardRequest(forward_input=fb_input, model_id=case["model_id"], seq_id=case["seq_id"])
    return t.ForwardBackwardRequest(forward_backward_input=fb_input, model_id=case["model_id"], seq_id=case["seq_id"])


@pytest.fixture(scope="module")
def official_verdict(official_python: Callable[[str], Path]) -> dict[str, Any]:
    descriptor = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(descriptor)
    cases = [
        {**case, "tinkex_body": base64.b64encode(encode_forward_backward_request(tinkex_request(case))).decode()}
        for case in CASES.values()
    ]
    given = {"cases": cases, "tinkex_descriptor": base64.b64encode(descriptor.SerializeToString()).decode()}
    done = subprocess.run(
        [str(official_python("0.38.0")), str(SCRIPT)],
        input=json.dumps(given),
        env=official_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    verdict: dict[str, Any] = json.loads(done.stdout)
    return verdict


def test_the_proto_file_is_the_official_one(official_verdict: dict[str, Any]) -> None:
    assert official_verdict["descriptor_equal"]


@pytest.mark.parametrize("index", range(len(CASES)), ids=list(CASES))
def test_tinkex_body_decodes_to_the_official_message(official_verdict: dict[str, Any], index: int) -> None:
    result = official_verdict["results"][index]
    assert result["equal"], f"official:\n{result['official']}\ntinkex:\n{result['tinkex']}"
