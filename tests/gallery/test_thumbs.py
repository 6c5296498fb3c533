"""Thumbnails: size, freshness, and refusing every path that leads outside the batch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from pipeline.errors import UsageError
from pipeline.gallery._thumbs import THUMB_MAX_PX, UnsafePath, make_thumbs, resolve_image


def png(path: Path, size: tuple[int, int] = (600, 300), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, (200, 40, 40, 128) if mode == "RGBA" else (200, 40, 40)).save(path)
    return path


def test_thumbnail_fits_in_256px_and_keeps_the_aspect_ratio(tmp_path: Path) -> None:
    """A 600x300 image gives a 256x128 JPEG under thumbs/, named after the image."""
    png(tmp_path / "images" / "a-1.png")
    thumbs = make_thumbs(tmp_path, ["images/a-1.png"])
    t = thumbs["images/a-1.png"]
    assert t.thumb == "thumbs/a-1.png.jpg"
    assert (t.width, t.height) == (THUMB_MAX_PX, 128)
    with Image.open(tmp_path / "thumbs" / "a-1.png.jpg") as im:
        assert im.format == "JPEG"
        assert im.size == (256, 128)


def test_transparent_image_is_flattened_on_white(tmp_path: Path) -> None:
    """An RGBA image becomes an RGB thumbnail (JPEG has no alpha)."""
    png(tmp_path / "images" / "t-1.png", (64, 64), "RGBA")
    t = make_thumbs(tmp_path, ["images/t-1.png"])["images/t-1.png"]
    assert t.problem is None
    with Image.open(tmp_path / "thumbs" / "t-1.png.jpg") as im:
        assert im.mode == "RGB"
        assert im.size == (64, 64)


def test_thumbnail_is_rebuilt_only_when_missing_or_stale(tmp_path: Path) -> None:
    """A fresh thumbnail is reused as is; a newer source image rebuilds it."""
    src = png(tmp_path / "images" / "a-1.png")
    make_thumbs(tmp_path, ["images/a-1.png"])
    thumb = tmp_path / "thumbs" / "a-1.png.jpg"
    stamp = os.stat(src).st_mtime + 100
    os.utime(thumb, (stamp, stamp))
    before = thumb.read_bytes()
    make_thumbs(tmp_path, ["images/a-1.png"])
    assert thumb.stat().st_mtime == stamp  # untouched
    png(src, (100, 400))
    os.utime(src, (stamp + 50, stamp + 50))
    t = make_thumbs(tmp_path, ["images/a-1.png"])["images/a-1.png"]
    assert thumb.read_bytes() != before
    assert (t.width, t.height) == (64, 256)
    thumb.unlink()
    make_thumbs(tmp_path, ["images/a-1.png"])
    assert thumb.is_file()


@pytest.mark.parametrize(
    "rel",
    [
        "../outside.png",
        "images/../../outside.png",
        "images/../ledger.json",
        "/etc/passwd",
        "ledger.json",
        "images",
        "images\\..\\x.png",
        "",
    ],
)
def test_paths_escaping_images_are_refused(tmp_path: Path, rel: str) -> None:
    """Parent references, absolute paths and paths outside images/ raise UnsafePath."""
    (tmp_path / "images").mkdir()
    with pytest.raises(UnsafePath):
        resolve_image(tmp_path.resolve(), rel)


def test_symlinks_leading_out_are_refused_and_nothing_is_written_there(tmp_path: Path) -> None:
    """A link to a file outside, or a linked images folder, is refused and left untouched."""
    outside = png(tmp_path / "secret" / "s.png")
    batch = tmp_path / "batch"
    (batch / "images").mkdir(parents=True)
    (batch / "images" / "evil-1.png").symlink_to(outside)
    png(batch / "images" / "ok-1.png")
    (batch / "images" / "ok-2.png").symlink_to(batch / "images" / "ok-1.png")
    thumbs = make_thumbs(batch, ["images/evil-1.png", "images/ok-1.png", "images/ok-2.png"])
    assert thumbs["images/evil-1.png"].safe is False
    assert thumbs["images/evil-1.png"].thumb is None
    assert thumbs["images/ok-1.png"].thumb is not None
    assert thumbs["images/ok-2.png"].thumb is not None  # a link that stays inside is fine
    assert sorted(p.name for p in (tmp_path / "secret").iterdir()) == ["s.png"]

    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "images").symlink_to(tmp_path / "secret")
    t = make_thumbs(linked, ["images/s.png"])["images/s.png"]
    assert t.safe is False


def test_thumbs_folder_linked_outside_is_refused(tmp_path: Path) -> None:
    """DIR/thumbs as a symlink elsewhere is a UsageError, and nothing is written through it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    batch = tmp_path / "batch"
    png(batch / "images" / "a-1.png")
    (batch / "thumbs").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="thumbs"):
        make_thumbs(batch, ["images/a-1.png"])
    assert list(elsewhere.iterdir()) == []


def test_link_inside_thumbs_leading_out_is_refused(tmp_path: Path) -> None:
    """A planted link under thumbs/ does not carry a thumbnail write out of the folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    batch = tmp_path / "batch"
    png(batch / "images" / "sub" / "a-1.png")
    (batch / "thumbs").mkdir()
    (batch / "thumbs" / "sub").symlink_to(elsewhere)
    t = make_thumbs(batch, ["images/sub/a-1.png"])["images/sub/a-1.png"]
    assert t.thumb is None
    assert t.problem is not None
    assert list(elsewhere.iterdir()) == []


def test_missing_and_corrupt_images_are_reported_not_raised(tmp_path: Path) -> None:
    """A missing file and a file that is not an image each get a problem, not an exception."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "bad-1.png").write_bytes(b"not an image")
    thumbs = make_thumbs(tmp_path, ["images/gone-1.png", "images/bad-1.png"])
    assert thumbs["images/gone-1.png"].problem == "image file missing"
    assert thumbs["images/bad-1.png"].problem == "image unreadable"
    assert thumbs["images/bad-1.png"].safe is True
