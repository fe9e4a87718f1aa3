"""Tokenizers on tiktoken: model name -> encoding through an override table.

Resolution of ``get_tokenizer(model_name, tokenizer_id=...)``, first hit wins:

1. ``TINKEX_TOKENIZER=<encoding name>`` forces one encoding for every model
   (``tinkex-bytes``, ``cl100k_base``, ...).
2. The table entry of ``tokenizer_id`` (as ``get_info`` reports it), then of ``model_name``.
   Both are normalised first: a ``:revision`` suffix is dropped and ``org/model/variant``
   becomes ``org/model``. Entries registered with :func:`register_tokenizer` are consulted
   before the built-in ones; within each, the longest matching prefix wins (an exact model
   name is its own longest prefix).
3. A local ranks file overrides where a BPE file would be read, for entries that are BPE
   files and for models without an entry (which then use :data:`DEFAULT_PAT_STR` and no
   special tokens):
   ``TINKEX_TOKENIZER_FILES='{"<model or prefix>": "/path/tiktoken.model"}'`` (longest
   prefix wins), else ``TINKEX_TOKENIZER_FILE=/path/tiktoken.model`` for every model.
   A ``tokenizer_config.json`` next to the file replaces the entry's config file.
   Entries that name a tiktoken encoding (``o200k_harmony``) are not affected: tiktoken
   caches their downloads itself (``TIKTOKEN_CACHE_DIR``), which is their offline story.

Remote files (Kimi K2) go through tiktoken's download cache; nothing else touches the network.
Tokenizers are cached per process by source, and each source is loaded once even when many
threads ask for it at the same time.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import msgspec
import tiktoken
from tiktoken.load import read_file_cached

from . import env_names
from .types import ModelInput

__all__ = [
    "BYTES_ENCODING_NAME",
    "DEFAULT_PAT_STR",
    "KIMI_K2_PAT_STR",
    "KIMI_K2_REVISION",
    "BpeFileSource",
    "EncodingSource",
    "Tokenizer",
    "TokenizerLoadError",
    "TokenizerNotFoundError",
    "TokenizerRegistry",
    "TokenizerSource",
    "default_registry",
    "get_tokenizer",
    "model_input_from_text",
    "register_tokenizer",
    "special_token_pairs",
]

ENV_FORCE_ENCODING = env_names.TOKENIZER
ENV_RANKS_FILE = env_names.TOKENIZER_FILE
ENV_RANKS_FILES = env_names.TOKENIZER_FILES
TOKENIZER_CONFIG_FILENAME = "tokenizer_config.json"

BYTES_ENCODING_NAME = "tinkex-bytes"

# GPT-2's split pattern: plain enough for any byte-level BPE file without its own pattern.
DEFAULT_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

LLAMA3_PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# As authored in Kimi's tokenization_kimi.py; tiktoken's regex engine supports the `&&` classes.
KIMI_K2_PAT_STR = "|".join(
    [
        r"""[\p{Han}]+""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*"""
        r"""[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+"""
        r"""[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
KIMI_K2_REPO = "moonshotai/Kimi-K2-Thinking"
KIMI_K2_REVISION = "612681931a8c906ddb349f8ad0f582cb552189cd"


class TokenizerNotFoundError(LookupError):
    """No tokenizer is configured for a model."""


class TokenizerLoadError(RuntimeError):
    """A configured tokenizer could not be built (missing file, bad format, no network)."""


@dataclass(frozen=True)
class EncodingSource:
    """An encoding by name: a tinkex built-in or one registered with tiktoken."""

    name: str
    bos_token: str | None = None
    eos_token: str | None = None
    add_bos: bool = False


@dataclass(frozen=True)
class BpeFileSource:
    """A tiktoken ranks file (``base64-token rank`` per line) plus pattern and special tokens.

    ``ranks_file`` / ``tokenizer_config_file`` are local paths or URLs (URLs use tiktoken's
    download cache). ``ranks_file=None`` means the file must come from the environment
    (gated models). ``tokenizer_config_file`` is a Hugging Face ``tokenizer_config.json``:
    its ``added_tokens_decoder`` names special tokens, its ``bos_token`` / ``eos_token`` /
    ``add_bos_token`` fill the roles left unset here. With ``num_reserved_special_tokens=N``
    the ids ``[len(ranks), len(ranks) + N)`` are special, unnamed ones as
    ``<|reserved_token_{id}|>``.
    """

    name: str
    pat_str: str
    ranks_file: str | None = None
    special_tokens: tuple[tuple[str, int], ...] = ()
    tokenizer_config_file: str | None = None
    num_reserved_special_tokens: int = 0
    bos_token: str | None = None
    eos_token: str | None = None
    add_bos: bool = False


def special_token_pairs(special_tokens: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """``BpeFileSource.special_tokens`` from a mapping (sources are hashable, so no dicts)."""
    return tuple(sorted(special_tokens.items(), key=lambda item: item[1]))


# A ready tiktoken.Encoding is accepted too (used as is, no roles).
TokenizerSource = EncodingSource | BpeFileSource | tiktoken.Encoding


class Tokenizer:
    """A tiktoken encoding with the roles (BOS/EOS) the model expects."""

    def __init__(
        self,
        encoding: tiktoken.Encoding,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        add_bos: bool = False,
    ) -> None:
        self.encoding = encoding
        self.special_tokens: Mapping[str, int] = {
            token: encoding.encode_single_token(token) for token in encoding.special_tokens_set
        }
        self.special_token_ids: frozenset[int] = frozenset(self.special_tokens.values())
        self.bos_token_id = self._role_id("bos_token", bos_token)
        self.eos_token_id = self._role_id("eos_token", eos_token)
        if add_bos and self.bos_token_id is None:
            raise TokenizerLoadError(f"tokenizer {encoding.name!r}: add_bos is set but no bos_token is given")
        self._add_bos = add_bos

    @property
    def name(self) -> str:
        return self.encoding.name

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    def encode(
        self,
        text: str,
        *,
        add_special_tokens: bool = True,
        allowed_special: Literal["all"] | Iterable[str] = "all",
    ) -> list[int]:
        """Token ids of ``text``.

        ``add_special_tokens`` prepends BOS when the model adds one (Hugging Face parity).
        Special-token text inside ``text`` becomes the special token when allowed (all by
        default, as the official SDK); otherwise it is encoded as ordinary text.
        """
        allowed = allowed_special if allowed_special == "all" else set(allowed_special)
        tokens = self.encoding.encode(text, allowed_special=allowed, disallowed_special=())
        if add_special_tokens and self._add_bos and self.bos_token_id is not None:
            tokens.insert(0, self.bos_token_id)
        return tokens

    def decode(self, tokens: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        if skip_special_tokens:
            tokens = [token for token in tokens if token not in self.special_token_ids]
        return self.encoding.decode(list(tokens), errors="replace")

    def _role_id(self, role: str, token: str | None) -> int | None:
        if token is None:
            return None
        if token not in self.special_tokens:
            raise TokenizerLoadError(f"tokenizer {self.encoding.name!r}: {role} {token!r} is not a special token")
        return self.special_tokens[token]

    def __repr__(self) -> str:
        return f"Tokenizer(name={self.name!r}, vocab_size={self.vocab_size})"


def model_input_from_text(text: str, tokenizer: Tokenizer, *, add_special_tokens: bool = True) -> ModelInput:
    """``ModelInput`` holding the tokens of ``text``."""
    return ModelInput.from_ints(tokenizer.encode(text, add_special_tokens=add_special_tokens))


# ---------------------------------------------------------------------------------------------
# Built-in encodings and table


def _bytes_encoding() -> tiktoken.Encoding:
    """Byte-level BPE built in code: every byte is a token, plus a few English merges."""
    merges = [b"th", b"he", b"in", b"er", b"an", b"re", b"on", b"at", b"en", b"nd", b"or", b"is", b"ed"]
    merges += [b"es", b" t", b" a", b" th", b"the", b" the", b"ing", b" s", b" w", b" o", b"ou"]
    ranks = {bytes([byte]): byte for byte in range(256)}
    ranks.update({merge: 256 + index for index, merge in enumerate(merges)})
    first_special = len(ranks)
    specials = ["<|bos|>", "<|eos|>", "<|pad|>"]
    return tiktoken.Encoding(
        name=BYTES_ENCODING_NAME,
        pat_str=DEFAULT_PAT_STR,
        mergeable_ranks=ranks,
        special_tokens={token: first_special + index for index, token in enumerate(specials)},
    )


_BYTES_SOURCE = EncodingSource(BYTES_ENCODING_NAME, bos_token="<|bos|>", eos_token="<|eos|>", add_bos=True)


def _llama3_special_tokens() -> dict[str, int]:
    named = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|step_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
        "<|image|>",
    ]
    reserved = [f"<|reserved_special_token_{2 + index}|>" for index in range(256 - len(named))]
    return {token: 128000 + index for index, token in enumerate(named + reserved)}


# The Llama 3 ranks (`original/tokenizer.model`) are gated: the file must come from the environment.
LLAMA3_SOURCE = BpeFileSource(
    name="llama3",
    pat_str=LLAMA3_PAT_STR,
    special_tokens=special_token_pairs(_llama3_special_tokens()),
    bos_token="<|begin_of_text|>",
    eos_token="<|end_of_text|>",
    add_bos=True,
)

_KIMI_BASE_URL = f"https://huggingface.co/{KIMI_K2_REPO}/resolve/{KIMI_K2_REVISION}"
KIMI_K2_SOURCE = BpeFileSource(
    name="kimi-k2",
    pat_str=KIMI_K2_PAT_STR,
    ranks_file=f"{_KIMI_BASE_URL}/tiktoken.model",
    tokenizer_config_file=f"{_KIMI_BASE_URL}/{TOKENIZER_CONFIG_FILENAME}",
    num_reserved_special_tokens=256,
)

BUILTIN_TABLE: Mapping[str, TokenizerSource] = {
    "tinkex/": _BYTES_SOURCE,
    "openai/gpt-oss": EncodingSource("o200k_harmony"),
    "moonshotai/Kimi-K2": KIMI_K2_SOURCE,
    "meta-llama/Llama-3": LLAMA3_SOURCE,
    "thinkingmachineslabinc/meta-llama-3-tokenizer": LLAMA3_SOURCE,
}


# ---------------------------------------------------------------------------------------------
# Loading


class _HfTokenizerConfig(msgspec.Struct):
    added_tokens_decoder: dict[str, dict[str, object]] = {}
    bos_token: str | dict[str, object] | None = None
    eos_token: str | dict[str, object] | None = None
    add_bos_token: bool = False


def _read(location: str) -> bytes:
    try:
        if "://" in location:
            return read_file_cached(location)
        return Path(location).read_bytes()
    except Exception as exc:  # noqa: BLE001 - every failure here means the same thing to the caller
        raise TokenizerLoadError(f"cannot read tokenizer file {location!r}: {exc}") from exc


def _parse_ranks(contents: bytes, location: str) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line_number, line in enumerate(contents.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError as exc:
            raise TokenizerLoadError(
                f"tokenizer file {location!r} line {line_number}: expected '<base64 token> <rank>', got {line[:80]!r}"
            ) from exc
    if not ranks:
        raise TokenizerLoadError(f"tokenizer file {location!r} holds no ranks")
    return ranks


def _role_content(value: str | dict[str, object] | None) -> str | None:
    if isinstance(value, dict):
        content = value.get("content")
        return content if isinstance(content, str) else None
    return value


def _load_bpe_file(source: BpeFileSource) -> Tokenizer:
    if source.ranks_file is None:
        raise TokenizerLoadError(
            f"tokenizer {source.name!r} has no ranks file (its weights are gated): set {ENV_RANKS_FILE} "
            f"or {ENV_RANKS_FILES} to a local tiktoken ranks file"
        )
    ranks = _parse_ranks(_read(source.ranks_file), source.ranks_file)
    special_tokens = dict(source.special_tokens)
    bos_token, eos_token, add_bos = source.bos_token, source.eos_token, source.add_bos
    if source.tokenizer_config_file is not None:
        try:
            config = msgspec.json.decode(_read(source.tokenizer_config_file), type=_HfTokenizerConfig)
        except msgspec.ValidationError as exc:
            raise TokenizerLoadError(f"tokenizer config {source.tokenizer_config_file!r}: {exc}") from exc
        for token_id, attributes in config.added_tokens_decoder.items():
            content = attributes.get("content")
            if isinstance(content, str):
                special_tokens[content] = int(token_id)
        bos_token = bos_token or _role_content(config.bos_token)
        eos_token = eos_token or _role_content(config.eos_token)
        add_bos = add_bos or config.add_bos_token
    if source.num_reserved_special_tokens:
        by_id = {rank: token for token, rank in special_tokens.items()}
        first = len(ranks)
        for reserved in range(first, first + source.num_reserved_special_tokens):
            special_tokens.setdefault(by_id.get(reserved, f"<|reserved_token_{reserved}|>"), reserved)
    try:
        encoding = tiktoken.Encoding(
            name=source.name, pat_str=source.pat_str, mergeable_ranks=ranks, special_tokens=special_tokens
        )
    except ValueError as exc:
        raise TokenizerLoadError(f"tokenizer {source.name!r}: {exc}") from exc
    return Tokenizer(encoding, bos_token=bos_token, eos_token=eos_token, add_bos=add_bos)


def _load_named(source: EncodingSource) -> Tokenizer:
    try:
        encoding = _bytes_encoding() if source.name == BYTES_ENCODING_NAME else tiktoken.get_encoding(source.name)
    except Exception as exc:  # noqa: BLE001 - unknown name, download failure, bad cache: all a load error
        raise TokenizerLoadError(f"cannot load tiktoken encoding {source.name!r}: {exc}") from exc
    return Tokenizer(encoding, bos_token=source.bos_token, eos_token=source.eos_token, add_bos=source.add_bos)


def _load(source: TokenizerSource) -> Tokenizer:
    if isinstance(source, tiktoken.Encoding):
        return Tokenizer(source)
    if isinstance(source, EncodingSource):
        return _load_named(source)
    return _load_bpe_file(source)


# ---------------------------------------------------------------------------------------------
# Registry


def _normalize_name(name: str) -> str:
    """Drop a ``:revision`` suffix and a third path segment (``org/model/variant``)."""
    base = name.split(":", 1)[0].strip()
    return "/".join(base.split("/")[:2])


def _longest_prefix_match(name: str, table: Mapping[str, TokenizerSource | str]) -> str | None:
    matches = [prefix for prefix in table if name.startswith(prefix)]
    return max(matches, key=len) if matches else None


def _as_source(source: TokenizerSource | str) -> TokenizerSource:
    if isinstance(source, str):
        return _BYTES_SOURCE if source == BYTES_ENCODING_NAME else EncodingSource(source)
    return source


@dataclass
class TokenizerRegistry:
    """Override table plus per-process cache. ``default_registry`` backs the module functions."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    _registered: dict[str, TokenizerSource] = field(default_factory=dict, init=False)
    _cache: dict[TokenizerSource, Tokenizer] = field(default_factory=dict, init=False)
    _load_locks: dict[TokenizerSource, threading.Lock] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def register(self, prefix: str, source: TokenizerSource | str) -> None:
        """Map a model name or prefix to an encoding name, a BPE file source or an encoding."""
        if not prefix:
            raise ValueError("tokenizer prefix must not be empty")
        with self._lock:
            self._registered[prefix] = _as_source(source)

    def unregister(self, prefix: str) -> None:
        with self._lock:
            self._registered.pop(prefix, None)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._load_locks.clear()

    def resolve(self, model_name: str, *, tokenizer_id: str | None = None) -> TokenizerSource:
        """The source ``get`` would load, without loading it."""
        forced = self.environ.get(ENV_FORCE_ENCODING)
        if forced:
            return _as_source(forced)
        candidates = [_normalize_name(name) for name in (tokenizer_id, model_name) if name]
        with self._lock:
            registered = dict(self._registered)
        for candidate in candidates:
            for table in (registered, BUILTIN_TABLE):
                prefix = _longest_prefix_match(candidate, table)
                if prefix is not None:
                    return self._with_file_override(candidate, table[prefix])
        for candidate in candidates:
            ranks_file = self._ranks_file_override(candidate)
            if ranks_file is not None:
                unknown_model = BpeFileSource(name=Path(ranks_file).name, pat_str=DEFAULT_PAT_STR)
                return self._with_file_override(candidate, unknown_model)
        raise TokenizerNotFoundError(self._not_found_message(model_name, tokenizer_id, registered))

    def get(self, model_name: str, *, tokenizer_id: str | None = None) -> Tokenizer:
        source = self.resolve(model_name, tokenizer_id=tokenizer_id)
        with self._lock:
            cached = self._cache.get(source)
            if cached is not None:
                return cached
            load_lock = self._load_locks.setdefault(source, threading.Lock())
        with load_lock:
            with self._lock:
                cached = self._cache.get(source)
            if cached is None:
                cached = _load(source)
                with self._lock:
                    self._cache[source] = cached
            return cached

    def _ranks_file_override(self, name: str) -> str | None:
        raw = self.environ.get(ENV_RANKS_FILES)
        if raw:
            try:
                per_model = msgspec.json.decode(raw, type=dict[str, str])
            except msgspec.DecodeError as exc:
                raise ValueError(
                    f"{ENV_RANKS_FILES} must be a JSON object of model prefix -> file path: {exc}"
                ) from exc
            prefix = _longest_prefix_match(name, per_model)
            if prefix is not None:
                return per_model[prefix]
        return self.environ.get(ENV_RANKS_FILE) or None

    def _with_file_override(self, name: str, source: TokenizerSource) -> TokenizerSource:
        if not isinstance(source, BpeFileSource):
            return source
        ranks_file = self._ranks_file_override(name)
        if ranks_file is None:
            return source
        sibling_config = Path(ranks_file).with_name(TOKENIZER_CONFIG_FILENAME)
        config_file = str(sibling_config) if sibling_config.is_file() else source.tokenizer_config_file
        return replace(source, ranks_file=ranks_file, tokenizer_config_file=config_file)

    def _not_found_message(
        self, model_name: str, tokenizer_id: str | None, registered: Mapping[str, TokenizerSource]
    ) -> str:
        asked = f"model {model_name!r}" + (f" (tokenizer_id {tokenizer_id!r})" if tokenizer_id else "")
        known = ", ".join(sorted({*registered, *BUILTIN_TABLE}))
        return (
            f"no tokenizer configured for {asked}. Known prefixes: {known}. Configure one with "
            f"tinkex.tokenizer.register_tokenizer(prefix, 'cl100k_base' | BpeFileSource(...)), "
            f"point {ENV_RANKS_FILE}=/path/tiktoken.model (or {ENV_RANKS_FILES}='{{\"<prefix>\": \"<path>\"}}') "
            f"at a tiktoken ranks file, or force an encoding for every model with "
            f"{ENV_FORCE_ENCODING}=<encoding name> (e.g. {BYTES_ENCODING_NAME})"
        )


default_registry = TokenizerRegistry()


def get_tokenizer(model_name: str, *, tokenizer_id: str | None = None) -> Tokenizer:
    """The tokenizer of ``model_name`` (``tokenizer_id`` from ``get_info`` wins when it resolves)."""
    return default_registry.get(model_name, tokenizer_id=tokenizer_id)


def register_tokenizer(prefix: str, source: TokenizerSource | str) -> None:
    """Map a model name or prefix to an encoding name, a :class:`BpeFileSource` or an encoding."""
    default_registry.register(prefix, source)
