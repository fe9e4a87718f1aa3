"""Tokenizer resolution, loading and caching, all offline (ranks files written by the tests)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from pathlib import Path

import pytest
import tiktoken

from tinkex import tokenizer as tokenizer_module
from tinkex.tokenizer import (
    BYTES_ENCODING_NAME,
    KIMI_K2_SOURCE,
    BpeFileSource,
    EncodingSource,
    TokenizerLoadError,
    TokenizerNotFoundError,
    TokenizerRegistry,
    get_tokenizer,
    model_input_from_text,
    register_tokenizer,
    special_token_pairs,
)

MERGES = [b"ab", b"abc", b"xy"]
AB, ABC, XY = 256, 257, 258


def write_ranks(path: Path, merges: list[bytes] = MERGES) -> Path:
    tokens = [bytes([byte]) for byte in range(256)] + merges
    path.write_text("".join(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(tokens)))
    return path


@pytest.fixture
def ranks_file(tmp_path: Path) -> Path:
    return write_ranks(tmp_path / "tiny.tiktoken")


def tiny_source(ranks_file: Path, name: str = "tiny") -> BpeFileSource:
    return BpeFileSource(
        name=name,
        pat_str=tokenizer_module.DEFAULT_PAT_STR,
        ranks_file=str(ranks_file),
        special_tokens=special_token_pairs({"<s>": 300, "</s>": 301}),
        bos_token="<s>",
        eos_token="</s>",
        add_bos=True,
    )


def test_builtin_bytes_encoding_round_trips_without_files_or_network() -> None:
    registry = TokenizerRegistry(environ={})
    tok = registry.get("tinkex/fake-tiny")
    text = "the thing — ünïcode 🙂 text"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.name == BYTES_ENCODING_NAME
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode())  # the merges apply
    assert tok.encode(text)[0] == tok.bos_token_id
    assert tok.vocab_size == max(tok.special_token_ids) + 1


def test_registered_prefix_resolves_and_merges_apply(ranks_file: Path) -> None:
    registry = TokenizerRegistry(environ={})
    registry.register("acme/", tiny_source(ranks_file))
    tok = registry.get("acme/model-7b")
    assert tok.encode("abc xy", add_special_tokens=False) == [ABC, ord(" "), XY]
    assert tok.encode("abc", add_special_tokens=True) == [300, ABC]
    assert tok.encode("ab", add_special_tokens=False) == [AB]
    assert tok.eos_token_id == 301


def test_longest_prefix_wins_and_registered_entries_beat_builtins(ranks_file: Path) -> None:
    registry = TokenizerRegistry(environ={})
    registry.register("acme/", tiny_source(ranks_file, "short"))
    registry.register("acme/special", tiny_source(ranks_file, "long"))
    registry.register("tinkex/fake-tiny", "cl100k_base")
    assert registry.resolve("acme/special-1").name == "long"  # type: ignore[union-attr]
    assert registry.resolve("acme/other").name == "short"  # type: ignore[union-attr]
    assert registry.resolve("tinkex/fake-tiny") == EncodingSource("cl100k_base")
    assert registry.resolve("tinkex/fake-other").name == BYTES_ENCODING_NAME  # type: ignore[union-attr]
    assert registry.resolve("openai/gpt-oss-20b") == EncodingSource("o200k_harmony")


def test_tokenizer_id_wins_strips_revision_and_falls_back_to_model_name(ranks_file: Path) -> None:
    registry = TokenizerRegistry(environ={})
    registry.register("acme/tok", tiny_source(ranks_file, "by-id"))
    registry.register("acme/model", tiny_source(ranks_file, "by-model"))
    assert registry.resolve("acme/model", tokenizer_id="acme/tok:rev-123").name == "by-id"  # type: ignore[union-attr]
    fallback = registry.resolve("acme/model", tokenizer_id="nobody/knows:rev")
    assert fallback.name == "by-model"  # type: ignore[union-attr]
    # org/model/variant names resolve as org/model, so an exact entry still matches
    assert registry.resolve("acme/model/lora-variant").name == "by-model"  # type: ignore[union-attr]


def test_llama3_heuristics_share_one_gated_source_that_needs_a_local_file(ranks_file: Path) -> None:
    registry = TokenizerRegistry(environ={})
    mirror = registry.resolve("x", tokenizer_id="thinkingmachineslabinc/meta-llama-3-tokenizer")
    assert registry.resolve("meta-llama/Llama-3.1-8B") == mirror
    with pytest.raises(TokenizerLoadError, match="TINKEX_TOKENIZER_FILE"):
        registry.get("meta-llama/Llama-3.1-8B")

    with_file = TokenizerRegistry(environ={"TINKEX_TOKENIZER_FILE": str(ranks_file)})
    tok = with_file.get("meta-llama/Llama-3.1-8B-Instruct")
    assert tok.encode("abc") == [128000, ABC]
    assert tok.special_tokens["<|eot_id|>"] == 128009
    assert tok.decode(tok.encode("xy<|eot_id|>"), skip_special_tokens=True) == "xy"


def test_env_file_override_for_unknown_model_and_per_model_mapping(tmp_path: Path, ranks_file: Path) -> None:
    other = write_ranks(tmp_path / "other.tiktoken", merges=[b"xy"])
    environ = {
        "TINKEX_TOKENIZER_FILE": str(ranks_file),
        "TINKEX_TOKENIZER_FILES": json.dumps({"acme/": str(other)}),
    }
    registry = TokenizerRegistry(environ=environ)
    assert registry.get("acme/model").encode("xy", add_special_tokens=False) == [256]
    assert registry.get("someone/else").encode("abc", add_special_tokens=False) == [ABC]

    with pytest.raises(ValueError, match="TINKEX_TOKENIZER_FILES"):
        TokenizerRegistry(environ={"TINKEX_TOKENIZER_FILES": "not json"}).resolve("acme/model")


def test_env_can_force_the_builtin_encoding_for_any_model() -> None:
    registry = TokenizerRegistry(environ={"TINKEX_TOKENIZER": BYTES_ENCODING_NAME})
    assert registry.get("Qwen/Qwen3-8B").name == BYTES_ENCODING_NAME


def test_kimi_k2_offline_from_local_files_with_sibling_config(tmp_path: Path) -> None:
    ranks = write_ranks(tmp_path / "tiktoken.model")
    config = {
        "added_tokens_decoder": {"259": {"content": "[BOS]"}, "260": {"content": "[EOS]"}},
        "bos_token": "[BOS]",
        "eos_token": {"content": "[EOS]"},
    }
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = TokenizerRegistry(environ={"TINKEX_TOKENIZER_FILE": str(ranks)}).get("moonshotai/Kimi-K2-Thinking")
    assert (tok.bos_token_id, tok.eos_token_id) == (259, 260)
    assert tok.special_tokens["<|reserved_token_261|>"] == 261
    assert len(tok.special_tokens) == 256  # ids [259, 515)
    assert tok.encode("abc") == [ABC]  # Kimi does not add BOS
    assert tok.encode("[EOS]") == [260]
    assert tok.encode("你好 abc", add_special_tokens=False)[-1] == ABC


def test_kimi_k2_download_is_served_from_tiktokens_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    ranks_url, config_url = KIMI_K2_SOURCE.ranks_file, KIMI_K2_SOURCE.tokenizer_config_file
    assert ranks_url is not None and config_url is not None
    # tiktoken's cache names an entry after the sha1 of its URL
    write_ranks(cache / hashlib.sha1(ranks_url.encode()).hexdigest())
    (cache / hashlib.sha1(config_url.encode()).hexdigest()).write_text('{"bos_token": null}')
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(tiktoken.load, "read_file", _no_network)
    tok = TokenizerRegistry(environ={}).get("moonshotai/Kimi-K2-Thinking:rev")
    assert tok.name == "kimi-k2"
    assert tok.encode("xy", add_special_tokens=False) == [XY]


def _no_network(blobpath: str) -> bytes:
    raise AssertionError(f"tests must not download {blobpath}")


def test_cache_is_per_source_and_loads_once_under_concurrency(
    ranks_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = TokenizerRegistry(environ={})
    registry.register("acme/", tiny_source(ranks_file))
    loads: list[object] = []
    real_load = tokenizer_module._load
    monkeypatch.setattr(tokenizer_module, "_load", lambda source: loads.append(source) or real_load(source))

    results: list[object] = []
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        barrier.wait()
        results.append(registry.get(f"acme/model-{index}"))

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1
    assert all(result is results[0] for result in results)

    registry.clear_cache()
    assert registry.get("acme/model-0") is not results[0]
    assert len(loads) == 2


def test_special_tokens_allowed_by_default_and_can_be_restricted() -> None:
    tok = TokenizerRegistry(environ={}).get("tinkex/fake")
    eos = tok.eos_token_id
    assert tok.encode("<|eos|>", add_special_tokens=False) == [eos]
    as_text = tok.encode("<|eos|>", add_special_tokens=False, allowed_special=())
    assert eos not in as_text and tok.decode(as_text) == "<|eos|>"
    assert tok.decode(tok.encode("hi<|eos|>"), skip_special_tokens=True) == "hi"


def test_unknown_model_error_says_how_to_configure() -> None:
    with pytest.raises(TokenizerNotFoundError) as info:
        TokenizerRegistry(environ={}).get("Qwen/Qwen3-8B", tokenizer_id="Qwen/Qwen3-8B:main")
    message = str(info.value)
    for hint in ("Qwen/Qwen3-8B", "register_tokenizer", "TINKEX_TOKENIZER_FILE", "TINKEX_TOKENIZER=", "tinkex/"):
        assert hint in message


def test_malformed_ranks_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("YQ== 0\nnot-base64!! 1\n")
    registry = TokenizerRegistry(environ={})
    registry.register("bad/", tiny_source(bad))
    with pytest.raises(TokenizerLoadError, match=r"bad\.tiktoken.*line 2"):
        registry.get("bad/model")
    registry.register("missing/", tiny_source(tmp_path / "nope.tiktoken"))
    with pytest.raises(TokenizerLoadError, match="nope.tiktoken"):
        registry.get("missing/model")


def test_module_functions_use_the_default_registry(ranks_file: Path) -> None:
    register_tokenizer("tests-only/", tiny_source(ranks_file, "module-level"))
    try:
        assert get_tokenizer("tests-only/model").name == "module-level"
        assert get_tokenizer("tinkex/fake-tiny") is get_tokenizer("tinkex/fake-other")
    finally:
        tokenizer_module.default_registry.unregister("tests-only/")


def test_model_input_from_text_holds_the_encoded_tokens() -> None:
    tok = get_tokenizer("tinkex/fake-tiny")
    model_input = model_input_from_text("the answer", tok)
    assert model_input.to_ints() == tok.encode("the answer")
    assert model_input_from_text("the", tok, add_special_tokens=False).to_ints() == tok.encode(
        "the", add_special_tokens=False
    )
