"""Real-size images (``EmulatorConfig.real_size_images``): the weight of a generator's files.

A generator's PNG weighs about 2 bytes a pixel at 1K and 1 at 4K; the emulator aims at
``2 * (pixels / 2**20) ** -0.25`` bytes a pixel for PNG (2 MiB for 1024x1024, 16 MiB for
4096x4096), 0.3 of that for JPEG and 0.2 for WebP, and gets there with seeded noise,
which no transport compression shrinks. Every file is valid, of the size the API reports.

Design note. Megabytes of noise must not be made per request. An image is two parts:
a *band* of rows at the top (``band_rows``) drawn from ``sha256(task id, k)`` like the
small pictures, and below it a *template* shared by every image of that size and format
(noise rows, then flat grey), built once in a worker thread and cached (:class:`Templates`).

- PNG is written by hand so the template is compressed once: its rows are a raw deflate
  stream of their own; an image's IDAT data is the zlib header, the band's deflate ended
  with a full flush (byte aligned, no back-references past it), the template's stream,
  and the Adler-32 of all rows, combined arithmetically from the two parts' checksums.
  (Rows use filter 0, so a row never depends on the one above.) Three IDAT chunks; the
  big one is precomputed with its CRC.
- JPEG and WebP cannot be spliced like that: the template (with a grey band) is encoded
  once, and each image differs by a metadata segment naming it (a JPEG COM segment; an
  XMP chunk in an extended WebP container), so its bytes and hash are its own while its
  pixels are shared.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import anyio
from PIL import Image

from pipeline import _threads

FORMAT_FACTORS = {"png": 1.0, "jpeg": 0.3, "webp": 0.2}
GREY = (96, 96, 96)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, fastest; (0x78 * 256 + 1) % 31 == 0
_ADLER_BASE = 65521
_BLOCK_BYTES = 1 << 20


def target_bytes(width: int, height: int, fmt: str) -> int:
    """The file size aimed at for an image of this size and format."""
    pixels = width * height
    per_pixel = 2.0 * (pixels / 2**20) ** -0.25
    return int(FORMAT_FACTORS[fmt] * per_pixel * pixels)


def band_rows(height: int) -> int:
    """Rows at the top that each image draws for itself."""
    return min(height, max(16, height // 16))


def adler32_combine(first: int, second: int, second_len: int) -> int:
    """Adler-32 of ``a + b`` from ``adler32(a)``, ``adler32(b)`` and ``len(b)``."""
    s1a, s2a = first & 0xFFFF, first >> 16
    s1b, s2b = second & 0xFFFF, second >> 16
    s1 = (s1a + s1b - 1) % _ADLER_BASE
    s2 = (s2a + s2b + second_len * (s1a - 1)) % _ADLER_BASE
    return (s2 << 16) | s1


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@dataclass(frozen=True, slots=True)
class Template:
    """What every image of one size and format shares.

    PNG: ``data`` is the IDAT chunk of the rows below the band, ``raw_len``/``adler``
    describe those rows uncompressed. JPEG/WebP: ``data`` is the whole encoded file.
    """

    width: int
    height: int
    fmt: str
    data: bytes
    raw_len: int = 0
    adler: int = 1


def _noise_rows(width: int, height: int, fmt: str, available: int) -> int:
    """How many noise rows bring the file to about its target size."""
    target = target_bytes(width, height, fmt)
    per_row: float = 1 + 3 * width
    if fmt != "png":
        sample_rows = max(1, min(available, 64))
        sample = Image.frombytes("RGB", (width, sample_rows), _noise(width, sample_rows, 0))
        per_row = max(1, len(_encode(sample, fmt)) / sample_rows)
    return max(0, min(available, round(target / per_row)))


def _noise(width: int, rows: int, seed: int) -> bytes:
    return random.Random(f"{width}:{rows}:{seed}").randbytes(3 * width * rows)


def _encode(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "jpeg":
        img.save(out, format="JPEG", quality=85)
    else:
        img.save(out, format="WEBP", quality=80, method=0)
    return out.getvalue()


def build_template(width: int, height: int, fmt: str) -> Template:
    """The shared part of ``fmt`` images of ``width`` x ``height`` (blocking: seconds at
    4K). Raises ``ValueError`` for an unknown format."""
    if fmt not in FORMAT_FACTORS:
        raise ValueError(f"unsupported image format {fmt!r}")
    band = band_rows(height) if fmt == "png" else 0
    below = height - band
    noise = _noise_rows(width, height, fmt, below)
    if fmt != "png":
        img = Image.new("RGB", (width, height), GREY)
        if noise:
            img.paste(Image.frombytes("RGB", (width, noise), _noise(width, noise, 1)), (0, 0))
        return Template(width, height, fmt, _encode(img, fmt))
    # Noise is stored (incompressible anyway, and fast), the flat rows deflated.
    stored = zlib.compressobj(0, zlib.DEFLATED, -15)
    packed = zlib.compressobj(1, zlib.DEFLATED, -15)
    parts: list[bytes] = []
    adler, raw_len = 1, 0
    per_block = max(1, _BLOCK_BYTES // (3 * width))
    for start in range(0, noise, per_block):
        count = min(per_block, noise - start)
        pixels = memoryview(_noise(width, count, start))
        stride = 3 * width
        rows = b"".join(b"\x00" + pixels[i * stride : (i + 1) * stride] for i in range(count))
        adler, raw_len = zlib.adler32(rows, adler), raw_len + len(rows)
        parts.append(stored.compress(rows))
    parts.append(stored.flush(zlib.Z_FULL_FLUSH))
    flat_row = b"\x00" + bytes(GREY) * width
    for start in range(0, below - noise, per_block):
        rows = flat_row * min(per_block, below - noise - start)
        adler, raw_len = zlib.adler32(rows, adler), raw_len + len(rows)
        parts.append(packed.compress(rows))
    parts.append(packed.flush(zlib.Z_FINISH))
    return Template(width, height, fmt, _chunk(b"IDAT", b"".join(parts)), raw_len, adler)


def assemble(template: Template, band: Image.Image | None, name: str) -> bytes:
    """One image: ``template`` under its own ``band`` (PNG, ``band_rows`` high) or
    tagged with ``name`` (JPEG/WebP). Blocking (copies the template once)."""
    if template.fmt == "png":
        assert band is not None
        return _png(template, band)
    tag = f"pipeline emulator image {name}".encode()
    if template.fmt == "jpeg":
        comment = b"\xff\xfe" + struct.pack(">H", len(tag) + 2) + tag
        return template.data[:2] + comment + template.data[2:]
    return _webp_with_xmp(template, tag)


def _png(template: Template, band: Image.Image) -> bytes:
    width, stride = template.width, 3 * template.width
    pixels = memoryview(band.convert("RGB").tobytes())
    rows = b"".join(b"\x00" + pixels[i * stride : (i + 1) * stride] for i in range(band.height))
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)
    head = packer.compress(rows) + packer.flush(zlib.Z_FULL_FLUSH)
    adler = adler32_combine(zlib.adler32(rows), template.adler, template.raw_len)
    header = struct.pack(">IIBBBBB", width, template.height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"".join(
        (
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", ZLIB_HEADER + head),
            template.data,
            _chunk(b"IDAT", struct.pack(">I", adler)),
            _chunk(b"IEND", b""),
        )
    )


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    pad = b"\x00" if len(payload) % 2 else b""
    return kind + struct.pack("<I", len(payload)) + payload + pad


def _webp_with_xmp(template: Template, tag: bytes) -> bytes:
    data = template.data
    chunks, pos = [], 12  # after "RIFF" size "WEBP"
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append(data[pos : pos + 8 + size + (size % 2)])
        pos += 8 + size + (size % 2)
        if kind == b"VP8X":
            raise ValueError("template is already an extended WebP")
    w, h = template.width - 1, template.height - 1
    vp8x = bytes((0x04, 0, 0, 0)) + w.to_bytes(3, "little") + h.to_bytes(3, "little")
    body = b"WEBP" + _riff_chunk(b"VP8X", vp8x) + b"".join(chunks) + _riff_chunk(b"XMP ", tag)
    return b"RIFF" + struct.pack("<I", len(body)) + body


class Templates:
    """Templates by (width, height, format), built once each in a worker thread (a
    second request for one being built waits for it), the oldest dropped past
    ``max_bytes`` (the newest always kept)."""

    __slots__ = ("_building", "_bytes", "_entries", "builds", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, int, str], Template] = OrderedDict()
        self._building: dict[tuple[int, int, str], anyio.Event] = {}
        self._bytes = 0
        self.builds = 0

    def __repr__(self) -> str:
        return f"Templates(entries={len(self._entries)}, bytes={self._bytes}, builds={self.builds})"

    async def get(self, width: int, height: int, fmt: str) -> Template:
        """The template, built if needed. Raises ``ValueError`` for an unknown format."""
        key = (width, height, fmt)
        while True:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
            pending = self._building.get(key)
            if pending is None:
                break
            await pending.wait()
        done = self._building[key] = anyio.Event()
        try:
            template = await _threads.run_sync(build_template, width, height, fmt)
            self.builds += 1
            self._entries[key] = template
            self._bytes += len(template.data)
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, old = self._entries.popitem(last=False)
                self._bytes -= len(old.data)
        finally:
            del self._building[key]
            done.set()
        return template
