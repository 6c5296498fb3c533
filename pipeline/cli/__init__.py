"""The command line: argparse front, views and live progress (the only place that prints
for humans). ``main`` is the console script ``pipeline``; ``Progress`` is the live view
(``pipeline.run(progress=True)`` shows it), loaded with rich on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.cli._main import main

if TYPE_CHECKING:
    from pipeline.cli._progress import Progress


def __getattr__(name: str) -> Any:
    if name == "Progress":
        from pipeline.cli._progress import Progress

        return Progress
    raise AttributeError(f"module 'pipeline.cli' has no attribute {name!r}")


__all__ = ["Progress", "main"]
