"""Ray is optional: ``tinkex[ray]`` declares it, CI installs it (so the Ray fan-out tests run there), and nothing in
tinkex imports it: importing tinkex, sampling, and pickling a SamplingClient for another process leave it out."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

_PROGRAM = """
import pickle, sys
import tinkex
from tinkex import types
from tinkex.testing import LocalServer

with LocalServer(base_models=("tinkex/fake-tiny",)) as server:
    client = tinkex.Client(api_key="tml-fanout", base_url=server.base_url)
    sampler = client.create_sampling_client(base_model="tinkex/fake-tiny")
    prompt = types.ModelInput.from_ints(sampler.get_tokenizer().encode("no ray here"))
    sampler.sample(prompt, 2, types.SamplingParams(max_tokens=4)).result(timeout=30)
    copy = pickle.loads(pickle.dumps(sampler))          # what a worker process gets
    copy.sample(prompt, 1, types.SamplingParams(max_tokens=4)).result(timeout=30)
    copy.holder.close()
    client.close()
print(sorted(name for name in sys.modules if name == "ray" or name.startswith("ray.")))
"""


def test_importing_tinkex_and_sampling_do_not_import_ray() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_ray_is_the_optional_extra_that_ci_installs() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(re.match(r"ray\b", requirement) for requirement in extras["ray"])
    others = [requirement for name, found in extras.items() if name != "ray" for requirement in found]
    assert not any(re.match(r"ray\b", requirement) for requirement in others)  # never pulled in by another extra
    installs = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pip_install -e" in line]
    assert any(re.search(r"\[[^\]]*\bray\b[^\]]*\]", line) for line in installs), installs
