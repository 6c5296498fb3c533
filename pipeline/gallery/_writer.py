"""``write_report``: ledger -> grid -> thumbnails -> ``DIR/report.html``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.gallery._html import render_page
from pipeline.gallery._model import build_grid
from pipeline.gallery._records import load_ledger
from pipeline.gallery._thumbs import make_thumbs

REPORT_NAME = "report.html"


def _write_atomic(path: Path, text: str) -> None:
    # Replacing (not opening) the target also means a planted symlink named report.html is
    # replaced, never followed out of the folder.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(
    directory: str | Path,
    *,
    rows: str | None = None,
    cols: str | None = None,
    ledger: bytes | None = None,
) -> Path:
    """Write the batch's contact sheet to ``DIR/report.html`` and return that path.

    ``rows`` / ``cols`` name the axes (comma-separated to combine several): ``prompt``, a
    variant key such as ``provider`` or ``aspect_ratio``, or a template variable. By default
    rows are prompts and columns every variant key combined. ``ledger``: the ledger's
    JSON when it comes from the run state rather than ``DIR/ledger.json``. Thumbnails go to
    ``DIR/thumbs/`` (rebuilt only when missing or stale); nothing is written elsewhere.

    Raises ``UsageError`` when the folder holds no ledger.json (or an unreadable one), an
    axis name is unknown, or the report cannot be written.
    """
    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"{directory}: not a folder")
    book = load_ledger(root, ledger)
    grid = build_grid(book, rows=rows, cols=cols)
    paths = [image.path for job in book.current_jobs for image in job.images]
    try:
        thumbs = make_thumbs(root, paths)
        _write_atomic(root.resolve() / REPORT_NAME, render_page(book, grid, thumbs))
    except OSError as exc:
        raise UsageError(f"{directory}: cannot write the report: {exc}") from exc
    return root / REPORT_NAME
