"""Checkpoint download: signed archive URL -> streamed temp file (constant memory, resumable) -> safe extraction.

The archive URL points at another host in production (a signed storage URL), so the download goes through a
plain ``httpx.AsyncClient`` that carries none of the API's headers: the API key never leaves for that host.
A dropped connection resumes with an HTTP ``Range`` request; a server that ignores ``Range`` gets a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

import anyio
import httpx

from .rest_client import RestClient, parse_tinker_path

__all__ = [
    "DownloadError",
    "DownloadResult",
    "ProgressCallback",
    "UnsafeArchiveError",
    "download_checkpoint",
    "download_checkpoint_async",
    "safe_extract",
]

logger = logging.getLogger("tinkex.checkpoints")

ProgressCallback = Callable[[int, "int | None"], None]
"""Called with (bytes downloaded so far, total bytes or None when the server does not say)."""

_GZIP_MAGIC = b"\x1f\x8b"
_URL_GONE = frozenset({401, 403, 404, 410})
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class DownloadError(RuntimeError):
    """The archive could not be downloaded; the message names the URL's host, the status or the cause."""


class UnsafeArchiveError(DownloadError):
    """The archive holds a member that would land outside the destination (or is not a plain file/dir/link)."""


@dataclass(frozen=True)
class DownloadResult:
    tinker_path: str
    path: Path
    """The extracted directory, or the archive file when ``extract=False``."""
    size_bytes: int
    resumes: int
    """How many times a dropped download was resumed or restarted."""


class _Progress(Protocol):
    def update(self, downloaded: int, total: int | None) -> None: ...
    def close(self) -> None: ...


async def download_checkpoint_async(
    rest_client: RestClient,
    tinker_path: str,
    dest_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: bool | ProgressCallback = True,
    extract: bool = True,
    max_resumes: int = 5,
    resume_delay_s: float = 1.0,
    http_client: httpx.AsyncClient | None = None,
) -> DownloadResult:
    """Download the archive of ``tinker_path`` into ``dest_dir``.

    The result is ``dest_dir/<run>-<kind>-<name>`` (a directory, or ``….tar``/``….tar.gz`` with
    ``extract=False``). An existing destination is only replaced with ``force``, and only once the new download
    is complete. ``progress``: True shows a tqdm bar on stderr, a callable receives ``(downloaded, total)``.
    """
    parsed = parse_tinker_path(tinker_path)
    dest = Path(dest_dir)
    base_name = _UNSAFE_NAME_CHARS.sub("_", f"{parsed.training_run_id}-{parsed.checkpoint_id.replace('/', '-')}")
    candidates = [dest / base_name] if extract else [dest / f"{base_name}.tar", dest / f"{base_name}.tar.gz"]
    existing = await anyio.to_thread.run_sync(_existing, candidates)
    if existing and not force:
        raise FileExistsError(f"{existing[0]} already exists; pass force=True (CLI: --force) to replace it")

    archive = await rest_client.get_checkpoint_archive_url_from_tinker_path_async(parsed.tinker_path)
    temp_path = await anyio.to_thread.run_sync(_temp_file, dest, base_name)
    reporter = _make_progress(progress, parsed.tinker_path)
    owns_client = http_client is None
    client = http_client or httpx.AsyncClient(follow_redirects=True, timeout=httpx.Timeout(60.0, connect=10.0))
    try:
        async def refresh_url() -> str:
            return (await rest_client.get_checkpoint_archive_url_from_tinker_path_async(parsed.tinker_path)).url

        size, resumes = await _stream_to_file(
            client, archive.url, refresh_url, temp_path, reporter, max_resumes, resume_delay_s
        )
        if extract:
            target = dest / base_name
            await anyio.to_thread.run_sync(_extract_into_place, temp_path, target, existing)
        else:
            suffix = ".tar.gz" if await anyio.to_thread.run_sync(_is_gzip, temp_path) else ".tar"
            target = dest / f"{base_name}{suffix}"
            await anyio.to_thread.run_sync(_replace, existing, temp_path, target)
        return DownloadResult(tinker_path=parsed.tinker_path, path=target, size_bytes=size, resumes=resumes)
    finally:
        reporter.close()
        if owns_client:
            await client.aclose()
        await anyio.to_thread.run_sync(lambda: temp_path.unlink(missing_ok=True))


def download_checkpoint(
    rest_client: RestClient,
    tinker_path: str,
    dest_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: bool | ProgressCallback = True,
    extract: bool = True,
    max_resumes: int = 5,
    resume_delay_s: float = 1.0,
) -> DownloadResult:
    """Blocking :func:`download_checkpoint_async` (runs on tinkex's background loop; the progress callback is
    called from that loop's thread). Interrupting the caller cancels the download and removes the temp file."""
    future = rest_client.holder.runtime.submit(
        download_checkpoint_async(
            rest_client,
            tinker_path,
            dest_dir,
            force=force,
            progress=progress,
            extract=extract,
            max_resumes=max_resumes,
            resume_delay_s=resume_delay_s,
        )
    )
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


