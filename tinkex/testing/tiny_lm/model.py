"""The frozen base model: a small causal neural language model over token windows, in numpy.

Each position ``t`` sees the embeddings of the last :data:`WINDOW` tokens (``t, t-1, ...``; positions before the
start are a zero vector), so the prediction of token ``t + 1`` depends on tokens ``<= t`` only (causal). Two
layers and an output head follow::

    x      = concat(E[tok_t], E[tok_t-1], ..., E[tok_t-WINDOW+1])        # (WINDOW * EMBED,)
    h      = tanh(x @ W_ctx + b_ctx)                                      # context layer: mixes the positions
    g      = h + tanh(h @ W_mlp + b_mlp)                                  # MLP with a residual
    logits = g @ W_out + b_out                                            # output head over the vocabulary

A LoRA adapter (:mod:`.lora`) adds ``scale * (input @ A) @ B`` to any of the three matrices: ``attn`` is the
context layer (the only one that mixes positions, the part attention plays in a transformer), ``mlp`` the MLP and
``unembed`` the head. Every position of every datum is independent given its window, so a whole batch is one
matrix of windows: training is a few matrix products, and sampling needs no cache.

The base weights are random but fixed: made from a seed derived from the base model's name, the same on every
machine. The head's bias prefers letters and spaces over control bytes, so an untrained model babbles text-like
bytes instead of mojibake.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .vocabulary import DEFAULT_VOCAB_SIZE

__all__ = [
    "EMBED",
    "HIDDEN",
    "WINDOW",
    "Activations",
    "BaseWeights",
    "backward",
    "base_weights",
    "forward",
    "layer_shapes",
    "log_softmax",
    "matmul",
    "name_seed",
    "probabilities",
    "token_logprobs",
    "windows",
]

EMBED = 32
WINDOW = 8
HIDDEN = 64
DTYPE = np.float32
"""The server computes in float32 (as GPUs do, and twice as fast as float64 here); the arithmetic follows the
arrays' dtype, so ``base_weights(..., dtype=np.float64)`` with float64 adapter tensors gives exact gradients."""


