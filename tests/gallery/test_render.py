"""The report renders in a real browser: headless Chromium screenshots a non-blank page."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from pipeline.gallery import write_report

from . import _chromium
from ._chromium import ChromiumUnavailable, ensure_chromium, screenshot

WIDTH, HEIGHT = 1400, 1000


def _near(a: tuple[int, ...], b: tuple[int, ...], tol: int = 8) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=False))


def test_chromium_renders_the_report_with_its_thumbnails(
    chromium: Path, sweep_dir: Path, tmp_path: Path
) -> None:
    """The screenshot exists, is far from blank, and shows the sample images' colours."""
    report = write_report(sweep_dir)
    png = tmp_path / "shot.png"
    done = screenshot(chromium, report, png, tmp_path / "profile", size=f"{WIDTH},{HEIGHT}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert png.is_file(), done.stderr[-2000:]
    with Image.open(png) as im:
        rgb = im.convert("RGB")
    assert rgb.size == (WIDTH, HEIGHT)
    counted = rgb.getcolors(maxcolors=WIDTH * HEIGHT)
    assert counted is not None
    colours = [(n, c) for n, c in counted if isinstance(c, tuple)]  # RGB: always tuples
    assert len(colours) > 200  # text, badges, histogram and photos, not a flat page
    light = sum(n for n, c in colours if min(c) >= 235)
    assert light < 0.9 * WIDTH * HEIGHT
    # write_batch paints job n in a known solid colour; jobs 0, 4 and 5 open the first row
    # (1 to 3 have no image). Finding them proves the thumbnails' relative paths resolved.
    painted = [((n * 53) % 256, (n * 97) % 256, (n * 151 + 60) % 256) for n in (0, 4, 5)]
    big = [c for n, c in colours if n > 500]
    found = [p for p in painted if any(_near(p, c) for c in big)]
    assert len(found) >= 2, (painted, sorted(colours, reverse=True)[:20])


def test_missing_chromium_that_cannot_be_installed_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Not root and no browser: a clear error saying how to install it (the fixture fails)."""
    monkeypatch.setattr(_chromium, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ChromiumUnavailable, match="apt-get install -y --no-install-recommends"):
        ensure_chromium()
