"""Figure 12: ``pipeline plan`` of a million jobs (``python -m benchmarks --scale``).

Figure 5's manifest (YAML naming a CSV of prompts, swept over 4 aspect ratios x 2
providers) at 1,000,000 jobs: 125,000 prompts. ``pipeline plan M --json`` runs as the
real command in its own process (through the launcher, for its own peak RSS), once at a
tenth of the size and once at the full size; both must plan every job. The figure is the
full size's peak RSS against 400 MB, with its time; the ratio of the two times shows
whether planning stays linear (10 x the jobs should take at most about 10 x the time; the
interpreter's start and imports, paid once, keep it below 10).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.procs import ChildResult, python_module, run_child
from benchmarks.results import Figure, at_most, info
from benchmarks.scale import write_manifest

JOBS = 1_000_000
RSS_MB = 400.0


def plan_child(folder: Path, jobs: int) -> ChildResult:
    """``pipeline plan --json`` of figure 5's manifest at ``jobs`` jobs, in ``folder``.
    Raises ``RuntimeError`` unless it exits 0 having planned exactly ``jobs`` jobs."""
    folder.mkdir()
    manifest = write_manifest(folder, jobs)
    plan = run_child(python_module("pipeline", "plan", str(manifest), "--json"))
    planned = json.loads(plan.stdout)["totals"]["jobs"] if plan.exit_code == 0 else None
    if planned != jobs:
        raise RuntimeError(f"pipeline plan of {jobs:,} jobs failed:\n{plan.stderr[-3000:]}")
    return plan


def measure(jobs: int, log: Callable[[str], None]) -> list[Figure]:
    """Figure 12: peak RSS and time of ``pipeline plan`` at ``jobs`` (and a tenth of it)."""
    with tempfile.TemporaryDirectory() as tmp:
        small = plan_child(Path(tmp) / "small", jobs // 10)
        log(f"  plan {jobs // 10:,} jobs: {small.wall_s:.2f} s, peak RSS {small.max_rss_mb:.0f} MB")
        full = plan_child(Path(tmp) / "full", jobs)
        log(f"  plan {jobs:,} jobs: {full.wall_s:.2f} s, peak RSS {full.max_rss_mb:.0f} MB")
    ratio = full.wall_s / small.wall_s
    runs = {
        "small": {"jobs": jobs // 10, "wall_s": small.wall_s, "cpu_s": small.cpu_s},
        "full": {"jobs": jobs, "wall_s": full.wall_s, "cpu_s": full.cpu_s},
        "small_max_rss_mb": small.max_rss_mb,
    }
    return [
        info("plan_scale_s", f"12. `pipeline plan`, {jobs:,} jobs", full.wall_s, "s", details=runs),
        at_most("plan_scale_rss_mb", "12. `pipeline plan` peak RSS", full.max_rss_mb, "MB", RSS_MB),
        info("plan_scale_ratio", f"12. time, {jobs:,} / {jobs // 10:,} jobs", ratio, "x"),
    ]
