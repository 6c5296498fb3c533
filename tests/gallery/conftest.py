"""Report fixtures: a sample sweep batch on disk, and headless Chromium (installed if absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._chromium import ChromiumUnavailable, ensure_chromium
from ._support import sweep_jobs, write_batch


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    """A sweep batch folder: 16 jobs over prompt x style x aspect ratio x provider."""
    return write_batch(tmp_path / "batch", sweep_jobs())


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium; installed with apt-get (as root) when missing. Fails, never skips."""
    try:
        return ensure_chromium()
    except ChromiumUnavailable as exc:
        pytest.fail(f"headless Chromium is required for the render test: {exc}", pytrace=False)