async def _stream_to_file(
    client: httpx.AsyncClient,
    url: str,
    refresh_url: Callable[[], Awaitable[str]],
    temp_path: Path,
    progress: _Progress,
    max_resumes: int,
    resume_delay_s: float,
) -> tuple[int, int]:
    """Download ``url`` into ``temp_path``; returns (bytes, resumes). Resumes after transport failures and
    truncated bodies; fetches a new signed URL once if a resume finds the old one rejected (expired)."""
    downloaded = 0
    total: int | None = None
    resumes = 0
    refreshed = False
    async with await anyio.open_file(temp_path, "wb") as out:
        while True:
            try:
                headers = {"Accept-Encoding": "identity"}
                if downloaded:
                    headers["Range"] = f"bytes={downloaded}-"
                async with client.stream("GET", url, headers=headers) as response:
                    status = response.status_code
                    if downloaded and status in _URL_GONE and not refreshed:
                        url, refreshed = await refresh_url(), True
                        continue
                    start, range_total = _content_range(response)
                    if status == 206 and downloaded and start == downloaded:
                        total = range_total
                    elif status == 200:
                        if downloaded:
                            logger.info("the server ignored the Range request; restarting the download")
                            await out.seek(0)
                            await out.truncate()
                            downloaded = 0
                        length = response.headers.get("content-length")
                        total = int(length) if length and length.isdigit() else None
                    else:
                        await response.aread()
                        raise DownloadError(
                            f"downloading the checkpoint archive from {httpx.URL(url).host} failed: "
                            f"HTTP {status} {response.text[:300]!r}"
                        )
                    progress.update(downloaded, total)
                    # No chunk_size: httpx would buffer up to it, and bytes buffered when the connection drops are lost.
                    async for chunk in response.aiter_raw():
                        await out.write(chunk)
                        downloaded += len(chunk)
                        progress.update(downloaded, total)
                if total is not None and downloaded < total:
                    raise httpx.RemoteProtocolError(f"body ended after {downloaded} of {total} bytes")
                await out.flush()
                return downloaded, resumes
            except httpx.TransportError as exc:
                resumes += 1
                if resumes > max_resumes:
                    raise DownloadError(
                        f"downloading the checkpoint archive from {httpx.URL(url).host} failed after "
                        f"{max_resumes} resumes at byte {downloaded}: {type(exc).__name__}: {exc}"
                    ) from exc
                logger.warning(
                    "checkpoint download interrupted at byte %d (%s); resuming (%d of %d)",
                    downloaded,
                    type(exc).__name__,
                    resumes,
                    max_resumes,
                )
                await out.flush()
                await asyncio.sleep(resume_delay_s)


def _content_range(response: httpx.Response) -> tuple[int | None, int | None]:
    """(first byte, total size) of ``Content-Range: bytes a-b/total``; None where absent (``*`` total included)."""
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("content-range", ""))
    if match is None:
        return None, None
    return int(match.group(1)), int(match.group(2)) if match.group(2).isdigit() else None


# extraction --------------------------------------------------------------------------------------------------


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Extract a (possibly compressed) tar into ``dest``; refuse absolute paths, ``..``, links that escape
    ``dest`` and special files, naming the member. The stdlib ``data`` filter is applied as well."""
    dest_path = Path(dest)
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member, dest_path)
        tar.extractall(dest_path, members=members, filter="data")


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    name = member.name
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchiveError(f"archive member {name!r} is a device, fifo or other special file")
    _require_inside(name, name, dest)
    if member.issym():
        # A symlink target is relative to the link's own directory.
        link = member.linkname
        if link.startswith("/") or PurePosixPath(link).is_absolute():
            raise UnsafeArchiveError(f"archive member {name!r} links to the absolute path {link!r}")
        _require_inside(name, str(PurePosixPath(name).parent / link), dest)
    elif member.islnk():
        _require_inside(name, member.linkname, dest)


def _require_inside(member: str, relative: str, dest: Path) -> None:
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", relative):
        raise UnsafeArchiveError(f"archive member {member!r} has the absolute path {relative!r}")
    root = os.path.normpath(dest.resolve())
    resolved = os.path.normpath(os.path.join(root, *pure.parts))
    if os.path.commonpath([root, resolved]) != root:
        raise UnsafeArchiveError(f"archive member {member!r} would land outside the destination ({relative!r})")


def _existing(paths: list[Path]) -> list[Path]:
    return [path for path in paths if path.exists() or path.is_symlink()]


def _temp_file(dest: Path, base_name: str) -> Path:
    """A temp file next to the destination, so the final rename stays on one filesystem."""
    dest.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest, prefix=f".{base_name}.", suffix=".part")
    os.close(fd)
    return Path(name)


def _extract_into_place(archive: Path, target: Path, existing: list[Path]) -> None:
    """Extract next to ``target`` first, so a failed extraction leaves any previous download untouched."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".extract"))
    try:
        try:
            safe_extract(archive, staging)
        except tarfile.TarError as exc:
            raise DownloadError(f"the downloaded checkpoint archive is not a valid tar file: {exc}") from exc
        _remove(existing)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _replace(existing: list[Path], source: Path, target: Path) -> None:
    _remove(existing)
    source.rename(target)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == _GZIP_MAGIC


# progress ------------------------------------------------------------------------------------------------------


class _NoProgress:
    def update(self, downloaded: int, total: int | None) -> None:
        pass

    def close(self) -> None:
        pass


class _CallbackProgress(_NoProgress):
    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback

    def update(self, downloaded: int, total: int | None) -> None:
        self._callback(downloaded, total)


class _TqdmProgress:
    def __init__(self, label: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=False)

    def update(self, downloaded: int, total: int | None) -> None:
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.update(downloaded - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def _make_progress(progress: bool | ProgressCallback, label: str) -> _Progress:
    if progress is True:
        return _TqdmProgress(label)
    if callable(progress):
        return _CallbackProgress(progress)
    return _NoProgress()
