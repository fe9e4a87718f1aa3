"""Every code block of README.md and docs/*.md runs, exactly as written, against a loopback LocalServer.

The environment points the examples at the server the way the README tells a user to (``TINKER_BASE_URL``,
``TINKER_API_KEY``), and puts this interpreter's ``bin`` first on ``PATH`` (``tinkex``, ``python``). Python blocks run
in a fresh interpreter each (top-level ``await`` allowed, as in a notebook or ``python -m asyncio``); bash blocks
under ``bash -euo pipefail``. A block may only be skipped by a ``docs-test: skip: <reason>`` comment, and the
reasons stay few (a test counts them).

The one fixture: docs/deadlines.md's snippet uses the objects of "Using tinkex" (``training``, ``data``,
``sampler``, ``prompts``, ``params``), which :data:`PRELUDES` builds first, as the text around it says.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from doc_blocks import DOC_FILES, ROOT, Block, code_blocks  # type: ignore[import-not-found]

from tinkex.testing import LocalServer
from tinkex.testing.config import DEFAULT_BASE_MODELS

MAX_SKIPPED = 6
KEY = "tml-docs-test"

PRELUDES: dict[str, str] = {
    "docs/deadlines.md": """
import asyncio
import tinkex
from tinkex import types
client = tinkex.Client()
training = client.create_lora_training_client("tinkex/fake-tiny", rank=8)
tokens = training.get_tokenizer().encode("deadlines bound every wait")
data = [types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                    loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)})]
sampler = training.save_weights_and_get_sampling_client()
prompts = [types.ModelInput.from_ints(tokens[:3]), types.ModelInput.from_ints(tokens[3:6])]
params = types.SamplingParams(max_tokens=4)
""",
}

RUNNER = """
import ast, asyncio, inspect, sys
source = sys.stdin.read()
prelude, _, block = source.partition("\\n# --- block ---\\n")
namespace = {"__name__": "__main__"}
exec(compile(prelude, "<prelude>", "exec"), namespace)
code = compile(block, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, namespace)
if inspect.iscoroutine(result):
    asyncio.run(result)
"""

BLOCKS = code_blocks()


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(base_models=("tinkex/fake-tiny", *DEFAULT_BASE_MODELS)) as running:
        yield running


def _environment(server: LocalServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINKER_", "TINKEX_"))}
    env.update(
        TINKER_BASE_URL=server.base_url,
        TINKER_API_KEY=KEY,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    return env


def _run(block: Block, server: LocalServer, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = _environment(server)
    if block.language == "python":
        prelude = PRELUDES.get(str(block.path.relative_to(ROOT)), "")
        return subprocess.run(
            [sys.executable, "-c", RUNNER, block.name], input=f"{prelude}\n# --- block ---\n{block.code}",
            capture_output=True, text=True, timeout=180, cwd=cwd, env=env,
        )
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code], capture_output=True, text=True, timeout=180, cwd=cwd, env=env
    )


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_block_runs_as_written(block: Block, server: LocalServer, tmp_path: Path) -> None:
    if block.skip_reason is not None:
        assert block.skip_reason.strip(), f"{block.name}: a skip needs its reason"
        pytest.skip(block.skip_reason)
    done = _run(block, server, tmp_path)
    assert done.returncode == 0, f"{block.name} failed:\n{block.code}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr


def test_skips_stay_few_and_the_first_example_runs() -> None:
    skipped = [block.name for block in BLOCKS if block.skip_reason is not None]
    assert len(skipped) <= MAX_SKIPPED, skipped
    readme_python = [b for b in BLOCKS if b.path.name == "README.md" and b.language == "python"]
    first = readme_python[0]
    assert first.skip_reason is None and '"tinkex/fake-tiny"' in first.code  # served locally, tokenizer offline
    assert DOC_FILES[0].name == "README.md"
