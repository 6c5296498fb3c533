"""Child processes with their own wall time, CPU time and peak RSS, and the core count.

Each child runs under ``benchmarks.launch`` (see there why), which reaps it with
``os.wait4`` and reports its usage: ``resource.getrusage(RUSAGE_CHILDREN)`` would be a
high-water mark over every child reaped so far and could not tell two runs apart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cores() -> int:
    """CPUs this process may run on (what the figures are relative to)."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True, slots=True)
class ChildResult:
    """How one child process ended and what it used."""

    exit_code: int
    wall_s: float
    cpu_s: float  # user + system, all threads of the child
    max_rss_mb: float  # peak resident set size of the child itself
    stdout: str
    stderr: str


def python_module(module: str, *args: str) -> list[str]:
    """The command line that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def run_child(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: float = 900.0
) -> ChildResult:
    """Run ``argv`` from the repository root under the launcher and wait for it.

    stdout/stderr go to files (a pipe could fill up and stall the child). Raises
    ``subprocess.TimeoutExpired`` (after killing it) if it runs past ``timeout_s``.
    """
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        folder = Path(tmp)
        report = folder / "usage.json"
        out_path, err_path = folder / "stdout", folder / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            # Its own session, so a timeout can end the launcher and its child together.
            proc = subprocess.Popen(
                python_module("benchmarks.launch", str(report), *argv),
                cwd=REPO,
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
        usage = json.loads(report.read_text()) if report.exists() else {}
        return ChildResult(
            exit_code=int(usage.get("exit_code", -1)),
            wall_s=float(usage.get("wall_s", float("nan"))),
            cpu_s=float(usage.get("cpu_s", float("nan"))),
            max_rss_mb=float(usage.get("max_rss_kb", 0)) / 1024,  # Linux reports KiB
            stdout=out_path.read_text(errors="replace"),
            stderr=err_path.read_text(errors="replace"),
        )
