"""Checkpoint download: streamed, resumable after a dropped connection, safe extraction, no key to the archive host."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import tinkex
from tinkex.checkpoints import (
    DownloadError,
    UnsafeArchiveError,
    download_checkpoint,
    download_checkpoint_async,
    safe_extract,
)
from tinkex.rest_client import RestClient
from tinkex.testing import FaultRule, LocalServer

API_KEY = "tml-checkpoints-test-key"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class World:
    server: LocalServer
    client: tinkex.Client
    rest: RestClient
    sampler_path: str
    weights_path: str


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with LocalServer() as server:
        client = tinkex.Client(base_url=server.base_url, api_key=API_KEY)
        training = client.create_lora_training_client("Qwen/Qwen3-8B", rank=8)
        weights = training.save_state("ckpt-1").result().path
        sampler = training.save_weights_for_sampler("final").result().path
        yield World(server, client, client.create_rest_client(), sampler, weights)
        client.close()


@pytest.fixture(autouse=True)
def clean_faults(world: World) -> Iterator[None]:
    yield
    world.server.faults.clear()


# a storage host of our own: Range support, dropped connections, header capture --------------------------------


@dataclass
class ArchiveHost:
    payload: bytes
    drop_after: list[int] = field(default_factory=list)
    """For the first len(drop_after) requests: send the full Content-Length, then cut after this many bytes."""
    honour_range: bool = True
    forbid_ranged: int = 0
    """Answer this many ranged requests 403, as a storage host does once a signed URL has expired."""
    requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def archive_host() -> Iterator[Callable[..., ArchiveHost]]:
    servers: list[ThreadingHTTPServer] = []

    def start(payload: bytes, **options: object) -> ArchiveHost:
        host = ArchiveHost(payload, **options)  # type: ignore[arg-type]

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                host.requests.append({k.lower(): v for k, v in self.headers.items()})
                start = 0
                ranged = self.headers.get("Range")
                if ranged and host.forbid_ranged:
                    host.forbid_ranged -= 1
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if ranged and host.honour_range:
                    start = int(ranged.removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(host.payload) - 1}/{len(host.payload)}")
                else:
                    self.send_response(200)
                body = host.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/x-tar")
                self.end_headers()
                if host.drop_after:
                    self.wfile.write(body[: host.drop_after.pop(0)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        host.url = f"http://127.0.0.1:{server.server_address[1]}/signed/archive.tar?sig=abc"
        return host

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def redirect_archive_to(world: World, url: str) -> None:
    world.server.faults.add(
        FaultRule(endpoint="get_checkpoint_archive_url", status=302, headers={"location": url}, body=b"", count=20)
    )


def make_tar(members: dict[str, bytes], extra: Callable[[tarfile.TarFile], None] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            extra(tar)
    return buffer.getvalue()


# downloads from the local Tinker server --------------------------------------------------------------------


def test_download_extracts_the_archive(world: World, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    result = download_checkpoint(world.rest, world.sampler_path, tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert result.path.is_dir() and result.path.parent == tmp_path
    assert json.loads((result.path / "checkpoint.json").read_text())["tinker_path"] == world.sampler_path
    assert json.loads((result.path / "adapter_config.json").read_text())["r"] == 8
    assert seen[-1] == (result.size_bytes, result.size_bytes) and result.resumes == 0
    assert [p.name for p in tmp_path.iterdir()] == [result.path.name]  # no temp files left behind


def test_existing_destination_needs_force(world: World, tmp_path: Path) -> None:
    first = download_checkpoint(world.rest, world.sampler_path, tmp_path, progress=False)
    (first.path / "stale.txt").write_text("old")
    with pytest.raises(FileExistsError, match="pass force=True"):
        download_checkpoint(world.rest, world.sampler_path, tmp_path, progress=False)
    assert (first.path / "stale.txt").exists()
    again = download_checkpoint(world.rest, world.sampler_path, tmp_path, progress=False, force=True)
    assert again.path == first.path and not (again.path / "stale.txt").exists()
    assert (again.path / "checkpoint.json").exists()


def test_download_without_extraction_keeps_the_archive(world: World, tmp_path: Path) -> None:
    result = download_checkpoint(world.rest, world.weights_path, tmp_path, progress=False, extract=False)
    assert result.path.name.endswith(".tar.gz") and result.path.stat().st_size == result.size_bytes
    with tarfile.open(result.path) as tar:
        assert sorted(tar.getnames()) == ["adapter_config.json", "checkpoint.json"]


def test_download_with_a_progress_bar(world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    download_checkpoint(world.rest, world.sampler_path, tmp_path, progress=True)
    assert "B" in capsys.readouterr().err


@pytest.mark.anyio
async def test_async_download(world: World, tmp_path: Path) -> None:
    client = tinkex.Client(base_url=world.server.base_url, api_key=API_KEY)
    try:
        result = await download_checkpoint_async(client.create_rest_client(), world.sampler_path, tmp_path, progress=False)
        assert (result.path / "checkpoint.json").exists()
    finally:
        await client.aclose()


def test_missing_checkpoint_is_an_api_error(world: World, tmp_path: Path) -> None:
    with pytest.raises(tinkex.NotFoundError):
        download_checkpoint(world.rest, world.sampler_path.replace("final", "nope"), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


# resume ------------------------------------------------------------------------------------------------------


def test_dropped_connection_resumes_with_range(
    world: World, tmp_path: Path, archive_host: Callable[..., ArchiveHost]
) -> None:
    payload = make_tar({"weights.bin": bytes(range(256)) * 4096})  # ~1 MiB
    host = archive_host(payload, drop_after=[300_000, 200_000])
    redirect_archive_to(world, host.url)
    seen: list[tuple[int, int | None]] = []
    result = download_checkpoint(
        world.rest, world.sampler_path, tmp_path, progress=lambda d, t: seen.append((d, t)), resume_delay_s=0.0
    )
    assert result.resumes == 2 and result.size_bytes == len(payload)
    assert (result.path / "weights.bin").read_bytes() == bytes(range(256)) * 4096
    assert [r.get("range") for r in host.requests] == [None, "bytes=300000-", "bytes=500000-"]
    assert seen[-1] == (len(payload), len(payload))
    for request in host.requests:  # the storage host never sees the API key
        assert "x-api-key" not in request and API_KEY not in json.dumps(request)


def test_server_ignoring_range_restarts_the_download(
    world: World, tmp_path: Path, archive_host: Callable[..., ArchiveHost]
) -> None:
    payload = make_tar({"a.txt": b"a" * 200_000})
    host = archive_host(payload, drop_after=[100_000], honour_range=False)
    redirect_archive_to(world, host.url)
    result = download_checkpoint(world.rest, world.sampler_path, tmp_path, progress=False, resume_delay_s=0.0)
    assert result.resumes == 1 and (result.path / "a.txt").read_bytes() == b"a" * 200_000
    assert host.requests[1].get("range") == "bytes=100000-"


def test_expired_url_is_refreshed_on_resume(
    world: World, tmp_path: Path, archive_host: Callable[..., ArchiveHost]
) -> None:
    payload = make_tar({"a.txt": b"b" * 100_000})
    host = archive_host(payload, drop_after=[40_000], forbid_ranged=1)
    redirect_archive_to(world, host.url)
    world.server.ledger.clear()
    result = download_checkpoint(world.rest, world.sampler_path, tmp_path, progress=False, resume_delay_s=0.0)
    assert (result.path / "a.txt").read_bytes() == b"b" * 100_000
    assert [r.get("range") for r in host.requests] == [None, "bytes=40000-", "bytes=40000-"]
    assert len(world.server.ledger.received("get_checkpoint_archive_url")) == 2


def test_too_many_drops_give_up(world: World, tmp_path: Path, archive_host: Callable[..., ArchiveHost]) -> None:
    host = archive_host(make_tar({"a.txt": b"a" * 50_000}), drop_after=[1000] * 10)
    redirect_archive_to(world, host.url)
    with pytest.raises(DownloadError, match="failed after 2 resumes"):
        download_checkpoint(world.rest, world.sampler_path, tmp_path, progress=False, max_resumes=2, resume_delay_s=0.0)
    assert list(tmp_path.iterdir()) == []


# unsafe archives ---------------------------------------------------------------------------------------------


def _symlink(name: str, target: str) -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        tar.addfile(info)

    return add


def _hardlink(name: str, target: str) -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.LNKTYPE
        info.linkname = target
        tar.addfile(info)

    return add


def _device(name: str) -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.CHRTYPE
        tar.addfile(info)

    return add


UNSAFE = {
    "parent": (make_tar({"../evil.txt": b"x"}), "would land outside"),
    "nested-parent": (make_tar({"ok/../../evil.txt": b"x"}), "would land outside"),
    "absolute": (make_tar({"/tmp/tinkex-evil.txt": b"x"}), "absolute path"),
    "symlink-out": (make_tar({}, _symlink("link", "../../etc")), "would land outside"),
    "symlink-absolute": (make_tar({}, _symlink("link", "/etc/passwd")), "links to the absolute path"),
    "hardlink-out": (make_tar({}, _hardlink("hard", "../outside.txt")), "would land outside"),
    "device": (make_tar({}, _device("tty")), "special file"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_safe_extract_rejects(case: str, tmp_path: Path) -> None:
    data, named = UNSAFE[case]
    archive = tmp_path / "a.tar"
    archive.write_bytes(data)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match=named):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "dest"]


def test_safe_extract_allows_links_inside(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(make_tar({"dir/real.txt": b"ok"}, _symlink("dir/alias.txt", "real.txt")))
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out/dir/alias.txt").read_text() == "ok"


def test_unsafe_archive_download_leaves_nothing(
    world: World, tmp_path: Path, archive_host: Callable[..., ArchiveHost]
) -> None:
    host = archive_host(make_tar({"fine.txt": b"ok", "../escape.txt": b"x"}))
    redirect_archive_to(world, host.url)
    dest = tmp_path / "downloads"
    with pytest.raises(UnsafeArchiveError, match="'../escape.txt'"):
        download_checkpoint(world.rest, world.sampler_path, dest, progress=False)
    assert list(dest.iterdir()) == [] and not (tmp_path / "escape.txt").exists()


def test_corrupt_archive_is_named(world: World, tmp_path: Path, archive_host: Callable[..., ArchiveHost]) -> None:
    host = archive_host(b"this is not a tar file" * 100)
    redirect_archive_to(world, host.url)
    with pytest.raises(DownloadError, match="not a valid tar file"):
        download_checkpoint(world.rest, world.sampler_path, tmp_path, progress=False)
