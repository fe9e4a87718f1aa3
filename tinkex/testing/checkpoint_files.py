"""The files of an external-weights export: a PEFT-style adapter config and the weights as real safetensors.

Anything that reads safetensors (the ``safetensors`` package, ``transformers``) opens the weights file: an
8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and byte range, then the data.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping

__all__ = ["external_weights_files", "safetensors_bytes"]


def safetensors_bytes(values: Mapping[str, float | int], metadata: Mapping[str, str]) -> bytes:
    """One float32 tensor of shape ``[1]`` per value, in name order."""
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    data = bytearray()
    for name in sorted(values):
        start = len(data)
        data += struct.pack("<f", float(values[name]))
        header[name] = {"dtype": "F32", "shape": [1], "data_offsets": [start, len(data)]}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header to a multiple of 8 bytes
    return struct.pack("<Q", len(encoded)) + encoded + bytes(data)


def external_weights_files(
    base_model: str, lora_rank: int, tinker_path: str, weights: Mapping[str, float | int]
) -> dict[str, bytes]:
    """File path (relative to the export's root) -> content."""
    config = {"base_model_name_or_path": base_model, "r": lora_rank, "peft_type": "LORA"}
    return {
        "adapter_config.json": json.dumps(config, indent=2).encode(),
        "adapter_model.safetensors": safetensors_bytes(weights, {"format": "pt", "tinker_path": tinker_path}),
    }