def name_seed(*parts: object) -> int:
    """A 64-bit seed from text, identical on every machine and Python run (unlike ``hash``)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass(frozen=True)
class BaseWeights:
    """The frozen weights of one base model at one vocabulary size (never changed after creation)."""

    name: str
    vocab_size: int
    embed: np.ndarray
    """(vocab_size + 1, EMBED); the last row, all zeros, is the padding before the first token."""
    w_ctx: np.ndarray
    b_ctx: np.ndarray
    w_mlp: np.ndarray
    b_mlp: np.ndarray
    w_out: np.ndarray
    b_out: np.ndarray

    @property
    def pad(self) -> int:
        return self.vocab_size

    def matrix(self, target: str) -> np.ndarray:
        return {"attn": self.w_ctx, "mlp": self.w_mlp, "unembed": self.w_out}[target]


def layer_shapes(vocab_size: int) -> dict[str, tuple[int, int]]:
    """(inputs, outputs) of each matrix an adapter can target."""
    return {"attn": (WINDOW * EMBED, HIDDEN), "mlp": (HIDDEN, HIDDEN), "unembed": (HIDDEN, vocab_size)}


def _output_prior(vocab_size: int) -> np.ndarray:
    """Head bias: ASCII letters, space and the encoding's merges likelier than other printable bytes; control
    bytes, non-ASCII bytes and special tokens unlikely (ids past the byte encoding's get none)."""
    prior = np.zeros(vocab_size)
    for token in range(min(vocab_size, 256)):
        char = chr(token)
        if char.isascii() and (char.isalpha() or char == " "):
            prior[token] = 2.0
        elif not (32 <= token < 127):
            prior[token] = -4.0
    prior[256 : min(vocab_size, DEFAULT_VOCAB_SIZE)] = 2.0  # the byte encoding's merges: English letter pairs
    prior[DEFAULT_VOCAB_SIZE - 3 : min(vocab_size, DEFAULT_VOCAB_SIZE)] = -4.0  # its special tokens
    return prior


@functools.lru_cache(maxsize=16)
def base_weights(name: str, vocab_size: int, dtype: type = DTYPE) -> BaseWeights:
    """The base model called ``name``: the same weights for the same name and vocabulary size, everywhere."""
    rng = np.random.default_rng(name_seed("tinkex-tiny-lm-base", name, vocab_size))
    embed = np.zeros((vocab_size + 1, EMBED))
    embed[:vocab_size] = rng.standard_normal((vocab_size, EMBED))
    fan_ctx = WINDOW * EMBED
    arrays = {
        "embed": embed,
        "w_ctx": rng.standard_normal((fan_ctx, HIDDEN)) / np.sqrt(fan_ctx),
        "b_ctx": rng.standard_normal(HIDDEN) * 0.1,
        "w_mlp": rng.standard_normal((HIDDEN, HIDDEN)) / np.sqrt(HIDDEN),
        "b_mlp": rng.standard_normal(HIDDEN) * 0.1,
        "w_out": rng.standard_normal((HIDDEN, vocab_size)) / np.sqrt(HIDDEN),
        "b_out": _output_prior(vocab_size),
    }
    for key, array in arrays.items():
        arrays[key] = array = array.astype(dtype)
        array.setflags(write=False)  # shared by every run and sampler of this base model
    return BaseWeights(name=name, vocab_size=vocab_size, **arrays)


def windows(tokens: np.ndarray, pad: int) -> np.ndarray:
    """(len(tokens), WINDOW) token ids: row ``t`` is ``tokens[t], tokens[t-1], ...``, ``pad`` before the start."""
    padded = np.concatenate([np.full(WINDOW - 1, pad, dtype=np.int64), tokens.astype(np.int64)])
    idx = np.arange(len(tokens))[:, None] + (WINDOW - 1) - np.arange(WINDOW)[None, :]
    return padded[idx]


_SINGLE_THREAD_WORK = 262_144
"""OpenBLAS runs a product of m*n*k multiply-adds at most this on the calling thread (its SMP threshold), larger ones
on its thread pool, which on a busy 2-core machine spends more time waking and spinning than multiplying."""


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` as a stack of row blocks each under OpenBLAS's threading threshold: one thread, predictable time,
    and no contention with the threads of the process the server runs in (the tests', the user's)."""
    m, k = a.shape
    n = b.shape[1]
    rows = max(1, _SINGLE_THREAD_WORK // max(1, k * n))
    if m <= rows:
        return a @ b
    full = (m // rows) * rows
    out = np.empty((m, n), dtype=np.result_type(a, b))
    out[:full] = (a[:full].reshape(-1, rows, k) @ b).reshape(full, n)
    if full < m:
        out[full:] = a[full:] @ b
    return out


Params = Mapping[str, np.ndarray]
"""Adapter tensors by name: ``<target>.lora_A`` (inputs, rank) and ``<target>.lora_B`` (rank, outputs)."""


@dataclass
class Activations:
    """What the forward pass keeps for the backward pass."""

    x: np.ndarray
    h: np.ndarray
    mlp_act: np.ndarray
    g: np.ndarray
    logits: np.ndarray
    log_normalizer: np.ndarray
    low_rank: dict[str, np.ndarray]
    """``input @ A`` per adapted target."""


def _layer(inputs: np.ndarray, w: np.ndarray, b: np.ndarray | None, target: str, params: Params, scale: float,
           low_rank: dict[str, np.ndarray]) -> np.ndarray:
    out = matmul(inputs, w)
    if b is not None:
        out += b
    a = params.get(f"{target}.lora_A")
    if a is not None:
        projected = matmul(inputs, a)
        low_rank[target] = projected
        out += scale * matmul(projected, params[f"{target}.lora_B"])
    return out


def forward(base: BaseWeights, params: Params, scale: float, window_ids: np.ndarray) -> Activations:
    """Logits for each row of ``window_ids`` (N, WINDOW) under the base weights plus the adapter."""
    x = base.embed[window_ids].reshape(len(window_ids), WINDOW * EMBED)
    low_rank: dict[str, np.ndarray] = {}
    h = np.tanh(_layer(x, base.w_ctx, base.b_ctx, "attn", params, scale, low_rank))
    mlp_act = np.tanh(_layer(h, base.w_mlp, base.b_mlp, "mlp", params, scale, low_rank))
    g = h + mlp_act
    logits = _layer(g, base.w_out, base.b_out, "unembed", params, scale, low_rank)
    peak = logits.max(axis=1, keepdims=True)
    log_normalizer = (peak + np.log(_exp(logits - peak).sum(axis=1, keepdims=True)))[:, 0]
    return Activations(x, h, mlp_act, g, logits, log_normalizer, low_rank)


_EXP_FLOOR = -80.0
"""exp() of anything below this is below float32's normal range: its subnormal results are (on x86) a hundred times
slower to compute, and a trained model puts most of the vocabulary down there. Such probabilities (< 2e-35) are
taken as 2e-35, which changes no sum or gradient at float32 precision."""


def _exp(values: np.ndarray) -> np.ndarray:
    return np.exp(np.maximum(values, _EXP_FLOOR))


def probabilities(logprobs: np.ndarray) -> np.ndarray:
    """``exp`` of log-probabilities, fast for the very unlikely (see :data:`_EXP_FLOOR`)."""
    return _exp(logprobs)


def log_softmax(acts: Activations) -> np.ndarray:
    return acts.logits - acts.log_normalizer[:, None]


def token_logprobs(acts: Activations, targets: np.ndarray) -> np.ndarray:
    """log p(targets[i] | window i) for each row."""
    return acts.logits[np.arange(len(targets)), targets] - acts.log_normalizer


def _adapter_grads(target: str, inputs: np.ndarray, d_out: np.ndarray, params: Params, scale: float,
                   acts: Activations, grads: dict[str, np.ndarray]) -> None:
    a = params.get(f"{target}.lora_A")
    if a is None:
        return
    b = params[f"{target}.lora_B"]
    grads[f"{target}.lora_B"] = scale * matmul(acts.low_rank[target].T, d_out)
    grads[f"{target}.lora_A"] = scale * matmul(inputs.T, matmul(d_out, b.T))


def _input_grad(d_out: np.ndarray, w: np.ndarray, target: str, params: Params, scale: float) -> np.ndarray:
    d_in = matmul(d_out, w.T)
    a = params.get(f"{target}.lora_A")
    if a is not None:
        d_in += scale * matmul(matmul(d_out, params[f"{target}.lora_B"].T), a.T)
    return d_in


def backward(
    base: BaseWeights, params: Params, scale: float, acts: Activations, targets: np.ndarray, d_logprobs: np.ndarray
) -> dict[str, np.ndarray]:
    """Gradient of a loss over the adapter's tensors, given dLoss/dlogprob of each row's target token.

    d logp(y) / d logits = onehot(y) - softmax(logits), then the chain rule back through the three layers; the
    frozen base weights get no gradient, so only the adapter's low-rank factors are computed."""
    rows = np.arange(len(targets))
    d_logits = -_exp(log_softmax(acts)) * d_logprobs[:, None]
    d_logits[rows, targets] += d_logprobs
    grads: dict[str, np.ndarray] = {}
    _adapter_grads("unembed", acts.g, d_logits, params, scale, acts, grads)
    d_g = _input_grad(d_logits, base.w_out, "unembed", params, scale)
    d_mlp_pre = d_g * (1.0 - acts.mlp_act**2)
    _adapter_grads("mlp", acts.h, d_mlp_pre, params, scale, acts, grads)
    if "attn.lora_A" in params:
        d_h = d_g + _input_grad(d_mlp_pre, base.w_mlp, "mlp", params, scale)
        d_ctx_pre = d_h * (1.0 - acts.h**2)
        _adapter_grads("attn", acts.x, d_ctx_pre, params, scale, acts, grads)
    return grads
