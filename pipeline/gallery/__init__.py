"""``pipeline report DIR``: a self-contained HTML contact sheet of a batch.

Public surface: ``write_report`` (what the command runs), plus the grid model for callers
that want the layout without the HTML.
"""

from __future__ import annotations

from pipeline.gallery._model import PROMPT_AXIS, Grid, build_grid, known_axes
from pipeline.gallery._records import Ledger, load_ledger
from pipeline.gallery._writer import REPORT_NAME, write_report

__all__ = [
    "PROMPT_AXIS",
    "REPORT_NAME",
    "Grid",
    "Ledger",
    "build_grid",
    "known_axes",
    "load_ledger",
    "write_report",
]
