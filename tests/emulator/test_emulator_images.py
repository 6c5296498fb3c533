"""Image sizes and rendering of the emulator."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from pipeline.emulator._images import BASE_SIZES, ImageCache, ImageKey, image_size, render


@pytest.mark.parametrize("ratio", sorted(BASE_SIZES))
def test_sizes_keep_ratio_and_scale(ratio: str) -> None:
    """1k is about a megapixel in multiples of 16; 2k/4k double/quadruple each side."""
    w, h = image_size(ratio, "1k")
    a, b = (int(x) for x in ratio.split(":"))
    assert w * b == h * a
    assert w % 16 == 0
    assert h % 16 == 0
    assert 0.5e6 < w * h < 1.1e6
    assert image_size(ratio, "2k") == (2 * w, 2 * h)
    assert image_size(ratio, "4K") == (4 * w, 4 * h)
    assert image_size(ratio, "1k", 0.5) == (w // 2, h // 2)


def test_tiny_scale_keeps_16_px_minimum() -> None:
    """The shorter side never drops below 16 px, and the ratio survives."""
    assert image_size("16:9", "1k") == (1280, 720)
    assert image_size("1:1", "1k", 0.001) == (16, 16)
    w, h = image_size("21:9", "1k", 0.001)
    assert h == 16
    assert w == round(16 * 1344 / 576)


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_render_formats_and_distinct_content(fmt: str, pil: str) -> None:
    """Every (task, k) renders a valid image of its own; same inputs, same bytes."""
    images = [render(f"task{t}", k, 160, 90, fmt) for t in range(20) for k in (1, 2)]
    assert len({hashlib.sha256(i).digest() for i in images}) == len(images)
    img = Image.open(io.BytesIO(images[0]))
    assert img.format == pil
    assert img.size == (160, 90)
    assert render("task0", 1, 160, 90, fmt) == images[0]


def test_render_refuses_unknown_format() -> None:
    """An unknown format is a ValueError, not a silent PNG."""
    with pytest.raises(ValueError, match="gif"):
        render("t", 1, 16, 16, "gif")


@pytest.mark.anyio
async def test_cache_is_bounded_and_hits() -> None:
    """The cache serves repeats from memory and evicts the oldest past its byte cap."""
    first = render("a", 1, 64, 64, "png")
    cache = ImageCache(max_bytes=len(first) * 2 + 10)
    keys = [ImageKey(name, 1, 64, 64, "png") for name in "abc"]
    assert await cache.get(keys[0]) == first
    await cache.get(keys[0])
    assert (cache.hits, cache.renders) == (1, 1)
    for key in keys[1:]:
        await cache.get(key)
    await cache.get(keys[0])  # evicted by "c": rendered again
    assert cache.renders == 4
