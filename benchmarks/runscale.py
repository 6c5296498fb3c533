"""Figure 13: ``pipeline run`` of a million new jobs, stopped by Ctrl-C, then ``status``.

Figure 5's manifest (125,000 CSV prompts x 4 aspect ratios x 2 providers) with 64 tasks in
flight per provider and no rate limit to speak of, against the zero-latency emulator in
its own process (small images). ``pipeline run`` runs as the real command under the
launcher (its own peak RSS). The driver counts the files in ``images/`` every quarter of
a second: the first one's arrival is the start-up figure (manifest, the first part of
the new jobs stored, the rest following as the lanes send, the lanes' first round trips),
the count over the rest of the window
the steady rate. After ``WINDOW_S`` it sends SIGINT to the run (not to the launcher) and
times its exit, which must be 130. Then ``pipeline status --json`` of the million-job
state, timed with its peak RSS, must count every job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.emulator_proc import EmulatorProcess, EmulatorSetup
from benchmarks.procs import REPO, python_module, run_child
from benchmarks.results import Figure, at_most, info
from benchmarks.scale import write_manifest
from pipeline.providers.specs import SPECS

JOBS = 1_000_000
WINDOW_S = 60.0
FIRST_IMAGE_S, RSS_MB, EXIT_S, STATUS_S = 5.0, 1024.0, 5.0, 5.0
_POLL_S = 0.25


def _manifest(folder: Path, jobs: int) -> Path:
    manifest = write_manifest(folder, jobs)
    text = manifest.read_text().replace(
        "requests_per_second: 10, max_concurrent: 10",
        "requests_per_second: 1000, max_concurrent: 64",
    )
    manifest.write_text(text)
    return manifest


def _images(out: Path) -> int:
    try:
        return sum(1 for e in os.scandir(out / "images") if e.name.endswith(".png"))
    except FileNotFoundError:
        return 0


def _child_of(pid: int) -> int | None:
    """The (one) child process of ``pid``: the run the launcher started."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def measure(jobs: int, log: Callable[[str], None], window_s: float = WINDOW_S) -> list[Figure]:
    """Figure 13 at ``jobs`` jobs."""
    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(EmulatorSetup()) as emulator:
        folder = Path(tmp)
        manifest = _manifest(folder, jobs)
        out = folder / "out"
        report = folder / "usage.json"
        env = dict(os.environ)
        for spec in SPECS.values():
            env[spec.env_key] = "bench-key-not-secret"
            env[spec.env_base_url] = emulator.base_url
        argv = python_module("pipeline", "run", str(manifest), "--out", str(out), "-q")
        started = time.perf_counter()
        with open(folder / "stderr", "wb") as err:
            launcher = subprocess.Popen(
                python_module("benchmarks.launch", str(report), *argv),
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
            first = None
            at_first = 0
            while time.perf_counter() - started < window_s and launcher.poll() is None:
                time.sleep(_POLL_S)
                if first is None and _images(out):
                    first = time.perf_counter() - started
                    at_first = _images(out)
            stored = _images(out)
            run = _child_of(launcher.pid)
            if run is None or launcher.poll() is not None:
                raise RuntimeError(
                    f"the run ended early:\n{(folder / 'stderr').read_text()[-3000:]}"
                )
            sigint = time.perf_counter()
            os.kill(run, signal.SIGINT)
            launcher.wait(timeout=120)
            exit_s = time.perf_counter() - sigint
        usage = json.loads(report.read_text())
        if usage["exit_code"] != 130:
            raise RuntimeError(f"the run exited {usage['exit_code']}, not 130")
        if first is None:
            raise RuntimeError(f"no image within {window_s:g} s")
        rate = (stored - at_first) / max(window_s - first, 1e-9)
        rss = usage["max_rss_kb"] / 1024
        log(
            f"  run of {jobs:,} jobs: first image after {first:.1f} s, then {rate:,.0f} images/s, "
            f"peak RSS {rss:.0f} MB; exit {exit_s:.2f} s after SIGINT"
        )
        status = run_child(python_module("pipeline", "status", str(out), "--json"))
        counted = json.loads(status.stdout)["totals"]["jobs"] if status.exit_code == 0 else None
        if counted != jobs:
            raise RuntimeError(f"pipeline status counted {counted}:\n{status.stderr[-3000:]}")
        log(
            f"  status of {jobs:,} jobs: {status.wall_s:.2f} s, peak RSS {status.max_rss_mb:.0f} MB"
        )
    details = {"window_s": window_s, "images_in_window": stored, "cpu_s": usage["cpu_s"]}
    return [
        at_most(
            "run_first_image_s",
            f"13. run {jobs:,} new jobs: first image",
            first,
            "s",
            FIRST_IMAGE_S,
            details=details,
        ),
        info("run_rate", "13. then images/s (zero latency)", rate, "/s"),
        at_most("run_rss_mb", "13. run peak RSS", rss, "MB", RSS_MB),
        at_most("run_sigint_s", "13. exit after SIGINT", exit_s, "s", EXIT_S),
        at_most(
            "status_scale_s", f"13. `pipeline status`, {jobs:,} jobs", status.wall_s, "s", STATUS_S
        ),
        info("status_scale_rss_mb", "13. `pipeline status` peak RSS", status.max_rss_mb, "MB"),
    ]
