"""The command line: argparse front, views and live progress (the only place that prints
for humans). ``main`` is the console script ``pipeline``."""

from __future__ import annotations

from pipeline.cli._main import main

__all__ = ["main"]
