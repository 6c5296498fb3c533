"""The engine: one run of a batch, from work planned to jobs recorded.

The runner is the composition root; the scheduler drives per-provider lanes (rate limit,
tasks in flight, retries, polling) and the download stage; the budget guard reserves
spend before every submit; the resume rules decide what a rerun does. It knows no wire
format (``providers``), no SQL (``store``) and no storage detail (``outputs``).
"""

from __future__ import annotations

from pipeline.engine._lane import LaneStats
from pipeline.engine._outcome import RunOutcome, exit_code
from pipeline.engine._runner import (
    LaneView,
    RunOptions,
    RunReport,
    resolve_endpoints,
    run_batch,
)

__all__ = [
    "LaneStats",
    "LaneView",
    "RunOptions",
    "RunOutcome",
    "RunReport",
    "exit_code",
    "resolve_endpoints",
    "run_batch",
]
