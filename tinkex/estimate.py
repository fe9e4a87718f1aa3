"""Request-size estimates used for byte permits and forward_backward chunking (`docs/wire.md` §4.1, §4.3).

These reproduce the official SDK 0.16.1 estimates, not the real JSON size:
- a token counts 10 bytes;
- an ``ImageChunk`` counts ``len(data)`` of its *raw* bytes (the SDK holds decoded bytes; the base64 on the
  wire is about 4/3 larger);
- an ``ImageAssetPointerChunk`` counts ``len(location)``;
- a loss_fn_input tensor counts 10 bytes per element.
"""

from __future__ import annotations

from .types import Datum, EncodedTextChunk, ImageAssetPointerChunk, ImageChunk, ModelInput

__all__ = ["BYTES_PER_NUMBER", "estimate_datum_bytes", "estimate_model_input_bytes"]

BYTES_PER_NUMBER = 10
"""Estimated bytes per token id or tensor element."""


def estimate_model_input_bytes(model_input: ModelInput) -> int:
    total = 0
    for chunk in model_input.chunks:
        if isinstance(chunk, EncodedTextChunk):
            total += len(chunk.tokens) * BYTES_PER_NUMBER
        elif isinstance(chunk, ImageChunk):
            total += len(chunk.data)
        elif isinstance(chunk, ImageAssetPointerChunk):
            total += len(chunk.location)
        else:
            raise TypeError(f"cannot estimate the size of chunk type {type(chunk).__name__}")
    return total


def estimate_datum_bytes(datum: Datum) -> int:
    tensor_elements = sum(len(tensor.data) for tensor in datum.loss_fn_inputs.values())
    return estimate_model_input_bytes(datum.model_input) + tensor_elements * BYTES_PER_NUMBER
