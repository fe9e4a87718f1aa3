"""Environment variable names are spelled once, in tinkex.env_names: the manifest spells the ones its layers read
the same way, and no other tinkex module writes one out."""

import ast
from pathlib import Path

import msgspec

import tinkex
from tinkex import env_names

PACKAGE = Path(tinkex.__file__).parent
NAMES = {getattr(env_names, constant) for constant in env_names.__all__}


def _env_values(node: object) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("env", "backend_env") and isinstance(value, str):
                found.append(value)
            found += _env_values(value)
    elif isinstance(node, list):
        for item in node:
            found += _env_values(item)
    return found


def test_every_name_the_manifest_reads_is_declared_here() -> None:
    manifest = msgspec.json.decode((PACKAGE / "manifest.json").read_bytes())
    in_manifest = set(_env_values(manifest))
    assert in_manifest and in_manifest <= NAMES, in_manifest - NAMES


def _spelled(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value in NAMES}


def test_no_other_module_spells_a_name_out() -> None:
    spelling = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "env_names.py" and _spelled(path)
    }
    assert not spelling, spelling


def test_the_names_are_the_official_ones() -> None:
    assert (env_names.API_KEY, env_names.BASE_URL, env_names.TAGS) == (
        "TINKER_API_KEY",
        "TINKER_BASE_URL",
        "TINKER_TAGS",
    )
    assert all(name.startswith(("TINKER_", "TINKEX_", "CLOUDFLARE_ACCESS_")) for name in NAMES)
