"""Helpers for manifest tests: write a manifest (or any file) under a temporary folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ._support import Write


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """``write("m.yaml", text)`` writes dedented text (or bytes) and returns its path."""

    def _write(name: str, content: str | bytes) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")
        return str(path)

    return _write
