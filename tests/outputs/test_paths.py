"""Nothing is written outside the output folder, whatever symlinks are planted in images/."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from pipeline._batching import Batcher
from pipeline.emulator import EmulatorServer
from pipeline.engine._runner import exit_code, run_batch
from pipeline.errors import DownloadError
from pipeline.outputs._imagecheck import MAX_STEM
from pipeline.outputs._local import LocalFolder
from pipeline.outputs._partfile import DIR_FLAGS, PartFile
from tests.outputs.s3_front import serve_local
from tests.scheduler_support import check_images_match_ledger, emulator_options, make_batch

pytestmark = pytest.mark.anyio

SECRET = b"precious data that must never be overwritten"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (10, 200, 10)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
async def image_url() -> AsyncIterator[str]:
    """The URL of a good PNG on a local server."""
    app = web.Application()
    body = _png()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="image/png")

    app.router.add_get("/img.png", handler)
    runner, base = await serve_local(app)
    try:
        yield f"{base}/img.png"
    finally:
        await runner.cleanup()


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """An output folder and, beside it, an 'elsewhere' folder holding a precious file."""
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_bytes(SECRET)
    return out, elsewhere


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session per test."""
    async with aiohttp.ClientSession() as s:
        yield s


def _untouched(elsewhere: Path) -> None:
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious"]
    assert (elsewhere / "precious").read_bytes() == SECRET


async def test_images_folder_symlinked_elsewhere_is_refused(
    image_url: str, layout: tuple[Path, Path], session: aiohttp.ClientSession
) -> None:
    """images/ -> a folder outside: the download is refused for good, nothing written."""
    out, elsewhere = layout
    (out / "images").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DownloadError, match="not a directory inside") as info:
        await LocalFolder(out, session=session).fetch(image_url, "job-1")
    assert info.value.retryable is False
    _untouched(elsewhere)


async def test_images_folder_that_is_a_file_is_refused(
    image_url: str, layout: tuple[Path, Path], session: aiohttp.ClientSession
) -> None:
    """images is a regular file (or a dangling symlink): refused, not followed or replaced."""
    out, elsewhere = layout
    (out / "images").symlink_to(elsewhere / "missing")
    with pytest.raises(DownloadError):
        await LocalFolder(out, session=session).fetch(image_url, "job-1")
    assert (out / "images").is_symlink()
    _untouched(elsewhere)


async def test_final_name_symlink_is_replaced_not_followed(
    image_url: str, layout: tuple[Path, Path], session: aiohttp.ClientSession
) -> None:
    """images/<job>-1.png -> a file outside: the rename replaces the link itself."""
    out, elsewhere = layout
    (out / "images").mkdir()
    link = out / "images" / "job-1.png"
    link.symlink_to(elsewhere / "precious")
    stored = await LocalFolder(out, session=session).fetch(image_url, "job-1")
    assert stored.path == "images/job-1.png"
    assert not link.is_symlink()
    assert link.read_bytes() == _png()
    _untouched(elsewhere)


