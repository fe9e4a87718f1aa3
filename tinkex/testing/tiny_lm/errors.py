"""The errors of the tiny language model: what the caller sent is wrong (a user error, never a server fault)."""

from __future__ import annotations

__all__ = ["ModelInputError", "TokenOutOfVocabulary", "UnsupportedOptimizer"]


class ModelInputError(ValueError):
    """The request cannot run on the model as sent; the message names the field and what is allowed.

    The local server answers it as a failed future of category ``user`` (or a 400 where it checks up front)."""


class TokenOutOfVocabulary(ModelInputError):
    """A token id is negative or not below the model's vocabulary size (the message names the limit)."""

    def __init__(self, where: str, token: int, vocab_size: int) -> None:
        super().__init__(
            f"{where}: token id {token} is outside the model's vocabulary of {vocab_size} ids (0..{vocab_size - 1}); "
            "start the server with a larger vocab_size to use another tokenizer"
        )
        self.token = token
        self.vocab_size = vocab_size


class UnsupportedOptimizer(ModelInputError):
    """An optimizer family the local model does not implement (only Adam / AdamW are)."""

    def __init__(self, family: str) -> None:
        super().__init__(
            f"optimizer {family!r} is not supported by the local server's model; use AdamParams (Adam / AdamW with "
            "decoupled weight decay)"
        )
        self.family = family
