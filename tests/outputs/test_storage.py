"""Image downloads against a real local HTTP server: checks, atomic writes, failures."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline import _threads
from pipeline._batching import Batcher
from pipeline.errors import DownloadError
from pipeline.outputs._imagecheck import looks_complete, sniff_format
from pipeline.outputs._local import SPILL_BYTES, LocalFolder
from pipeline.outputs._partfile import DIR_FLAGS, PartFile, write_chunks
from tests.outputs.s3_front import serve_local

pytestmark = pytest.mark.anyio


def _png(w: int = 40, h: int = 30) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png() -> bytes:
    """A well-formed, complete PNG of 200 bytes that declares 30,000 x 30,000 pixels."""
    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


async def _truncated(request: web.Request) -> web.StreamResponse:
    body = _png()
    resp = web.StreamResponse(headers={"Content-Length": str(len(body))})
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    assert request.transport is not None
    request.transport.close()
    return resp


async def _closed(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=499)


async def _cut_cleanly(request: web.Request) -> web.StreamResponse:
    # No Content-Length (chunked), half an image, then a clean end of body.
    body = _png()
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    await resp.write_eof()
    return resp


async def _stalled(request: web.Request) -> web.StreamResponse:
    body = _png()
    resp = web.StreamResponse(headers={"Content-Length": str(len(body))})
    await resp.prepare(request)
    await resp.write(body[:20])
    await anyio.sleep(2)  # well past the client's 0.5 s timeout
    return resp


@pytest.fixture
async def image_server() -> AsyncIterator[str]:
    """Serves a good PNG, a JPEG, a truncated PNG, an HTML page, a 503 and a big file,
    plus a closed connection, a cleanly ended half image and a stalled body."""
    app = web.Application()
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 9)).save(jpeg, "JPEG")
    routes = {
        "/good.png": web.Response(body=_png(), content_type="image/png"),
        "/photo.jpg": web.Response(body=jpeg.getvalue(), content_type="image/jpeg"),
        "/page.html": web.Response(text="<html>nope</html>", content_type="text/html"),
        "/busy": web.Response(status=503),
        "/big.png": web.Response(body=_png() + b"\0" * 5000),
        "/bomb.png": web.Response(body=_bomb_png(), content_type="image/png"),
    }

    def reply(path: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            template = routes[path]
            return web.Response(
                body=template.body, status=template.status, content_type=template.content_type
            )

        return handler

    for path in routes:
        app.router.add_get(path, reply(path))
    app.router.add_get("/cut.png", _truncated)
    app.router.add_get("/closed.png", _closed)
    app.router.add_get("/cut-clean.png", _cut_cleanly)
    app.router.add_get("/stalled.png", _stalled)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def downloader(tmp_path: Path) -> AsyncIterator[LocalFolder]:
    """A downloader writing under tmp_path with a 4 KB cap."""
    async with aiohttp.ClientSession() as session:
        yield LocalFolder(tmp_path, session=session, max_bytes=4096, timeout_s=5)


async def test_good_image_is_stored_with_its_facts(
    image_server: str, downloader: LocalFolder, tmp_path: Path
) -> None:
    """A PNG lands under images/ with sha256, size and dimensions recorded."""
    stored = await downloader.fetch(f"{image_server}/good.png", "job-1")
    data = (tmp_path / "images" / "job-1.png").read_bytes()
    assert stored.path == "images/job-1.png"
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert (stored.width, stored.height, stored.format, stored.bytes) == (40, 30, "png", len(data))


async def test_extension_follows_the_bytes(image_server: str, downloader: LocalFolder) -> None:
    """A JPEG is saved as .jpg whatever was asked for."""
    stored = await downloader.fetch(f"{image_server}/photo.jpg", "job-2")
    assert stored.path.endswith(".jpg")
    assert stored.format == "jpeg"


@pytest.mark.parametrize(
    ("path", "retryable", "match"),
    [
        ("/cut.png", True, "truncated|download failed"),
        ("/closed.png", True, "download failed"),
        ("/cut-clean.png", True, "truncated"),
        ("/page.html", False, "not a png"),
        ("/busy", True, "HTTP 503"),
        ("/big.png", False, "cap"),
        ("/bomb.png", False, "not a readable image"),
    ],
)
async def test_bad_downloads_leave_no_file(
    image_server: str,
    downloader: LocalFolder,
    tmp_path: Path,
    path: str,
    retryable: bool,
    match: str,
) -> None:
    """Truncated, non-image, failing and oversized downloads raise and leave nothing."""
    with pytest.raises(DownloadError, match=match) as info:
        await downloader.fetch(f"{image_server}{path}", "bad")
    assert info.value.retryable is retryable
    assert list((tmp_path / "images").iterdir()) == []


async def test_only_http_urls(downloader: LocalFolder) -> None:
    """file:// and other schemes are refused before any I/O."""
    with pytest.raises(DownloadError, match="not http"):
        await downloader.fetch("file:///etc/passwd", "x")


