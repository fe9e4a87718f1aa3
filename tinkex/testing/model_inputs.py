"""What a request's model inputs mean to the tiny model: tokens from ``ModelInput`` chunks, a ``Datum`` as the
model's input, float32 outputs, and the vocabulary check that refuses unknown token ids (400) before anything runs.

Pure functions, shared by the training and sampling endpoints.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinkex import types as t

from . import tiny_lm
from .calls import reject

__all__ = ["check_token_ids", "check_vocabulary", "datum_input", "float32_tensor", "tokens_of"]


def tokens_of(model_input: t.ModelInput, where: str) -> list[int]:
    """Text tokens as sent; an image occupies ``expected_tokens`` positions of token 0."""
    tokens: list[int] = []
    for index, chunk in enumerate(model_input.chunks):
        if isinstance(chunk, t.EncodedTextChunk):
            tokens.extend(chunk.tokens)
            continue
        expected = chunk.expected_tokens  # type: ignore[attr-defined]
        if expected is None:
            raise tiny_lm.ModelInputError(f"{where}.chunks[{index}] is an image without expected_tokens")
        tokens.extend([0] * expected)
    return tokens


def datum_input(datum: t.Datum, index: int) -> tiny_lm.DatumInput:
    return tiny_lm.DatumInput(
        tokens=tokens_of(datum.model_input, f"data[{index}].model_input"),
        loss_inputs={name: tensor.data for name, tensor in datum.loss_fn_inputs.items()},
    )


def float32_tensor(values: list[float]) -> t.TensorData:
    """Values rounded to float32, as a real server's float32 tensors would be."""
    return t.TensorData(data=np.asarray(values, dtype=np.float32).tolist(), dtype="float32", shape=[len(values)])


def check_token_ids(tokens: Any, vocab_size: int, where: str) -> None:
    """400 before anything runs when a token id is outside the model's vocabulary (the message names it)."""
    try:
        tiny_lm.check_tokens(tokens, vocab_size, where)
    except tiny_lm.TokenOutOfVocabulary as exc:
        raise reject(400, str(exc)) from None


def check_vocabulary(model_input: t.ModelInput, vocab_size: int, where: str) -> None:
    """:func:`check_token_ids` for every text chunk of ``model_input``."""
    for index, chunk in enumerate(model_input.chunks):
        if isinstance(chunk, t.EncodedTextChunk):
            check_token_ids(chunk.tokens, vocab_size, f"{where}.chunks[{index}].tokens")
