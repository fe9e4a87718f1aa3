"""The model's vocabulary: by default exactly tinkex's offline byte-level encoding (``tinkex-bytes``).

With the default size the server can turn sampled tokens into text (for string stop sequences) and knows the end
of sequence token (``<|eos|>``), which stops a sample unless ``stop=[]`` says otherwise. A server started with a
larger vocabulary (for a client bringing its own tokenizer) accepts every id below it but knows no text and no EOS.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from tinkex.tokenizer import BYTES_ENCODING_NAME, Tokenizer, TokenizerRegistry

__all__ = ["DEFAULT_VOCAB_SIZE", "byte_tokenizer", "end_of_sequence", "text_decoder"]


@functools.lru_cache(maxsize=1)
def byte_tokenizer() -> Tokenizer:
    """The byte-level encoding itself, never an environment override (``TINKEX_TOKENIZER`` is the client's)."""
    return TokenizerRegistry(environ={}).get(BYTES_ENCODING_NAME, tokenizer_id=f"tinkex/{BYTES_ENCODING_NAME}")


DEFAULT_VOCAB_SIZE = byte_tokenizer().vocab_size


def end_of_sequence(vocab_size: int) -> int | None:
    return byte_tokenizer().eos_token_id if vocab_size == DEFAULT_VOCAB_SIZE else None


def text_decoder(vocab_size: int) -> Callable[[Sequence[int]], str] | None:
    if vocab_size != DEFAULT_VOCAB_SIZE:
        return None
    tokenizer = byte_tokenizer()
    return lambda tokens: tokenizer.decode(list(tokens))
