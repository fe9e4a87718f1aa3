"""The files of an external-weights export: a PEFT-style adapter config and the adapter as real safetensors.

Anything that reads safetensors (the ``safetensors`` package, ``transformers``) opens the weights file: an
8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and byte range, then the data.
The tensors are the run's LoRA factors under PEFT's names and layout (``lora_A.weight`` is rank x inputs,
``lora_B.weight`` outputs x rank), float32.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from .tiny_lm import lora_scale, snapshot_params
from .tiny_lm.lora import ALPHA

__all__ = ["adapter_tensors", "external_weights_files", "safetensors_bytes"]

_PEFT_MODULES = {"attn": "context_proj", "mlp": "mlp_proj", "unembed": "lm_head"}
"""Our adapter targets under the module names of the model's layers (see :mod:`.tiny_lm.model`)."""


def safetensors_bytes(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> bytes:
    """Every tensor as float32, in name order."""
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    data = bytearray()
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name], dtype="<f4")
        start = len(data)
        data += array.tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [start, len(data)]}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header to a multiple of 8 bytes
    return struct.pack("<Q", len(encoded)) + encoded + bytes(data)


def adapter_tensors(snapshot: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The snapshot's LoRA factors by PEFT name: ``base_model.model.<module>.lora_{A,B}.weight``."""
    _, params = snapshot_params(snapshot)
    tensors = {}
    for name, array in params.items():
        target, _, factor = name.partition(".")  # "attn", "lora_A"
        tensors[f"base_model.model.{_PEFT_MODULES[target]}.{factor}.weight"] = array.T
    return tensors


def external_weights_files(
    base_model: str, lora_rank: int, tinker_path: str, weights: Mapping[str, Any]
) -> dict[str, bytes]:
    """File path (relative to the export's root) -> content."""
    _, params = snapshot_params(weights)
    modules = sorted({_PEFT_MODULES[name.partition(".")[0]] for name in params})
    config = {
        "base_model_name_or_path": base_model,
        "r": lora_rank,
        "lora_alpha": ALPHA,
        "peft_type": "LORA",
        "target_modules": modules,
        "scaling": lora_scale(lora_rank),
    }
    return {
        "adapter_config.json": json.dumps(config, indent=2).encode(),
        "adapter_model.safetensors": safetensors_bytes(
            adapter_tensors(weights), {"format": "pt", "tinker_path": tinker_path}
        ),
    }