def test_sniff_format() -> None:
    """Magic bytes identify png, jpeg and webp and nothing else."""
    assert sniff_format(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff_format(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff_format(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert sniff_format(b"GIF89a") is None


async def test_stalled_body_times_out(image_server: str, tmp_path: Path) -> None:
    """A server that stops sending mid-body cannot hang a download: retryable error."""
    async with aiohttp.ClientSession() as session:
        downloader = LocalFolder(tmp_path, session=session, timeout_s=0.5)
        with anyio.fail_after(10):
            with pytest.raises(DownloadError, match="download failed") as info:
                await downloader.fetch(f"{image_server}/stalled.png", "slow")
    assert info.value.retryable is True
    assert list((tmp_path / "images").iterdir()) == []


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_complete_images_pass_the_end_check(fmt: str) -> None:
    """Whole png, jpeg and webp files end where their format says; cut ones do not."""
    buf = io.BytesIO()
    Image.new("RGB", (33, 17), (1, 2, 3)).save(buf, fmt)
    data = buf.getvalue()
    kind = sniff_format(data[:16])
    assert kind is not None
    assert looks_complete(kind, data[-32:], len(data), data[:16])
    cut = data[: len(data) * 2 // 3]
    assert not looks_complete(kind, cut[-32:], len(cut), cut[:16])


@pytest.mark.parametrize("path", ["/good.png", "/photo.jpg"])
async def test_images_larger_than_the_spill_size_are_written_in_parts(
    image_server: str, tmp_path: Path, path: str
) -> None:
    """With a 16-byte spill size the bytes go to the temp file as they arrive and the
    header is read back from it: the stored bytes and facts are the same."""
    async with aiohttp.ClientSession() as session:
        whole = await LocalFolder(tmp_path / "whole", session=session).fetch(
            f"{image_server}{path}", "job"
        )
        parts = await LocalFolder(tmp_path / "parts", session=session, spill_bytes=16).fetch(
            f"{image_server}{path}", "job"
        )
    assert parts == whole
    data = (tmp_path / "parts" / parts.path).read_bytes()
    assert len(data) > 16
    assert data == (tmp_path / "whole" / whole.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == parts.sha256


@pytest.mark.parametrize("path", ["/cut-clean.png", "/cut.png", "/bomb.png"])
async def test_failures_after_a_spill_leave_no_file(
    image_server: str, tmp_path: Path, path: str
) -> None:
    """A download that fails once part of it is on disk removes its temp file."""
    async with aiohttp.ClientSession() as session:
        downloader = LocalFolder(tmp_path, session=session, spill_bytes=16)
        with pytest.raises(DownloadError):
            await downloader.fetch(f"{image_server}{path}", "bad")
    assert list((tmp_path / "images").iterdir()) == []


def _noise_png(side: int = 1400) -> bytes:
    """An incompressible PNG of about 5.9 MB (more than two default spill sizes)."""
    pixels = random.Random(side).randbytes(3 * side * side)
    buf = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """An empty images/ folder."""
    path = tmp_path / "images"
    path.mkdir()
    return path


async def test_a_large_body_is_stored_whole_through_the_default_spill(tmp_path: Path) -> None:
    """A noise PNG of several spill sizes, from a real server with the default spill: the
    stored file is the body, its facts are right, no temp file remains."""
    body = _noise_png()
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="image/png")

    app.router.add_get("/noise.png", handler)
    runner, base = await serve_local(app)
    try:
        async with aiohttp.ClientSession() as session:
            folder = LocalFolder(tmp_path, session=session)
            stored = await folder.fetch(f"{base}/noise.png", "big")
    finally:
        await runner.cleanup()
    assert len(body) > 2 * SPILL_BYTES
    assert (tmp_path / stored.path).read_bytes() == body
    assert (stored.width, stored.height, stored.bytes) == (1400, 1400, len(body))
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["big.png"]


async def test_a_large_body_reaches_the_disk_in_spill_sized_writes(images: Path) -> None:
    """Nothing is written before a spill size is held; then each spill writes all that
    is held (the default spill size at a time), and the finish writes the rest and
    renames."""
    body = _noise_png()
    piece = 64 * 1024
    part = PartFile("big.part", lambda: os.open(images, DIR_FLAGS), Batcher().call, SPILL_BYTES)
    sizes = []
    for start in range(0, len(body), piece):
        if part.hold(body[start : start + piece]) >= part.spill_bytes:
            await part.spill()
            sizes.append((images / "big.part").stat().st_size)
        elif not sizes:
            assert os.listdir(images) == []
    assert sizes == [SPILL_BYTES * k for k in range(1, len(body) // SPILL_BYTES + 1)]
    assert await part.finish("big.png", "png") == (1400, 1400)
    await part.abandon()  # after a finish: nothing left to do
    assert os.listdir(images) == ["big.png"]
    assert (images / "big.png").read_bytes() == body


async def test_file_calls_are_counted_and_a_cancelled_one_ends_first(images: Path) -> None:
    """aiofiles' calls are counted thread calls (as a virtual clock needs); a download
    cancelled while its file is being created waits for that call, then removes the file."""
    entered, release = threading.Event(), threading.Event()

    def open_dir() -> int:
        entered.set()
        release.wait()
        return os.open(images, DIR_FLAGS)

    part = PartFile("slow.part", open_dir, Batcher().call, 16)
    part.hold(b"x" * 32)

    async def spill() -> None:
        try:
            await part.spill()
        finally:
            await part.abandon()

    before = _threads.under_way()
    async with anyio.create_task_group() as tg:
        tg.start_soon(spill)
        await anyio.to_thread.run_sync(entered.wait)  # not counted: the test's own wait
        assert _threads.under_way() == before + 1
        tg.cancel_scope.cancel()
        release.set()
    assert part.created is False
    assert part.fd is None
    assert part.file is None
    assert os.listdir(images) == []


@given(
    sizes=st.lists(st.integers(0, 3000), max_size=2500),
    cap=st.integers(1, 70_000),
)
@settings(max_examples=30, deadline=None)
def test_held_chunks_reach_the_file_whole_through_short_writes(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], cap: int
) -> None:
    """``write_chunks`` writes every chunk in order, empty ones and more than one
    ``writev`` takes included, going on after each short write (here: a real ``writev``
    that writes at most ``cap`` bytes a call)."""
    rng = random.Random(len(sizes))
    chunks = [rng.randbytes(n) for n in sizes]

    def short_writev(fd: int, buffers: list[memoryview]) -> int:
        assert len(buffers) <= 1024
        taken, room = [], cap
        for buf in buffers:
            if room == 0:
                break
            taken.append(buf[:room])
            room -= len(taken[-1])
        return os.writev(fd, taken)

    path = tmp_path_factory.mktemp("chunks") / "body"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        write_chunks(fd, chunks, short_writev)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(chunks)


async def test_a_held_body_whose_header_lies_deep_is_still_read(images: Path) -> None:
    """A JPEG whose frame header comes after a large ICC profile (past the part of the
    body the header is first read from): held whole, its size is still found."""
    picture = io.BytesIO()
    Image.new("RGB", (33, 21)).save(picture, "JPEG", icc_profile=bytes(600_000))
    body = picture.getvalue()
    assert body.index(b"\xff\xc0") > 512 * 1024  # the frame header (SOF0)
    part = PartFile("deep.part", lambda: os.open(images, DIR_FLAGS), Batcher().call, SPILL_BYTES)
    for start in range(0, len(body), 64 * 1024):
        part.hold(body[start : start + 64 * 1024])
    assert await part.finish("deep.jpg", "jpeg") == (33, 21)
    assert (images / "deep.jpg").read_bytes() == body
