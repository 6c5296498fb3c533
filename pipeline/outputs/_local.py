"""Image downloads: streamed to disk, checked, written atomically, never outside the folder.

An image is streamed with aiohttp, hashed on the way and checked (scheme, size cap,
Content-Length, magic bytes, the format's end marker, a header parse by Pillow for width
and height); only then is it renamed into place, so a file with its final name is always
complete and valid.

Thread hops: the body is held in memory up to ``spill_bytes`` (512 KiB) and written out in
one worker-thread call each time that much has arrived, so an image is never held whole.
The last call writes what is left, reads the header (from memory when nothing was
spilled) and renames; these calls of concurrent downloads share hops, a batch at a time
(``pipeline._batching``). So an image under 512 KiB costs a share of one hop
and one file creation, with no contention between threads over ``images/``.

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
followed) once per ``Downloader``: by ``sweep()`` at the start of a run, or else before
its first download starts.

File names come from job ids, which the manifest already restricts to safe characters;
``fetch`` checks again (no ``/``, ``\\``, NUL, ``..``, leading dot, at most ``MAX_STEM``
characters) and refuses anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import anyio
import anyio.to_thread

from pipeline._batching import Batcher
from pipeline.errors import DownloadError
from pipeline.outputs._imagecheck import (
    MAX_STEM,
    check_stem,
    image_size,
    looks_complete,
    sniff_format,
)
from pipeline.outputs._partfile import DIR_FLAGS, PartFile, discard_entry, sweep_parts

__all__ = [
    "MAX_STEM",
    "Downloader",
    "StoredImage",
    "check_stem",
    "image_size",
    "looks_complete",
    "sniff_format",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
SPILL_BYTES = 512 * 1024
CHUNK = 256 * 1024
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
_TAIL = 32


@dataclass(frozen=True, slots=True)
class StoredImage:
    """A verified image on disk. ``path`` is relative to the output folder."""

    path: str
    sha256: str
    bytes: int
    width: int
    height: int
    format: str
    source_url: str

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "source_url": self.source_url,
        }


class Downloader:
    """Fetches images into one folder. Safe to share between tasks."""

    def __init__(
        self,
        root: Path,
        *,
        session: aiohttp.ClientSession,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: float = 120.0,
        spill_bytes: int = SPILL_BYTES,
    ) -> None:
        self.root = root
        self.images = root / "images"
        self._session = session
        self._max_bytes = max_bytes
        self._spill = spill_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=15, sock_read=30)
        self._swept = False
        self._sweep_lock = anyio.Lock()
        # Finished images are written, checked and renamed a batch per thread hop.
        self._files = Batcher()

    async def fetch(self, url: str, stem: str) -> StoredImage:
        """Download ``url`` to ``images/<stem>.<ext>`` and return what was stored.

        Raises ``DownloadError``: ``retryable`` for network faults, HTTP 408/429/5xx and
        truncation; final for a bad URL or stem, a non-image, an oversized image, an
        ``images/`` that is not a real directory, or a file system error.
        """
        check_stem(stem)
        if urlsplit(url).scheme not in ("http", "https"):
            raise DownloadError("image URL is not http(s)", url=url, retryable=False)
        if not self._swept:
            await self.sweep()
        temp = PartFile(f"{stem}.{secrets.token_hex(8)}.part", lambda: self.open_images(url))
        try:
            digest, size, fmt = await self._stream(url, temp)
            # The extension follows the bytes, not the request: a provider that sent jpeg
            # for a png request still delivered a paid-for image; the ledger says which.
            final = f"{stem}.{EXTENSIONS[fmt]}"
            width, height = await self._files.call(partial(temp.finish, final, fmt))
        except OSError as exc:
            # The file system refused (disk full, a directory in the way...): final.
            raise DownloadError(
                f"cannot write the image: {exc.strerror or exc}", url=url, retryable=False
            ) from exc
        finally:
            temp.abandon()
        return StoredImage(
            path=f"{self.images.name}/{final}",
            sha256=digest,
            bytes=size,
            width=width,
            height=height,
            format=fmt,
            source_url=url,
        )

    async def discard(self, image: StoredImage) -> None:
        """Remove a stored image again (its job failed after all). Never raises."""
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

        await anyio.to_thread.run_sync(_remove)

    async def sweep(self) -> None:
        """Remove temp files a killed run left in ``images/`` (if it is a real directory;
        nothing happens otherwise). Never raises."""
        # No download may create its temp file before the sweep is over.
        async with self._sweep_lock:
            if not self._swept:
                with contextlib.suppress(DownloadError):
                    await anyio.to_thread.run_sync(self._sweep_now)
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

    async def _stream(self, url: str, temp: PartFile) -> tuple[str, int, str]:
        sha = hashlib.sha256()
        size = 0
        fmt: str | None = None
        head = b""
        tail = b""
        try:
            async with self._session.get(url, timeout=self._timeout) as resp:
                if resp.status != 200:
                    raise DownloadError(
                        f"HTTP {resp.status} for image",
                        url=url,
                        retryable=resp.status in (408, 429) or resp.status >= 500,
                    )
                declared = resp.content_length
                if declared is not None and declared > self._max_bytes:
                    raise DownloadError(
                        f"image is {declared} bytes, over the {self._max_bytes} cap",
                        url=url,
                        retryable=False,
                    )
                async for chunk in resp.content.iter_chunked(CHUNK):
                    if len(head) < 16:
                        head += chunk[: 16 - len(head)]
                    if fmt is None and len(head) >= 12:
                        fmt = sniff_format(head)
                        if fmt is None:
                            raise DownloadError(
                                "response is not a png, jpeg or webp image",
                                url=url,
                                retryable=False,
                            )
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise DownloadError(
                            f"image exceeds the {self._max_bytes} byte cap",
                            url=url,
                            retryable=False,
                        )
                    sha.update(chunk)
                    tail = (tail + chunk)[-_TAIL:]
                    if temp.hold(chunk) >= self._spill:
                        await anyio.to_thread.run_sync(temp.spill)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DownloadError(f"download failed: {type(exc).__name__}", url=url) from exc
        if declared is not None and size != declared:
            raise DownloadError(f"truncated: got {size} of {declared} bytes", url=url)
        if fmt is None:
            if head and sniff_format(head) is None:
                raise DownloadError(
                    "response is not a png, jpeg or webp image", url=url, retryable=False
                )
            raise DownloadError("empty or truncated response", url=url)
        if not looks_complete(fmt, tail, size, head):
            raise DownloadError(f"truncated: the {fmt} data ends early", url=url)
        return sha.hexdigest(), size, fmt
