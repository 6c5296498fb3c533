"""The local output folder: images streamed, checked, written atomically, never outside it.

An image is streamed (``pipeline.outputs._fetch``) into a temporary ``.part`` file and
checked; only then is it renamed into place, so a file with its final name is always
complete and valid.

Files: the body is held in memory up to ``spill_bytes`` (2.25 MiB); an image that fits is
created, written, checked and renamed in one blocking call, batched with the same calls
of concurrent downloads (``pipeline._batching``): a share of one thread hop and one file
creation. A larger body goes to disk through aiofiles as it arrives, in writes of
``spill_bytes`` or more, and only its header read and rename are batched
(``pipeline.outputs._partfile`` says why the two paths, and what each costs).

Paths: every file is created and renamed relative to a file descriptor of ``images/``,
opened with ``O_NOFOLLOW | O_DIRECTORY``. So nothing is written outside the output folder
even when someone planted symlinks there:

- ``images/`` itself a symlink (or not a directory): refused with a non-retryable
  ``DownloadError`` (the job fails with code ``download``; nothing is written);
- a temporary file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a random name,
  so a planted ``.part`` file or symlink is never opened, let alone followed;
- the final rename replaces a planted symlink at the final name (``rename`` acts on the
  link itself, never on its target).

Temporary files of a process that was killed mid-download are swept (unlinked, never
followed) once per folder object: by ``sweep()`` at the start of a run, or else before
its first download starts. File names come from job ids, which the manifest already
restricts to safe characters; ``fetch`` checks again (``check_stem``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from pipeline import _threads
from pipeline._batching import Batcher
from pipeline.errors import DownloadError
from pipeline.outputs._base import Sizes, StoredImage
from pipeline.outputs._imagecheck import _pillow, check_stem
from pipeline.outputs._partfile import DIR_FLAGS, PartFile, discard_entry, sweep_parts

if TYPE_CHECKING:
    import aiohttp

    from pipeline.outputs._fetch import Fetcher

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# Held whole up to this (one batched write: a 1K image of 1-2 MiB takes no thread hop of
# its own); past it, streamed to disk in writes of this size or more.
SPILL_BYTES = 2304 * 1024
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


class LocalFolder:
    """Images under ``root/images/``, ledger.json in ``root``. Safe to share between tasks.

    Downloads go through ``session`` (created, and closed by ``aclose``, when not given).
    """

    def __init__(
        self,
        root: Path,
        *,
        session: aiohttp.ClientSession | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: float = 120.0,
        spill_bytes: int = SPILL_BYTES,
    ) -> None:
        self.root = root
        self.images = root / "images"
        self._session = session
        self._owns_session = session is None
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._fetcher: Fetcher | None = None
        self._spill = spill_bytes
        self._swept = False
        self._sweep_lock = anyio.Lock()
        # Images are created (when small), checked and renamed a batch per thread hop.
        self._files = Batcher()

    def __repr__(self) -> str:
        return f"LocalFolder({str(self.root)!r})"

    @property
    def location(self) -> str:
        return str(self.root)

    def _http(self) -> Fetcher:
        # The network stack loads with the first download: a resume with nothing to
        # fetch never imports it.
        if self._fetcher is None:
            import aiohttp

            from pipeline.outputs._fetch import Fetcher

            _pillow()  # its plugins load here, once, not in the first download threads
            if self._session is None:
                self._session = aiohttp.ClientSession(auto_decompress=False, trust_env=False)
            self._fetcher = Fetcher(
                self._session, max_bytes=self._max_bytes, timeout_s=self._timeout_s
            )
        return self._fetcher

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
            self._fetcher = None

    # -- images ------------------------------------------------------------------------

    async def fetch(self, url: str, stem: str) -> StoredImage:
        """See ``Output.fetch``. Final errors also: a bad stem, an ``images/`` that is not
        a real directory, or a file system error."""
        check_stem(stem)
        fetcher = self._http()
        if not self._swept:
            await self.sweep()
        temp = PartFile(
            f"{stem}.{secrets.token_hex(8)}.part",
            partial(self.open_images, url),
            self._files.call,
            self._spill,
        )
        try:
            got = await fetcher.stream(url, temp)
            # The extension follows the bytes, not the request: a provider that sent jpeg
            # for a png request still delivered a paid-for image; the ledger says which.
            final = f"{stem}.{EXTENSIONS[got.format]}"
            width, height = await temp.finish(final, got.format)
        except OSError as exc:
            # The file system refused (disk full, a directory in the way...): final.
            raise DownloadError(
                f"cannot write the image: {exc.strerror or exc}", url=url, retryable=False
            ) from exc
        finally:
            await temp.abandon()
        return StoredImage(
            path=f"{self.images.name}/{final}",
            sha256=got.sha256,
            bytes=got.size,
            width=width,
            height=height,
            format=got.format,
            source_url=url,
        )

    async def discard(self, image: StoredImage) -> None:
        name = image.path.rpartition("/")[2]

        def _remove() -> None:
            try:
                dir_fd = os.open(self.images, DIR_FLAGS)
            except OSError:
                return
            try:
                discard_entry(dir_fd, name)
            finally:
                os.close(dir_fd)

        await _threads.run_sync(_remove)

    async def sweep(self) -> None:
        """Remove temp files a killed run left in ``images/`` (if it is a real directory;
        nothing happens otherwise). Never raises."""
        # No download may create its temp file before the sweep is over.
        async with self._sweep_lock:
            if not self._swept:
                with contextlib.suppress(DownloadError):
                    await _threads.run_sync(self._sweep_now)
                self._swept = True

    def _sweep_now(self) -> None:
        dir_fd = self.open_images("")
        try:
            sweep_parts(dir_fd)
        finally:
            os.close(dir_fd)

    def open_images(self, url: str) -> int:
        """A descriptor of ``images/`` (created if missing); refuses a symlink or a
        non-directory there, which could point outside the output folder. Blocking."""
        try:
            try:
                return os.open(self.images, DIR_FLAGS)
            except FileNotFoundError:
                os.makedirs(self.root, exist_ok=True)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(self.images)
                return os.open(self.images, DIR_FLAGS)
        except OSError as exc:
            raise DownloadError(
                f"{self.images} is not a directory inside the output folder "
                f"(a symlink?): {exc.strerror or exc}; refusing to write there",
                url=url,
                retryable=False,
            ) from exc

    # -- resume and edits --------------------------------------------------------------

    async def missing(self, jobs: Sequence[tuple[str, Sizes]]) -> set[str]:
        return await _threads.run_sync(files_missing, str(self.root), jobs)

    async def move(self, path: str, new_path: str) -> bool:
        src, dst = self.root / path, self.root / new_path

        def _move() -> bool:
            if not src.is_file() or dst.exists():
                return False
            src.rename(dst)
            return True

        return await _threads.run_sync(_move)

    # -- ledger.json -------------------------------------------------------------------

    def write_atomic(self, name: str, pieces: Iterable[str]) -> None:
        write_text_atomic(self.root / name, pieces)

    def read_bytes(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def identity(self, name: str) -> str | None:
        try:
            info = os.stat(self.root / name)
        except OSError:
            return None
        return f"{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"


def write_text_atomic(path: Path, pieces: Iterable[str]) -> None:
    """Write the text ``pieces`` to ``path`` (temporary file, fsync, rename) so readers see
    the old or the new file, never half of it. A planted symlink at ``path`` is replaced,
    never followed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for piece in pieces:
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def files_missing(root: str, jobs: Sequence[tuple[str, Sizes]]) -> set[str]:
    """Ids of the jobs, (id, its images' recorded paths and sizes) each, whose image files
    are not all present: each must be a regular file (not a link) of the recorded size,
    at its path relative to ``root``; a job without images counts as missing them.
    Blocking."""
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return {job_id for job_id, _ in jobs}
    try:
        return {job_id for job_id, images in jobs if not images or not _present(root_fd, images)}
    finally:
        os.close(root_fd)


def _present(root_fd: int, images: Sizes) -> bool:
    for path, size in images:
        try:
            # A path relative to root_fd, as os.lstat(os.path.join(root, path)) would
            # see it, without building the joined string.
            info = os.stat(path, dir_fd=root_fd, follow_symlinks=False)
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return False
    return True
