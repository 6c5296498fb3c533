"""Figures 1 and 2: the pipeline against the bare aiohttp floor, and where its time goes.

Both sides run the same 2,000 single-image jobs (half per provider, 32 in flight per
provider) against a fresh zero-latency emulator in its own process, each in its own
process too, alternating floor / pipeline three times; the best run of each side counts. A
last pipeline run under py-spy gives the profile (``benchmarks/profile.py``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from benchmarks.emulator_proc import EmulatorProcess, EmulatorSetup
from benchmarks.procs import python_module, run_child
from benchmarks.profile import TOP, py_spy_argv, read_raw
from benchmarks.results import Figure, at_most, info
from benchmarks.workload import PROVIDERS, Workload, WorkResult

TARGET_RATIO = 1.15
ROUNDS = 3  # floor, pipeline, floor, pipeline...: the best run of each side counts


@dataclass(frozen=True, slots=True)
class Run:
    """One side's run: inner wall time, child CPU and RSS, and the requests it made."""

    mode: str
    seconds: float
    cpu_s: float
    max_rss_mb: float
    completed: int
    api_requests: int
    downloads: int


def run_side(
    mode: Literal["floor", "pipeline"],
    jobs: int,
    out: Path | str,
    *,
    profile: Path | None = None,
    setup: EmulatorSetup | None = None,
    env: Mapping[str, str] | None = None,
) -> Run:
    """One run of ``mode`` on a fresh emulator (``setup``: figure 1's by default), writing
    into the new folder ``out`` (or an object-store URL, with ``env`` for the child).
    Raises ``RuntimeError`` if it failed."""
    with EmulatorProcess(setup or EmulatorSetup()) as emu:
        w = Workload(
            mode=mode,
            base_url=emu.base_url,
            out_dir=str(out),
            jobs=jobs,
        )
        argv = python_module("benchmarks.worker", w.model_dump_json())
        child = run_child(py_spy_argv(profile, argv) if profile else argv, env=env)
        if child.exit_code != 0:
            raise RuntimeError(f"{mode} run failed:\n{child.stderr[-3000:]}")
        # The worker's last JSON line (py-spy, when profiling, prints its own lines too).
        lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"{mode} run printed no result:\n{child.stdout[-3000:]}")
        result = WorkResult.model_validate_json(lines[-1])
        stats = emu.stats()
    if result.completed != jobs:
        raise RuntimeError(f"{mode} completed {result.completed} of {jobs} jobs")
    return Run(
        mode=mode,
        seconds=result.seconds,
        cpu_s=child.cpu_s,
        max_rss_mb=child.max_rss_mb,
        completed=result.completed,
        api_requests=sum(stats.for_provider(p).requests for p in PROVIDERS),
        downloads=sum(stats.for_provider(p).downloads for p in PROVIDERS),
    )


def measure(jobs: int, out: Path, log: Callable[[str], None]) -> list[Figure]:
    """Figures 1 (overhead ratio) and 2 (throughput ceiling, profile)."""
    runs: dict[str, list[Run]] = {"floor": [], "pipeline": []}
    # Every run writes into a new folder, and the folders are removed only at the end:
    # on ext4, creating files just after thousands were deleted costs several times more
    # (the allocator skips recently deleted inodes), which would charge one run for the
    # clean-up of the one before.
    scratch = tempfile.TemporaryDirectory()
    folders = (Path(scratch.name) / f"run-{k}" for k in range(100))
    try:
        return _measure(jobs, out, log, runs, folders)
    finally:
        scratch.cleanup()


def _measure(
    jobs: int,
    out: Path,
    log: Callable[[str], None],
    runs: dict[str, list[Run]],
    folders: Iterator[Path],
) -> list[Figure]:
    for round_ in range(1, ROUNDS + 1):
        for mode in ("floor", "pipeline"):
            run = run_side(mode, jobs, next(folders))
            runs[mode].append(run)
            log(
                f"  round {round_} {mode:8}: {run.seconds:6.2f} s wall, {run.cpu_s:6.2f} s CPU, "
                f"{run.max_rss_mb:5.0f} MB, {run.api_requests} API requests, "
                f"{run.downloads} downloads"
            )
    floor = min(runs["floor"], key=lambda r: r.seconds)
    pipe = min(runs["pipeline"], key=lambda r: r.seconds)
    ratio = pipe.seconds / floor.seconds
    cpu_ratio = min(r.cpu_s for r in runs["pipeline"]) / min(r.cpu_s for r in runs["floor"])
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "profile.raw"
    summary: dict[str, list[str]] = {}
    try:
        profiled = run_side("pipeline", jobs, next(folders), profile=raw)
        summary = read_raw(raw).summary()
    except (RuntimeError, OSError) as exc:  # no py-spy, or no permission to trace
        log(f"  no profile: {str(exc)[-300:]}")
    else:
        log(f"  profiled pipeline run (py-spy, 250 Hz): {profiled.seconds:.2f} s")
        for title, key in (
            ("", "threads"),
            (f"top {TOP} pipeline functions, inclusive:", "inclusive_pipeline"),
            (f"top {TOP} innermost frames (self):", "self"),
        ):
            if title:
                log("  " + title)
            for line in summary[key]:
                log("    " + line)
        (out / "profile.txt").write_text(
            "".join(f"# {key}\n" + "\n".join(lines) + "\n" for key, lines in summary.items())
        )
    details = {"jobs": jobs, "runs": [asdict(r) for rs in runs.values() for r in rs]}
    return [
        at_most(
            "overhead_ratio",
            f"1. pipeline / floor time, {jobs:,} jobs",
            ratio,
            "x",
            TARGET_RATIO,
            details={**details, "floor_s": floor.seconds, "pipeline_s": pipe.seconds},
        ),
        info("overhead_cpu_ratio", "1. pipeline / floor CPU time", cpu_ratio, "x"),
        info(
            "throughput_jobs_per_s",
            "2. pipeline throughput, zero latency",
            jobs / pipe.seconds,
            "jobs/s",
            details={"floor_jobs_per_s": jobs / floor.seconds, "profile": summary},
        ),
        info("floor_throughput_jobs_per_s", "2. floor throughput", jobs / floor.seconds, "jobs/s"),
    ]
