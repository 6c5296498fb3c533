"""Cheap, decode-free checks of image bytes and of the names they are stored under."""

from __future__ import annotations

import struct
import warnings
from functools import cache
from types import ModuleType
from typing import BinaryIO

from pipeline.errors import DownloadError

MAX_STEM = 200
_PILLOW_FORMATS = {"png": ("PNG",), "jpeg": ("JPEG",), "webp": ("WEBP",)}
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def sniff_format(head: bytes) -> str | None:
    """The image format the magic bytes announce (png, jpeg, webp), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def check_stem(stem: str) -> None:
    """Refuse a file name stem that could leave ``images/`` or hide there.

    Raises ``DownloadError`` (not retryable) for an empty or overlong stem, one with
    ``/``, ``\\``, NUL or ``..``, or a leading dot.
    """
    if (
        not stem
        or len(stem) > MAX_STEM
        or any(c in stem for c in "/\\\0")
        or ".." in stem
        or stem.startswith(".")
    ):
        raise DownloadError(f"unsafe image file name {stem[:80]!r}", url="", retryable=False)


def looks_complete(fmt: str, tail: bytes, size: int, head: bytes) -> bool:
    """Whether an image of ``fmt`` ends where its format says it ends (a cheap truncation
    check that needs no Content-Length and no decoding): PNG's IEND chunk, JPEG's EOI
    marker, WebP's RIFF length."""
    if fmt == "png":
        return tail.endswith(_PNG_END)
    if fmt == "jpeg":
        return b"\xff\xd9" in tail
    if fmt == "webp" and len(head) >= 8:
        riff = int(struct.unpack("<I", head[4:8])[0])
        return riff + 8 + (riff & 1) == size or riff + 8 == size
    return False


@cache
def _pillow() -> ModuleType:
    """Pillow's ``Image``, imported with the first image (a resume with nothing to fetch
    never loads it) and its format plugins loaded once."""
    from PIL import Image

    Image.preinit()
    return Image


def image_size(source: BinaryIO, fmt: str | None = None) -> tuple[int, int]:
    """Width and height from the header of the image in ``source`` (read as ``fmt`` when
    it is known: png, jpeg or webp); raises DownloadError if it is not one (or if it is a
    decompression bomb)."""
    Image = _pillow()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=_PILLOW_FORMATS.get(fmt or "")) as img:
                width, height = img.size
                return int(width), int(height)
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise DownloadError(f"not a readable image: {exc}", url="", retryable=False) from exc
