"""One training run's trainable state: its adapter, the gradient accumulated since the last step, Adam's moments.

``snapshot`` / ``restore`` are what checkpoints hold (``save_state`` keeps the optimizer, ``save_weights_for_sampler``
only the adapter); ``to_json`` / ``from_json`` are the whole state for the server's ``state.json`` (with the pending
gradient, so an acknowledged ``forward_backward`` survives a restart). Both are plain JSON.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ModelInputError
from .lora import adapter_targets, decode_tensors, encode_tensors, fresh_adapter, lora_scale
from .optim import AdamSettings, adam_step

__all__ = ["SNAPSHOT_FORMAT", "ModelState", "snapshot_params"]

SNAPSHOT_FORMAT = "tinkex-tiny-lm-lora/1"


@dataclass
class ModelState:
    """A run's adapter and optimizer. ``ModelState()`` has no adapter yet: :meth:`fresh` or :meth:`restore` give it.

    :meth:`fresh` only records how to make the adapter (``recipe``); its tensors are made on first use, so a run
    that is created and never trained (a test, a client that only samples) costs a few bytes, not the adapter's."""

    rank: int = 0
    params: dict[str, np.ndarray] = field(default_factory=dict)
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    pending_backward: int = 0
    """``forward_backward`` calls whose gradient waits for the next ``optim_step``."""
    adam_m: dict[str, np.ndarray] = field(default_factory=dict)
    adam_v: dict[str, np.ndarray] = field(default_factory=dict)
    step: int = 0
    """Optimizer steps taken (Adam's bias correction counts from it)."""
    recipe: dict[str, Any] | None = None
    """``fresh_adapter``'s arguments until the adapter is first needed."""

    @classmethod
    def fresh(cls, vocab_size: int, rank: int, targets: Iterable[str], seed: int | str) -> ModelState:
        """A new adapter (checked now, made on first use)."""
        chosen = adapter_targets(rank, targets)
        return cls(rank=rank, recipe={"vocab_size": vocab_size, "rank": rank, "targets": chosen, "seed": seed})

    @property
    def scale(self) -> float:
        return lora_scale(self.rank)

    def require_adapter(self) -> None:
        if not self.params and self.recipe is not None:
            self.params, self.recipe = fresh_adapter(**self.recipe), None
        if not self.params:
            raise ModelInputError("this training run has no adapter weights (create it or load a checkpoint first)")

    def accumulate(self, grads: Mapping[str, np.ndarray]) -> None:
        for name, grad in grads.items():
            if name in self.grads:
                self.grads[name] += grad
            else:
                self.grads[name] = grad.copy()
        self.pending_backward += 1

    def apply_optimizer(self, settings: AdamSettings) -> dict[str, float]:
        """One step on the accumulated gradient; with no ``forward_backward`` since the last step nothing changes."""
        if self.pending_backward == 0:
            return {}
        self.step += 1
        norm = adam_step(self.params, self.grads, self.adam_m, self.adam_v, self.step, settings)
        self.grads, self.pending_backward = {}, 0
        return {"grad_norm:mean": norm}

    # checkpoints

    def snapshot(self, with_optimizer: bool = True) -> dict[str, Any]:
        """The adapter (and, for a training checkpoint, the optimizer state) as JSON-ready data."""
        self.require_adapter()
        data: dict[str, Any] = {
            "format": SNAPSHOT_FORMAT,
            "snapshot_id": uuid.uuid4().hex,  # keys the decoded-tensor cache; unique across processes
            "rank": self.rank,
            "adapter": encode_tensors(self.params),
        }
        if with_optimizer:
            data.update(step=self.step, adam_m=encode_tensors(self.adam_m), adam_v=encode_tensors(self.adam_v))
        return data

    def restore(self, snapshot: Mapping[str, Any], with_optimizer: bool) -> None:
        """Take a checkpoint's adapter; with ``with_optimizer`` also its step and moments, else a fresh optimizer.
        Any gradient not yet applied is dropped."""
        if snapshot.get("format") != SNAPSHOT_FORMAT:
            raise ModelInputError(f"checkpoint is not a {SNAPSHOT_FORMAT} adapter (format {snapshot.get('format')!r})")
        self.rank = int(snapshot["rank"])
        self.params, self.recipe = decode_tensors(snapshot["adapter"]), None
        self.grads, self.pending_backward = {}, 0
        if with_optimizer and "step" in snapshot:
            self.step = int(snapshot["step"])
            self.adam_m, self.adam_v = decode_tensors(snapshot["adam_m"]), decode_tensors(snapshot["adam_v"])
        else:
            self.step, self.adam_m, self.adam_v = 0, {}, {}

    # the server's state.json

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "params": encode_tensors(self.params),
            "grads": encode_tensors(self.grads),
            "pending_backward": self.pending_backward,
            "adam_m": encode_tensors(self.adam_m),
            "adam_v": encode_tensors(self.adam_v),
            "step": self.step,
            "recipe": self.recipe,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelState:
        if "rank" not in data:
            raise ModelInputError(
                f"a training run's saved state has no adapter (keys {sorted(data)}): the state directory was written "
                "by a LocalServer with the earlier fake model; start on a new state directory"
            )
        return cls(
            rank=int(data["rank"]),
            params=decode_tensors(data["params"]),
            grads=decode_tensors(data["grads"]),
            pending_backward=int(data["pending_backward"]),
            adam_m=decode_tensors(data["adam_m"]),
            adam_v=decode_tensors(data["adam_v"]),
            step=int(data["step"]),
            recipe=data.get("recipe"),
        )


_decoded: dict[str, tuple[int, dict[str, np.ndarray]]] = {}
_DECODED_KEEP = 64
_decoded_lock = threading.Lock()  # several LocalServers (threads) may share this process


def snapshot_params(snapshot: Mapping[str, Any] | None) -> tuple[int, dict[str, np.ndarray]]:
    """(rank, adapter tensors) of a snapshot; ``None`` is the bare base model (no adapter). Decoded once per
    snapshot and kept, since samplers read the same snapshot for every request."""
    if snapshot is None:
        return 1, {}
    key = snapshot.get("snapshot_id")
    with _decoded_lock:
        cached = _decoded.get(key) if isinstance(key, str) else None
    if cached is not None:
        return cached
    decoded = (int(snapshot["rank"]), decode_tensors(snapshot["adapter"]))
    if isinstance(key, str):
        with _decoded_lock:
            if len(_decoded) >= _DECODED_KEEP:
                _decoded.pop(next(iter(_decoded)))
            _decoded[key] = decoded
    return decoded