async def test_planted_part_symlink_is_never_followed(
    image_url: str,
    layout: tuple[Path, Path],
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A symlink planted at the temp file's exact name is not opened (O_EXCL|O_NOFOLLOW);
    the old fixed name ``<job>-1.part`` is not even used."""
    out, elsewhere = layout
    images = out / "images"
    images.mkdir()
    (images / "job-1.part").symlink_to(elsewhere / "precious")
    downloader = LocalFolder(out, session=session)
    stored = await downloader.fetch(image_url, "job-1")
    assert (out / stored.path).read_bytes() == _png()
    _untouched(elsewhere)
    # Now guess the random name too: the download is refused rather than follow the link.
    monkeypatch.setattr("pipeline.outputs._local.secrets.token_hex", lambda n: "guessed")
    (images / "job-2.guessed.part").symlink_to(elsewhere / "precious")
    with pytest.raises(DownloadError, match="cannot write"):
        await downloader.fetch(image_url, "job-2")
    _untouched(elsewhere)
    assert not (images / "job-2.png").exists()


@pytest.mark.parametrize(
    "stem",
    ["../escape", "a/b", "a\\b", "nul\0byte", "..", ".hidden", "", "x" * (MAX_STEM + 1)],
    ids=["dotdot", "slash", "backslash", "nul", "bare-dotdot", "dot", "empty", "long"],
)
async def test_unsafe_stems_are_refused(
    image_url: str, layout: tuple[Path, Path], session: aiohttp.ClientSession, stem: str
) -> None:
    """Stems that could leave images/ (or hide in it) are refused before any I/O."""
    out, elsewhere = layout
    with pytest.raises(DownloadError, match="unsafe") as info:
        await LocalFolder(out, session=session).fetch(image_url, stem)
    assert info.value.retryable is False
    assert list(out.iterdir()) == []
    _untouched(elsewhere)


async def test_leftover_parts_are_swept_without_following_links(
    image_url: str, layout: tuple[Path, Path], session: aiohttp.ClientSession
) -> None:
    """Temp files of a killed run (and a planted .part link) are removed before the first
    download; a link's target is left alone."""
    out, elsewhere = layout
    images = out / "images"
    images.mkdir()
    (images / "job-1.0123456789abcdef.part").write_bytes(b"half an image")
    (images / "trap.part").symlink_to(elsewhere / "precious")
    (images / "keep.png").write_bytes(b"not ours to judge")
    stored = await LocalFolder(out, session=session).fetch(image_url, "job-2")
    assert sorted(p.name for p in images.iterdir()) == ["job-2.png", "keep.png"]
    assert stored.path == "images/job-2.png"
    _untouched(elsewhere)


async def test_sweep_at_run_start_is_safe(
    layout: tuple[Path, Path], session: aiohttp.ClientSession
) -> None:
    """sweep() clears leftover temp files; with a symlinked images/ it touches nothing."""
    out, elsewhere = layout
    images = out / "images"
    images.mkdir()
    (images / "job-1.0123456789abcdef.part").write_bytes(b"half")
    await LocalFolder(out, session=session).sweep()
    assert list(images.iterdir()) == []
    images.rmdir()
    images.symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "theirs.part").write_bytes(b"not ours")
    await LocalFolder(out, session=session).sweep()
    assert (elsewhere / "theirs.part").read_bytes() == b"not ours"


async def test_discard_removes_a_stored_image(
    image_url: str, layout: tuple[Path, Path], session: aiohttp.ClientSession
) -> None:
    """A stored image of a job that failed later is removed again."""
    out, _ = layout
    downloader = LocalFolder(out, session=session)
    stored = await downloader.fetch(image_url, "job-1")
    await downloader.discard(stored)
    assert list((out / "images").iterdir()) == []
    await downloader.discard(stored)  # already gone: no error


async def test_run_with_symlinked_images_fails_jobs_and_writes_nothing_outside(
    emulator: EmulatorServer, layout: tuple[Path, Path]
) -> None:
    """A whole run into a folder whose images/ points elsewhere: every job fails with code
    'download', nothing lands outside, the run still ends normally (exit 1)."""
    out, elsewhere = layout
    (out / "images").symlink_to(elsewhere, target_is_directory=True)
    batch = make_batch(out, [("wavespeed", "a"), ("skills_video", "b")])
    outcome, doc, interrupted = await run_batch(batch, emulator_options(emulator))
    assert (outcome.completed, outcome.failed) == (0, 2)
    assert exit_code(outcome, interrupted) == 1
    assert {j["error"]["code"] for j in doc["jobs"]} == {"download"}  # type: ignore[attr-defined]
    _untouched(elsewhere)
    # Once the folder is fixed, --retry-failed fetches the paid-for images again by remote
    # id: nothing is submitted (or paid) twice.
    (out / "images").unlink()
    submits = emulator.stats().wavespeed.submits + emulator.stats().skills_video.submits
    outcome, doc, _ = await run_batch(batch, emulator_options(emulator, retry_failed=True))
    assert (outcome.completed, outcome.failed) == (2, 0)
    assert emulator.stats().wavespeed.submits + emulator.stats().skills_video.submits == submits
    assert all("redownloaded" in j["flags"] for j in doc["jobs"])  # type: ignore[attr-defined]
    check_images_match_ledger(out)


