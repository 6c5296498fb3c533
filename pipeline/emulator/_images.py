"""Generated images: pixel sizes per resolution and ratio, cheap rendering, an LRU cache.

Every (task, k) image differs: its colours and a 16x16 bit grid come from
``sha256(task id, k)``, so no two images of a run share a hash. Rendering is lazy (at
the first download) and cached by bytes; large images render in a worker thread so the
event loop keeps serving. In real-size mode the picture is only a band at the top of a
shared noise template (:mod:`pipeline.emulator._realsize`).
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image, ImageDraw

from pipeline import _threads
from pipeline.emulator._realsize import Template, Templates, assemble, band_rows

# About one megapixel per ratio, both sides multiples of 16 (the "1k" size).
BASE_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1280, 720),
    "9:16": (720, 1280),
    "4:3": (1152, 864),
    "3:4": (864, 1152),
    "3:2": (1248, 832),
    "2:3": (832, 1248),
    "21:9": (1344, 576),
}
RESOLUTION_FACTORS = {"1k": 1, "2k": 2, "4k": 4}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
MIN_SIDE = 16
_GRID = 16  # 16x16 cells = 256 bits of the digest
_THREAD_PIXELS = 250_000  # above this, encoding takes milliseconds: off the loop


def image_size(aspect_ratio: str, resolution: str, scale: float = 1.0) -> tuple[int, int]:
    """Pixel (width, height) for a ratio and a canonical resolution, times ``scale``.

    The shorter side never goes below 16 px (the ratio is kept). ``auto`` means 1:1.
    Raises ``KeyError`` for an unknown ratio or resolution.
    """
    w, h = BASE_SIZES["1:1" if aspect_ratio == "auto" else aspect_ratio]
    factor = RESOLUTION_FACTORS[resolution.lower()] * scale
    factor = max(factor, MIN_SIDE / min(w, h))
    return max(MIN_SIDE, round(w * factor)), max(MIN_SIDE, round(h * factor))


def draw(task_id: str, k: int, width: int, height: int) -> Image.Image:
    """The picture of image ``k`` of a task: colours and a bit grid from its digest."""
    digest = hashlib.sha256(f"{task_id}/{k}".encode()).digest()
    background = (digest[0], digest[1], digest[2])
    accent = (255 - digest[0], 255 - digest[1], 255 - digest[2])
    img = Image.new("RGB", (width, height), background)
    pen = ImageDraw.Draw(img)
    # A band whose slope depends on the image, so the pictures also look different.
    offset = digest[3] * width // 255
    pen.polygon(
        [(offset, 0), (min(width, offset + width // 4), 0), (width // 2, height), (0, height)],
        fill=accent,
    )
    # The digest's 256 bits as a grid, scaled to the smaller side.
    cell = max(1, min(width, height) // (2 * _GRID))
    for i in range(_GRID * _GRID):
        if digest[i // 8 % len(digest)] >> (i % 8) & 1:
            x, y = (i % _GRID) * cell, (i // _GRID) * cell
            pen.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(255, 255, 255))
    return img


def render(task_id: str, k: int, width: int, height: int, fmt: str) -> bytes:
    """Encode one distinct image of ``width`` x ``height`` as ``fmt`` (png/jpeg/webp)."""
    img = draw(task_id, k, width, height)
    out = io.BytesIO()
    if fmt == "png":
        img.save(out, format="PNG", compress_level=1)
    elif fmt == "jpeg":
        img.save(out, format="JPEG", quality=85)
    elif fmt == "webp":
        img.save(out, format="WEBP", quality=80, method=0)
    else:
        raise ValueError(f"unsupported image format {fmt!r}")
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class ImageKey:
    """Identifies one rendered image."""

    task_id: str
    k: int
    width: int
    height: int
    fmt: str


def _assemble(template: Template, key: ImageKey) -> bytes:
    band = None
    if key.fmt == "png":
        band = draw(key.task_id, key.k, key.width, band_rows(key.height))
    return assemble(template, band, f"{key.task_id}/{key.k}")


class ImageCache:
    """Renders images on demand and keeps the most recent ones, bounded by total bytes.

    ``real_size``: images are a band of their own over a shared noise template (see
    :mod:`pipeline.emulator._realsize`); the templates have a cache of their own, also
    bounded by ``max_bytes``.
    """

    __slots__ = ("_bytes", "_entries", "hits", "max_bytes", "renders", "templates")

    def __init__(self, max_bytes: int, *, real_size: bool = False) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[ImageKey, bytes] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.renders = 0
        self.templates = Templates(max_bytes) if real_size else None

    def __repr__(self) -> str:
        return (
            f"ImageCache(entries={len(self._entries)}, bytes={self._bytes}, "
            f"hits={self.hits}, renders={self.renders})"
        )

    async def get(self, key: ImageKey) -> bytes:
        """The encoded image for ``key``, rendering it if not cached."""
        data = self._entries.get(key)
        if data is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return data
        if self.templates is not None:
            template = await self.templates.get(key.width, key.height, key.fmt)
            data = await _threads.run_sync(_assemble, template, key)
        else:
            args = (key.task_id, key.k, key.width, key.height, key.fmt)
            if key.width * key.height > _THREAD_PIXELS:
                data = await _threads.run_sync(render, *args)
            else:
                data = render(*args)
        self.renders += 1
        self._put(key, data)
        return data

    def _put(self, key: ImageKey, data: bytes) -> None:
        if len(data) > self.max_bytes or key in self._entries:
            return
        self._entries[key] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= len(old)
