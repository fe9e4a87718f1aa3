"""LoRA adapters: the only trainable weights. One per training client, with the rank it asked for.

An adapter on a target matrix ``W`` (inputs x outputs) is ``A`` (inputs x rank) and ``B`` (rank x outputs); the
layer computes ``x @ W + scale * (x @ A) @ B`` with ``scale = ALPHA / rank``. ``A`` starts random (seeded), ``B``
at zero, so a fresh adapter leaves the base model unchanged (the usual LoRA initialisation).

``ALPHA`` is large because the base model is tiny and the usual LoRA learning rates (1e-4 .. 1e-3 with Adam)
should visibly train it within tens of steps, as they do a large model.

Adapters travel as plain JSON (:func:`encode_tensors` / :func:`decode_tensors`: little-endian bytes of the
tensor's float dtype in base64), so checkpoints, samplers and the server's ``state.json`` hold them exactly.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .errors import ModelInputError
from .model import DTYPE, layer_shapes, name_seed

__all__ = ["ALPHA", "TARGETS", "adapter_targets", "decode_tensors", "encode_tensors", "fresh_adapter", "lora_scale"]

ALPHA = 256.0
TARGETS = ("attn", "mlp", "unembed")
MAX_RANK = 512


def lora_scale(rank: int) -> float:
    return ALPHA / rank


def adapter_targets(rank: int, targets: Iterable[str]) -> list[str]:
    """The targets of a valid adapter request, in model order; a user error names what is wrong."""
    if not 1 <= rank <= MAX_RANK:
        raise ModelInputError(f"lora_config.rank must be between 1 and {MAX_RANK}, got {rank}")
    chosen = [t for t in TARGETS if t in set(targets)]
    if not chosen:
        raise ModelInputError("lora_config must train at least one of unembed, mlp, attn")
    return chosen


def fresh_adapter(vocab_size: int, rank: int, targets: Iterable[str], seed: int | str) -> dict[str, np.ndarray]:
    """A new adapter of ``rank`` on ``targets``: ``A`` from ``seed``, ``B`` zero."""
    chosen = adapter_targets(rank, targets)
    rng = np.random.default_rng(name_seed("tinkex-tiny-lm-lora", seed))
    shapes = layer_shapes(vocab_size)
    params: dict[str, np.ndarray] = {}
    for target in chosen:
        inputs, outputs = shapes[target]
        params[f"{target}.lora_A"] = (rng.standard_normal((inputs, rank)) / math.sqrt(inputs)).astype(DTYPE)
        params[f"{target}.lora_B"] = np.zeros((rank, outputs), dtype=DTYPE)
    return params


def encode_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """JSON-ready: ``{name: {"dtype": "<f4", "shape": [...], "data": base64}}``."""
    encoded = {}
    for name, array in tensors.items():
        dtype = array.dtype.newbyteorder("<")
        data = base64.b64encode(np.ascontiguousarray(array, dtype).tobytes()).decode()
        encoded[name] = {"dtype": dtype.str, "shape": list(array.shape), "data": data}
    return encoded


def decode_tensors(encoded: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Writable arrays (the optimizer updates them in place), in the native byte order."""
    return {
        name: np.frombuffer(base64.b64decode(item["data"]), dtype=item["dtype"]).astype(item["dtype"][1:]).reshape(item["shape"])
        for name, item in encoded.items()
    }
