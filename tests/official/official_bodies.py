"""Run with an official tinker 0.38.0: how the official SDK encodes forward_backward bodies, for comparison.

Reads JSON on stdin: ``{"cases": [...], "tinkex_descriptor": base64}``; each case describes one call neutrally
(see tests/official/test_protobuf_bytes.py) and carries ``tinkex_body``, the bytes tinkex built for it. For each
case this builds the official request objects, encodes them with the SDK's own send path, parses tinkex's bytes with
the SDK's descriptors and says whether the two messages are equal. Prints one JSON object.
"""

from __future__ import annotations

import base64
import json
import sys

from google.protobuf import descriptor_pb2, text_format
from script_exit import report
from tinker import types
from tinker.proto import tinker_public_pb2 as pb
from tinker.proto.request_conv import forward_backward_request_to_proto


def span(spec):
    kind = types.PromptProvenanceSpan if spec["kind"] == "prompt" else types.SampledProvenanceSpan
    return kind(sequence_id=spec["sequence_id"], offset=spec["offset"], length=spec["length"])


def chunk(spec):
    if "tokens" in spec:
        return types.EncodedTextChunk(tokens=spec["tokens"])
    image = spec["image"]
    return types.ImageChunk(
        data=base64.b64decode(image["data_b64"]), format=image["format"], expected_tokens=image["expected_tokens"]
    )


def datum(spec):
    spans = {}
    if "model_input_spans" in spec:
        spans = {
            "model_input_spans": [span(s) for s in spec["model_input_spans"]],
            "loss_fn_input_spans": [span(s) for s in spec["loss_fn_input_spans"]],
        }
    return types.Datum(
        model_input=types.ModelInput(chunks=[chunk(c) for c in spec["chunks"]]),
        loss_fn_inputs={name: types.TensorData(**tensor) for name, tensor in spec["inputs"].items()},
        **spans,
    )


def official_body(case):
    request = types.ForwardBackwardRequest(
        forward_backward_input=types.ForwardBackwardInput(
            data=[datum(d) for d in case["data"]], loss_fn=case["loss_fn"], loss_fn_config=case["loss_fn_config"]
        ),
        model_id=case["model_id"],
        seq_id=case["seq_id"],
    )
    message = forward_backward_request_to_proto(request)  # what resources/training.py sends
    message.forward_only = case["forward_only"]
    return message


def main() -> None:
    given = json.load(sys.stdin)
    theirs = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(theirs)
    mine = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(given["tinkex_descriptor"]))
    results = []
    for case in given["cases"]:
        official = official_body(case)
        parsed = pb.ForwardBackwardRequest.FromString(base64.b64decode(case["tinkex_body"]))
        results.append(
            {
                "equal": parsed == official,
                "official": text_format.MessageToString(official),
                "tinkex": text_format.MessageToString(parsed),
            }
        )
    report({"descriptor_equal": mine == theirs, "results": results})


if __name__ == "__main__":
    main()
