"""Image sizes and rendering of the emulator, small pictures and real-size files."""

from __future__ import annotations

import hashlib
import io
import zlib

import aiohttp
import pytest
from PIL import Image

from pipeline.emulator import EmulatorConfig, serve
from pipeline.emulator._images import BASE_SIZES, ImageCache, ImageKey, draw, image_size, render
from pipeline.emulator._realsize import (
    adler32_combine,
    assemble,
    band_rows,
    build_template,
    target_bytes,
)


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


# --- real-size images -------------------------------------------------------------------


def _idat(png: bytes) -> bytes:
    """The concatenated IDAT data of a PNG file."""
    pos, data = 8, b""
    while pos < len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        if png[pos + 4 : pos + 8] == b"IDAT":
            data += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return data


def test_adler32_combine_matches_zlib() -> None:
    """Combining two parts' Adler-32 gives the checksum of the whole."""
    a, b = b"band rows" * 1000, bytes(range(256)) * 300
    assert adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)
    assert adler32_combine(zlib.adler32(a), 1, 0) == zlib.adler32(a)


@pytest.mark.parametrize(("ratio", "scale"), [("1:1", 0.25), ("16:9", 0.2), ("1:1", 0.01)])
def test_real_size_png_is_a_valid_spliced_stream(ratio: str, scale: float) -> None:
    """The hand-built PNG decodes (its zlib stream and checksum too), has the reported
    size, its own band on top and the shared template below."""
    width, height = image_size(ratio, "1k", scale)
    template = build_template(width, height, "png")
    images = [
        assemble(template, draw(name, 1, width, band_rows(height)), f"{name}/1")
        for name in ("a", "b")
    ]
    assert images[0] != images[1]
    raw = zlib.decompress(_idat(images[0]))  # raises on a bad stream or Adler-32
    assert len(raw) == height * (1 + 3 * width)
    pictures = [Image.open(io.BytesIO(data)) for data in images]
    assert [p.size for p in pictures] == [(width, height)] * 2
    band = band_rows(height)
    assert (
        pictures[0].crop((0, 0, width, band)).tobytes()
        != pictures[1].crop((0, 0, width, band)).tobytes()
    )
    below = (0, band, width, height)
    assert pictures[0].crop(below).tobytes() == pictures[1].crop(below).tobytes()


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_real_size_weights(fmt: str) -> None:
    """1K images weigh about their target (2 MiB for a PNG), and do not compress."""
    width, height = image_size("1:1", "1k")
    data = assemble(
        build_template(width, height, fmt), draw("t", 1, width, band_rows(height)), "t/1"
    )
    target = target_bytes(width, height, fmt)
    assert 0.8 * target < len(data) < 1.2 * target
    if fmt == "png":
        assert 1.8 * 2**20 < len(data) < 2.2 * 2**20
    assert len(zlib.compress(data, 6)) > 0.9 * len(data)
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.size == (width, height)
    assert img.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]


def test_real_size_4k_png_is_about_16_mib() -> None:
    """A 4K square PNG weighs about 16 MiB and is still a valid 4096x4096 image."""
    width, height = image_size("1:1", "4k")
    data = assemble(
        build_template(width, height, "png"), draw("t", 1, width, band_rows(height)), "t/1"
    )
    assert 15 * 2**20 < len(data) < 17 * 2**20
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.size == (4096, 4096)


def test_jpeg_and_webp_differ_by_their_tag() -> None:
    """JPEG/WebP images of one size share pixels but not bytes (a tag names each)."""
    for fmt in ("jpeg", "webp"):
        template = build_template(96, 64, fmt)
        one, two = assemble(template, None, "a/1"), assemble(template, None, "b/1")
        assert one != two
        pictures = [Image.open(io.BytesIO(d)) for d in (one, two)]
        assert pictures[0].tobytes() == pictures[1].tobytes()
        assert pictures[0].size == (96, 64)


def test_unknown_format_is_refused() -> None:
    """A template for an unknown format is a ValueError."""
    with pytest.raises(ValueError, match="gif"):
        build_template(16, 16, "gif")


@pytest.mark.anyio
async def test_templates_are_built_once_per_size() -> None:
    """The cache builds one template per size and format, however many images use it."""
    cache = ImageCache(max_bytes=64 * 2**20, real_size=True)
    keys = [ImageKey(f"t{i}", k, 320, 180, "png") for i in range(3) for k in (1, 2)]
    images = [await cache.get(key) for key in keys]
    assert len(set(images)) == len(keys)
    await cache.get(ImageKey("t0", 1, 320, 180, "jpeg"))
    assert cache.templates is not None
    assert cache.templates.builds == 2
    assert await cache.get(keys[0]) == images[0]
    assert cache.hits == 1


@pytest.mark.anyio
async def test_emulator_serves_real_size_images() -> None:
    """With ``real_size_images`` a completed task's image is the heavy, valid file."""
    config = EmulatorConfig(latency_s=0.0, image_scale=0.5, real_size_images=True)
    body = {"prompt": "p", "aspect_ratio": "16:9", "resolution": "2k"}
    async with (
        serve(config) as server,
        aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as session,
    ):
        url = server.base_url + "/api/v3/kwaivgi/kling-image-o3/text-to-image"
        async with session.post(url, json=body) as resp:
            poll = (await resp.json())["data"]["urls"]["get"]
        async with session.get(poll) as resp:
            image_url = (await resp.json())["data"]["outputs"][0]
        async with session.get(image_url) as resp:
            data = await resp.read()
            assert int(resp.headers["Content-Length"]) == len(data)
    width, height = image_size("16:9", "2k", 0.5)
    assert Image.open(io.BytesIO(data)).size == (width, height)
    assert len(data) > 0.8 * target_bytes(width, height, "png")
