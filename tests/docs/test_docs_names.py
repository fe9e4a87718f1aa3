"""The docs name only what exists: every ``tinkex.…`` / ``pristine_transport.…`` name (and a keyword argument
given to it), every CLI option shown with ``tinkex …`` or ``python -m tinkex.testing …``, every repository path
and every ``TINKER_*`` / ``TINKEX_*`` environment variable of README.md and docs/*.md."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import re
import shlex
from typing import Any

import pytest
from doc_blocks import DOC_FILES, ROOT  # type: ignore[import-not-found]

_SPAN = re.compile(r"`([^`\n]+)`")
_DOTTED = re.compile(r"\b((?:tinkex|pristine_transport)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(\((?P<keyword>[a-z_]+)=)?")
_PATH = re.compile(r"^(?:\.?[\w.-]+/)+[\w.-]+\.(?:py|md|sh|json|txt|proto|toml)$")
_ENV = re.compile(r"\b(TINKE[RX]_[A-Z0-9_]+)\b")
_OPTION = re.compile(r"^--[a-z][a-z0-9-]*")


def _texts() -> list[tuple[str, str]]:
    """(file, text) of every inline code span and every line of a code block."""
    found: list[tuple[str, str]] = []
    for path in DOC_FILES:
        name = str(path.relative_to(ROOT))
        in_block = False
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("```"):
                in_block = not in_block
                continue
            if in_block:
                found.append((name, line))
            else:
                found.extend((name, span) for span in _SPAN.findall(line))
    return found


TEXTS = _texts()


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(dotted)


DOTTED = sorted(
    {
        (m[1], m["keyword"] or "")
        for _, text in TEXTS
        for m in _DOTTED.finditer(text)
        if not text[: m.start()].endswith("/") and not m[1].endswith((".json", ".md", ".py"))  # file names
    }
)


@pytest.mark.parametrize(("dotted", "keyword"), DOTTED, ids=[f"{d}({k}=)" if k else d for d, k in DOTTED])
def test_named_python_object_exists(dotted: str, keyword: str) -> None:
    target = _resolve(dotted)
    if keyword:
        parameters = inspect.signature(target).parameters
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        assert keyword in parameters or accepts_any, f"{dotted} takes no {keyword}="


def _cli_commands() -> list[tuple[str, list[str]]]:
    commands: list[tuple[str, list[str]]] = []
    for file, text in TEXTS:
        text = text.split("#", 1)[0].split("|", 1)[0].strip()
        for prefix in ("tinkex ", "python -m tinkex.testing", ".venv/bin/python -m tinkex.testing", ".venv/bin/tinkex "):
            if text.startswith(prefix) and not text.startswith("tinkex exec"):
                try:
                    words = shlex.split(text.replace("[", " ").replace("]", " ").replace("|", " "))
                except ValueError:
                    words = text.split()
                commands.append((file, words))
    return commands


CLI = _cli_commands()
_SUBCOMMANDS = {"checkpoint", "run", "sample", "version", "demo", "list", "info", "download", "delete", "publish",
                "unpublish", "set-ttl"}


def _help(words: list[str]) -> str:
    """The --help text of the command the words name (its subcommand path: the words before the first option)."""
    out = io.StringIO()
    if "tinkex.testing" in words:
        from tinkex.testing.__main__ import _parser

        return _parser().format_help()
    from tinkex.cli import main

    path = [word for word in words[1:] if word in _SUBCOMMANDS][:2]  # shared options may come first
    with contextlib.redirect_stdout(out):
        code = main([*path, "--help"])
    assert code == 0, f"tinkex {' '.join(path)} --help failed"
    return out.getvalue()


@pytest.mark.parametrize(("file", "words"), CLI, ids=[f"{f}: {' '.join(w)}" for f, w in CLI])
def test_named_cli_options_exist(file: str, words: list[str]) -> None:
    text = _help(words)
    for word in words:
        option = _OPTION.match(word)
        if option is not None:
            assert f"{option[0]} " in text or f"{option[0]}\n" in text or f"{option[0]}," in text, (
                f"{file}: {' '.join(words)}: no option {option[0]}"
            )


PATHS = sorted({text for _, text in TEXTS if _PATH.match(text) and not text.startswith(("/", "my_"))})


@pytest.mark.parametrize("path", PATHS)
def test_named_repository_path_exists(path: str) -> None:
    assert (ROOT / path).exists(), path


ENVIRONMENT = sorted({name for path in DOC_FILES for name in _ENV.findall(path.read_text(encoding="utf-8"))})


@pytest.mark.parametrize("name", ENVIRONMENT)
def test_named_environment_variable_is_read(name: str) -> None:
    sources = [
        *ROOT.joinpath("tinkex").rglob("*.py"),
        *ROOT.joinpath("pristine_transport").rglob("*.py"),
        ROOT / "manifest.json",  # the manifest names the variables the stack reads (transport.backend_env)
        *ROOT.joinpath("tests", "cookbook").glob("*.sh"),  # the cookbook venv's set-up script
        *ROOT.joinpath("tests", "official").glob("*.sh"),  # the official SDK venvs' set-up script
    ]
    assert any(name in source.read_text(encoding="utf-8") for source in sources), f"nothing reads {name}"


def test_the_docs_name_things() -> None:  # the extraction itself works: the docs mention these
    assert ("tinkex.Client", "on_queue_state_change") in DOTTED and "TINKER_API_KEY" in ENVIRONMENT
    assert any("--base-model" in words for _, words in CLI) and "tests/cookbook/setup_venv.sh" in PATHS
