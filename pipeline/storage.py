"""Image downloads: streamed to disk, checked, written atomically.

An image is streamed with aiohttp into ``<name>.part`` through aiofiles (never held whole
in memory), hashed on the way, checked (scheme, size cap, Content-Length, magic bytes, a
header parse by Pillow for width and height) and only then renamed into place, so a file
with its final name is always complete and valid.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiofiles
import aiofiles.os
import aiohttp
from PIL import Image

from pipeline.errors import DownloadError

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
CHUNK = 256 * 1024
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


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


def sniff_format(head: bytes) -> str | None:
    """The image format the magic bytes announce (png, jpeg, webp), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def image_size(path: Path) -> tuple[int, int]:
    """Width and height from the image header; raises DownloadError if it is not one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.size
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise DownloadError(f"not a readable image: {exc}", url=str(path), retryable=False) from exc


class Downloader:
    """Fetches images into one folder. Safe to share between tasks."""

    def __init__(
        self,
        root: Path,
        *,
        session: aiohttp.ClientSession,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: float = 120.0,
    ) -> None:
        self.root = root
        self.images = root / "images"
        self._session = session
        self._max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=15, sock_read=30)

    async def fetch(self, url: str, stem: str) -> StoredImage:
        """Download ``url`` to ``images/<stem>.<ext>`` and return what was stored.

        Raises ``DownloadError`` (``retryable`` for network faults and truncation).
        """
        if urlsplit(url).scheme not in ("http", "https"):
            raise DownloadError("image URL is not http(s)", url=url, retryable=False)
        await aiofiles.os.makedirs(self.images, exist_ok=True)
        part = self.images / f"{stem}.part"
        try:
            digest, size, fmt = await self._stream(url, part)
            # The extension follows the bytes, not the request: a provider that sent jpeg
            # for a png request still delivered a paid-for image; the ledger says which.
            final = self.images / f"{stem}.{EXTENSIONS[fmt]}"
            width, height = image_size(part)
            os.replace(part, final)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return StoredImage(
            path=final.relative_to(self.root).as_posix(),
            sha256=digest,
            bytes=size,
            width=width,
            height=height,
            format=fmt,
            source_url=url,
        )

    async def _stream(self, url: str, part: Path) -> tuple[str, int, str]:
        sha = hashlib.sha256()
        size = 0
        fmt: str | None = None
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
                async with aiofiles.open(part, "wb") as out:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        if fmt is None:
                            fmt = sniff_format(chunk[:16])
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
                        await out.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DownloadError(f"download failed: {type(exc).__name__}", url=url) from exc
        if declared is not None and size != declared:
            raise DownloadError(f"truncated: got {size} of {declared} bytes", url=url)
        if fmt is None:
            raise DownloadError("empty response", url=url)
        return sha.hexdigest(), size, fmt
