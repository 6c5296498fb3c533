"""Shared test helpers for the manifest tests."""

from __future__ import annotations

from collections.abc import Callable

# write(name, text_or_bytes) -> path of the written file (see conftest.write)
Write = Callable[..., str]
