"""``ModelInput.from_text`` tokenizes through any tokenizer's ``encode``, without the types importing the
tokenizer module (which imports the types)."""

from __future__ import annotations

import ast
from pathlib import Path

import tinkex.types
from tinkex import ModelInput, get_tokenizer
from tinkex.tokenizer import model_input_from_text


def test_from_text_holds_the_tokens_with_special_tokens_added() -> None:
    tok = get_tokenizer("tinkex/fake-tiny")
    assert ModelInput.from_text("the answer", tok).to_ints() == tok.encode("the answer", add_special_tokens=True)
    assert ModelInput.from_text("the answer", tok) == model_input_from_text("the answer", tok)


class _CountingEncoder:
    """Any object with a Hugging Face style ``encode`` is enough."""

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return ([0] if add_special_tokens else []) + [len(word) for word in text.split()]


def test_from_text_takes_any_encoder() -> None:
    assert ModelInput.from_text("a bb ccc", _CountingEncoder()).to_ints() == [0, 1, 2, 3]


def test_no_types_module_imports_the_tokenizer() -> None:
    importers = []
    for path in Path(tinkex.types.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            # absolute (tinkex.tokenizer) or relative (..tokenizer, from .. import tokenizer) alike
            if any("tokenizer" in name.split(".") for name in names):
                importers.append(path.name)
    assert not importers
