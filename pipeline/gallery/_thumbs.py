"""Thumbnails under ``DIR/thumbs/`` for the images a ledger lists, made with Pillow.

Ledger paths are untrusted: an image is used only if its path is relative, has no ``..``
and resolves (symlinks followed) to a file inside ``DIR/images``; anything else is refused
and reported on its cell. Every write lands in ``DIR/thumbs``, itself refused when it is a
link that leads out of ``DIR``. A thumbnail is rebuilt only when missing or older than its
image, and written atomically (temporary file, then rename) so an interrupted report never
leaves a half thumbnail that later runs would trust.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from pipeline.errors import UsageError

IMAGES_DIR = "images"
THUMBS_DIR = "thumbs"
THUMB_MAX_PX = 256
THUMB_SUFFIX = ".jpg"
_WORKERS = min(8, os.cpu_count() or 1)


class UnsafePath(ValueError):
    """A ledger path that would lead outside ``DIR/images``."""


@dataclass(frozen=True, slots=True)
class Thumb:
    """What the page shows for one ledger image.

    ``image`` / ``thumb`` are paths relative to DIR (POSIX), ``thumb`` None when there is no
    thumbnail; ``problem`` says why (refused path, missing or unreadable file). ``safe`` is
    False for a refused path: the page must not link to it.
    """

    image: str
    safe: bool = True
    thumb: str | None = None
    width: int | None = None
    height: int | None = None
    problem: str | None = None


def resolve_image(root: Path, rel: str) -> Path:
    """The real file behind ledger path ``rel``.

    ``root`` must already be resolved. Raises ``UnsafePath`` when ``rel`` is absolute, holds
    ``..`` or a backslash, or resolves outside ``root/images`` (e.g. through a symlink).
    """
    pure = PurePosixPath(rel)
    if not rel or "\\" in rel or "\x00" in rel or pure.is_absolute() or ".." in pure.parts:
        raise UnsafePath(rel)
    if pure.parts[0] != IMAGES_DIR or len(pure.parts) < 2:
        raise UnsafePath(rel)
    real = (root / pure).resolve()
    # Compared with root/images *unresolved*: a symlinked images folder leading out of DIR
    # is refused too.
    if not real.is_relative_to(root / IMAGES_DIR):
        raise UnsafePath(rel)
    return real


def thumb_rel(rel: str) -> str:
    """``images/a/b-1.png`` -> ``thumbs/a/b-1.png.jpg`` (the full name keeps it unique)."""
    inner = PurePosixPath(rel).relative_to(IMAGES_DIR)
    return str(PurePosixPath(THUMBS_DIR) / inner.parent / (inner.name + THUMB_SUFFIX))


def thumbs_root(root: Path) -> Path:
    """``root/thumbs``, created if needed.

    Raises ``UsageError`` when it exists as a link or anything else leading out of ``root``.
    """
    path = root / THUMBS_DIR
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UsageError(f"{path}: not a plain folder inside the batch; refusing to write there")
    path.mkdir(exist_ok=True)
    return path


def _is_fresh(thumb: Path, source: Path) -> bool:
    try:
        return not thumb.is_symlink() and thumb.stat().st_mtime >= source.stat().st_mtime
    except FileNotFoundError:
        return False


def _render(source: Path, target: Path) -> tuple[int, int]:
    """Write a JPEG thumbnail of ``source`` to ``target`` atomically; its size in pixels."""
    with Image.open(source) as im:
        im.draft("RGB", (THUMB_MAX_PX, THUMB_MAX_PX))  # JPEG: decode at reduced scale
        im.thumbnail((THUMB_MAX_PX, THUMB_MAX_PX))
        if im.mode in ("RGBA", "LA", "P"):
            rgba = im.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            out = flat
        else:
            out = im.convert("RGB")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".thumb-", suffix=THUMB_SUFFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                out.save(f, "JPEG", quality=85, optimize=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return out.size


def _one(root: Path, rel: str) -> Thumb:
    try:
        source = resolve_image(root, rel)
    except UnsafePath:
        return Thumb(image=rel, safe=False, problem="refused: path leads outside images/")
    if not source.is_file():
        return Thumb(image=rel, problem="image file missing")
    t_rel = thumb_rel(rel)
    target = root / t_rel
    # The target's folder must stay inside thumbs/ too: a link planted in a subfolder
    # would otherwise carry the write (and mkdir) elsewhere.
    if not target.parent.resolve().is_relative_to(root / THUMBS_DIR):
        return Thumb(image=rel, problem="refused: thumbnail folder leads outside thumbs/")
    try:
        if _is_fresh(target, source):
            with Image.open(target) as im:
                size = im.size
        else:
            size = _render(source, target)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        return Thumb(image=rel, problem="image unreadable")
    return Thumb(image=rel, thumb=t_rel, width=size[0], height=size[1])


def make_thumbs(root: Path, paths: Iterable[str]) -> dict[str, Thumb]:
    """Thumbnails for every ledger path, keyed by that path (never raises for one image).

    ``root`` is the batch folder. Pillow decodes outside the GIL, so a thread pool speeds up
    large batches. Raises ``UsageError`` when ``root/thumbs`` cannot be used safely.
    """
    root = root.resolve()
    thumbs_root(root)
    unique = list(dict.fromkeys(paths))
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        results = list(pool.map(lambda rel: _one(root, rel), unique))
    return dict(zip(unique, results, strict=True))
