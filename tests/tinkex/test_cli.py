"""The ``tinkex`` CLI against the local server: output, --json, exit codes, errors without tracebacks or keys."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tinkex
from tinkex.cli import main
from tinkex.testing import FaultRule, LocalServer

API_KEY = "tml-cli-secret-0123456789"
BASE_MODEL = "Qwen/Qwen3-8B"


@dataclass
class World:
    server: LocalServer
    client: tinkex.Client
    training: tinkex.TrainingClient
    weights_path: str
    sampler_path: str

    @property
    def options(self) -> list[str]:
        return ["--base-url", self.server.base_url, "--api-key", API_KEY]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with LocalServer() as server:
        client = tinkex.Client(base_url=server.base_url, api_key=API_KEY)
        training = client.create_lora_training_client(BASE_MODEL, rank=8)
        weights = training.save_state("ckpt-1").result().path
        sampler = training.save_weights_for_sampler("final").result().path
        yield World(server, client, training, weights, sampler)
        client.close()


@pytest.fixture(autouse=True)
def isolated(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("TINKER_API_KEY", "TINKER_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    yield
    world.server.faults.clear()


def run(world: World, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*world.options, *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and API_KEY not in out + err
    return code, out, err


def run_json(world: World, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(world, capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def new_checkpoint(world: World, name: str) -> str:
    return world.training.save_state(name).result().path


# checkpoints -------------------------------------------------------------------------------------------------


def test_checkpoint_list_table_and_json(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(world, capsys, "checkpoint", "list")
    assert code == 0 and out.splitlines()[0].split() == ["PATH", "TYPE", "SIZE", "PUBLIC", "CREATED", "EXPIRES"]
    assert world.weights_path in out and world.sampler_path in out

    data = run_json(world, capsys, "checkpoint", "list", "--run-id", world.training.model_id)
    assert {c["tinker_path"] for c in data["checkpoints"]} >= {world.weights_path, world.sampler_path}


def test_checkpoint_list_run_id_accepts_any_path_form(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    for form in (world.sampler_path, f"tinker://{world.training.model_id}", world.sampler_path.removeprefix("tinker://")):
        data = run_json(world, capsys, "checkpoint", "list", "--run-id", form)
        assert world.weights_path in [c["tinker_path"] for c in data["checkpoints"]]


def test_checkpoint_list_all_pages_with_progress(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(world, capsys, "checkpoint", "list", "--all", "--limit", "1", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["total_count"] == len(data["checkpoints"]) >= 2
    assert "fetching checkpoints: 1/" in err and f"fetching checkpoints: {data['total_count']}/" in err

    code, out, err = run(world, capsys, "checkpoint", "list", "--limit", "1")
    assert code == 0 and "use --all" in err


def test_checkpoint_info(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(world, capsys, "checkpoint", "info", world.weights_path + "/")
    assert data["checkpoint"]["tinker_path"] == world.weights_path
    assert data["weights_info"]["base_model"] == BASE_MODEL and data["weights_info"]["lora_rank"] == 8
    code, out, _ = run(world, capsys, "checkpoint", "info", world.sampler_path)
    assert code == 0 and "base model: Qwen/Qwen3-8B" in out and "type:       sampler" in out


def test_checkpoint_info_of_an_unknown_checkpoint(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(world, capsys, "checkpoint", "info", f"tinker://{world.training.model_id}/weights/nope")
    assert code == 1 and "has no checkpoint 'weights/nope'" in err and "weights/ckpt-1" in err
    code, _, err = run(world, capsys, "checkpoint", "info", "tinker://nobody:train:0/weights/x")
    assert code == 1 and err.startswith("error: Error code: 404") and "nobody:train:0" in err


def test_bad_path_is_a_usage_error_naming_the_form(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(world, capsys, "checkpoint", "info", "tinker://run/ckpt")
    assert code == 2 and "'tinker://run/ckpt'" in err and "tinker://<training_run_id>/<kind>/<name>" in err


def test_checkpoint_download(world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = run_json(world, capsys, "checkpoint", "download", world.sampler_path, "--dest", str(tmp_path))
    target = Path(data["path"])
    assert target.parent == tmp_path and (target / "checkpoint.json").exists()

    code, _, err = run(world, capsys, "checkpoint", "download", world.sampler_path, "--dest", str(tmp_path))
    assert code == 2 and "already exists" in err and "--force" in err
    code, out, _ = run(world, capsys, "checkpoint", "download", world.sampler_path, "--dest", str(tmp_path), "--force")
    assert code == 0 and out.startswith(f"downloaded {world.sampler_path}")

    data = run_json(world, capsys, "checkpoint", "download", world.weights_path, "--dest", str(tmp_path), "--no-extract")
    assert data["path"].endswith(".tar.gz") and Path(data["path"]).is_file()


def test_bulk_delete_with_yes(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [new_checkpoint(world, f"bulk-{i}") for i in range(3)]
    data = run_json(world, capsys, "checkpoint", "delete", *paths, paths[0], "--yes")
    assert data["results"] == [{"tinker_path": p, "deleted": True} for p in paths]  # duplicates collapsed
    remaining = [c.tinker_path for c in world.client.create_rest_client().list_checkpoints(world.training.model_id).result().checkpoints]
    assert not set(paths) & set(remaining)


def test_bulk_delete_reports_each_failure(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    keep_going = new_checkpoint(world, "partial")
    missing = f"tinker://{world.training.model_id}/weights/never-existed"
    code, out, err = run(world, capsys, "checkpoint", "delete", missing, keep_going, "-y")
    assert code == 1 and f"deleted {keep_going}" in out
    assert f"error: {missing}: Error code: 404" in err


def test_delete_needs_confirmation(world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = new_checkpoint(world, "confirm-me")
    code, _, err = run(world, capsys, "checkpoint", "delete", path)  # stdin is not a terminal under pytest
    assert code == 2 and "pass --yes" in err

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, _, err = run(world, capsys, "checkpoint", "delete", path)
    assert code == 2 and "nothing deleted" in err
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    code, out, _ = run(world, capsys, "checkpoint", "delete", path)
    assert code == 0 and f"deleted {path}" in out


def test_delete_validates_every_path_before_deleting(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    path = new_checkpoint(world, "survivor")
    code, _, err = run(world, capsys, "checkpoint", "delete", path, "tinker://bad", "--yes")
    assert code == 2 and "'tinker://bad'" in err
    assert path in [c.tinker_path for c in world.client.create_rest_client().list_checkpoints(world.training.model_id).result().checkpoints]


def test_publish_unpublish_and_ttl(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    path = new_checkpoint(world, "public-one")
    assert run_json(world, capsys, "checkpoint", "publish", path) == {"tinker_path": path, "public": True}

    def record() -> dict[str, Any]:
        listed = run_json(world, capsys, "checkpoint", "list", "--run-id", world.training.model_id)["checkpoints"]
        (found,) = [c for c in listed if c["tinker_path"] == path]
        return found

    assert record()["public"] is True
    code, out, _ = run(world, capsys, "checkpoint", "unpublish", path)
    assert code == 0 and out.strip() == f"unpublished {path}" and "public" not in record()

    code, out, _ = run(world, capsys, "checkpoint", "set-ttl", path, "120")
    assert code == 0 and "expires in 120 s" in out and record()["expires_at"]
    assert run_json(world, capsys, "checkpoint", "set-ttl", path, "none") == {"tinker_path": path, "ttl_seconds": None}
    assert "expires_at" not in record()

    code, _, err = run(world, capsys, "checkpoint", "set-ttl", path, "-5")
    assert code == 2 and "positive number of seconds" in err


# runs --------------------------------------------------------------------------------------------------------


def test_run_list_and_info(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(world, capsys, "run", "list")
    assert code == 0 and world.training.model_id in out and "RUN" in out.splitlines()[0]
    data = run_json(world, capsys, "run", "list", "--all", "--limit", "1")
    assert world.training.model_id in [r["training_run_id"] for r in data["training_runs"]]

    for form in (world.training.model_id, world.weights_path):
        data = run_json(world, capsys, "run", "info", form)
        assert data["training_run"]["training_run_id"] == world.training.model_id
        assert data["training_run"]["lora_rank"] == 8 and data["checkpoints"]
    code, out, _ = run(world, capsys, "run", "info", world.training.model_id)
    assert code == 0 and "state:        ok" in out and world.weights_path in out


def test_corrupted_run_is_shown(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    other = world.client.create_lora_training_client(BASE_MODEL, rank=2)
    world.server.set_corrupted(other.model_id)
    code, out, _ = run(world, capsys, "run", "info", other.model_id)
    assert code == 0 and "CORRUPTED" in out


# sample ------------------------------------------------------------------------------------------------------


def test_sample_with_tokens(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(
        world, capsys, "sample", "--model-path", world.sampler_path, "--tokens", "1,2,3",
        "--max-tokens", "4", "--num-samples", "2", "--temperature", "0.5", "--seed", "7",
    )
    assert data["prompt_tokens"] == [1, 2, 3] and len(data["samples"]) == 2
    assert all(len(s["tokens"]) == 4 and s["stop_reason"] == "length" for s in data["samples"])
    code, out, _ = run(world, capsys, "sample", "--base-model", BASE_MODEL, "--tokens", "5,6", "--max-tokens", "3")
    assert code == 0 and out.startswith("--- sample 0 (length, 3 tokens)")


def test_sample_with_text_needs_a_tokenizer(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINKEX_TOKENIZER", raising=False)
    code, _, err = run(world, capsys, "sample", "--base-model", BASE_MODEL, "--prompt", "hello")
    assert code == 2 and "no tokenizer available for Qwen/Qwen3-8B" in err and "--tokens" in err

    monkeypatch.setenv("TINKEX_TOKENIZER", "tinkex-bytes")
    data = run_json(world, capsys, "sample", "--model-path", world.sampler_path, "--prompt", "hi", "--max-tokens", "3")
    assert len(data["prompt_tokens"]) >= 2 and isinstance(data["samples"][0]["text"], str)


def test_sample_from_a_training_path_names_the_mistake(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(world, capsys, "sample", "--model-path", world.weights_path, "--tokens", "1")
    assert code == 2 and "training-state checkpoint" in err and "sampler_weights" in err


# general -----------------------------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tinkex"] == tinkex.__version__ and data["wire_sdk_version"] == "0.16.1"
    assert main(["version"]) == 0 and capsys.readouterr().out.startswith("tinkex ")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["checkpoint", "frobnicate"]) == 2
    assert main(["sample", "--base-model", "m", "--tokens", "a,b"]) == 2
    assert "comma-separated token ids" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_missing_api_key_is_a_usage_error(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--base-url", world.server.base_url, "checkpoint", "list"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "TINKER_API_KEY" in err and "Traceback" not in err


def test_api_errors_never_print_the_key(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.server.faults.add(
        FaultRule(endpoint="list_user_checkpoints", status=403, body={"detail": f"key {API_KEY} is not allowed"})
    )
    code, _, err = run(world, capsys, "checkpoint", "list")  # run() asserts the key is absent
    assert code == 1 and "Error code: 403" in err and "is not allowed" in err


def test_options_work_after_the_subcommand(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["checkpoint", "list", "--json", *world.options])
    assert code == 0 and "checkpoints" in json.loads(capsys.readouterr().out)


def test_demo_is_a_subcommand_with_the_shared_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, str | None, bool]] = []

    def fake_run(args: object, **_: object) -> int:
        seen.append((args.steps, args.api_key, args.json))  # type: ignore[attr-defined]
        return 0

    monkeypatch.setattr("tinkex.demo.run", fake_run)
    assert main(["--api-key", "tml-k", "--json", "demo", "--steps", "3"]) == 0 and seen == [(3, "tml-k", True)]