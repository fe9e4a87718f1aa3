"""tinkex/proto/tinker_public_pb2.py(.pyi) are exactly what protoc generates from tinker_public.proto today.

The generated module is committed (so installing tinkex needs no protoc); this test regenerates it with grpcio-tools'
protoc into a temporary directory and compares byte for byte. If it fails, regenerate with the command at the top of
tinker_public.proto and commit the result.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from grpc_tools import protoc

import tinkex.proto

PROTO_DIR = Path(tinkex.proto.__file__).resolve().parent
GENERATED = ("tinker_public_pb2.py", "tinker_public_pb2.pyi")


def test_generated_module_is_fresh(tmp_path: Path) -> None:
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            str(PROTO_DIR / "tinker_public.proto"),
        ]
    )
    assert status == 0, "protoc could not compile tinkex/proto/tinker_public.proto"
    for name in GENERATED:
        committed = _without_version_stamp((PROTO_DIR / name).read_text())
        fresh = _without_version_stamp((tmp_path / name).read_text())
        assert committed == fresh, f"tinkex/proto/{name} is stale: regenerate it (see tinker_public.proto's header)"


def _without_version_stamp(generated: str) -> str:
    """The generated text minus the protoc version it names: a newer grpcio-tools stamps its own version there
    (the committed stamp is the runtime floor pyproject.toml requires) but generates the same module."""
    generated = re.sub(r"# Protobuf Python Version: \S+", "# Protobuf Python Version: X", generated)
    return re.sub(r"(_runtime_version\.Domain\.PUBLIC,)\s*\d+,\s*\d+,\s*\d+,", r"\1 X,", generated)


def test_the_stamp_is_what_pyproject_requires() -> None:
    """The committed module checks the protobuf runtime against its stamp at import: pyproject.toml's floor."""
    stamp = re.search(r"# Protobuf Python Version: (\S+)", (PROTO_DIR / "tinker_public_pb2.py").read_text())
    pyproject = (PROTO_DIR.parent.parent / "pyproject.toml").read_text()
    assert stamp is not None and f'"protobuf>={stamp.group(1)}"' in pyproject


@pytest.mark.parametrize("name", ["ForwardBackwardRequest", "ForwardBackwardOutput", "SampleResponse"])
def test_the_wire_messages_are_in_package_tinker_public(name: str) -> None:
    """The full names are part of the protocol's identity (the official descriptors use the same package)."""
    from tinkex.proto import tinker_public_pb2 as pb

    assert getattr(pb, name).DESCRIPTOR.full_name == f"tinker_public.{name}"