async def test_resume_does_not_trust_a_planted_symlink(
    emulator: EmulatorServer, layout: tuple[Path, Path]
) -> None:
    """A completed image swapped for a symlink (same size) is fetched again on rerun and
    the link is replaced; its target stays untouched."""
    out, elsewhere = layout
    batch = make_batch(out, [("wavespeed", "a")])
    await run_batch(batch, emulator_options(emulator))
    image = out / "images" / "job0-1.png"
    decoy = elsewhere / "decoy.png"
    decoy.write_bytes(b"\0" * image.stat().st_size)
    image.unlink()
    image.symlink_to(decoy)
    outcome, doc, _ = await run_batch(batch, emulator_options(emulator))
    assert outcome.completed == 1
    assert "redownloaded" in doc["jobs"][0]["flags"]  # type: ignore[index]
    assert not image.is_symlink()
    assert decoy.read_bytes() == b"\0" * len(decoy.read_bytes())
    check_images_match_ledger(out)
    assert sorted(os.listdir(elsewhere)) == ["decoy.png", "precious"]
    assert (elsewhere / "precious").read_bytes() == SECRET


async def test_large_bodies_keep_the_same_guards(
    image_url: str,
    layout: tuple[Path, Path],
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Written as they arrive (a 16-byte spill, the aiofiles path): a final-name symlink
    is replaced, not followed; a planted link at the temp file's name is refused."""
    out, elsewhere = layout
    images = out / "images"
    images.mkdir()
    (images / "job-1.png").symlink_to(elsewhere / "precious")
    downloader = LocalFolder(out, session=session, spill_bytes=16)
    stored = await downloader.fetch(image_url, "job-1")
    assert not (images / "job-1.png").is_symlink()
    assert (out / stored.path).read_bytes() == _png()
    # The recorded hash and size are the whole body's, though it was written in parts.
    assert (stored.sha256, stored.bytes) == (hashlib.sha256(_png()).hexdigest(), len(_png()))
    monkeypatch.setattr("pipeline.outputs._local.secrets.token_hex", lambda n: "guessed")
    (images / "job-2.guessed.part").symlink_to(elsewhere / "precious")
    with pytest.raises(DownloadError, match="cannot write"):
        await downloader.fetch(image_url, "job-2")
    assert not (images / "job-2.png").exists()
    assert (images / "job-2.guessed.part").is_symlink()  # not ours: left as it was
    _untouched(elsewhere)


async def test_large_bodies_refuse_a_symlinked_images_folder(
    image_url: str, layout: tuple[Path, Path], session: aiohttp.ClientSession
) -> None:
    """images/ -> elsewhere, with a 16-byte spill: refused as the file would be created."""
    out, elsewhere = layout
    (out / "images").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DownloadError, match="not a directory inside") as info:
        await LocalFolder(out, session=session, spill_bytes=16).fetch(image_url, "job-1")
    assert info.value.retryable is False
    _untouched(elsewhere)


async def test_a_sweep_spares_a_download_in_progress(
    layout: tuple[Path, Path], session: aiohttp.ClientSession
) -> None:
    """Another folder object (as another process would) sweeps while a body is half on
    disk: the locked temp file stays and is renamed into place; an unlocked leftover goes."""
    out, _ = layout
    images = out / "images"
    images.mkdir()
    (images / "dead.0123456789abcdef.part").write_bytes(b"a killed run's")
    body = _png()
    part = PartFile("live.part", lambda: os.open(images, DIR_FLAGS), Batcher().call, 16)
    part.hold(body[:20])
    await part.spill()
    await LocalFolder(out, session=session).sweep()
    assert sorted(os.listdir(images)) == ["live.part"]
    part.hold(body[20:])
    assert await part.finish("live.png", "png") == (24, 16)
    assert sorted(os.listdir(images)) == ["live.png"]
    assert (images / "live.png").read_bytes() == body
