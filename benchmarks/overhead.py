"""Figures 1 and 2: the pipeline against the bare aiohttp floor, and where its time goes.

Both sides run the same 2,000 single-image jobs (half per provider, 32 in flight per
provider) against a fresh zero-latency emulator in its own process, each in its own
process too, alternating floor / pipeline three times; the best run of each side counts. A
third pipeline run under cProfile gives the profile (it is slower: profiling costs).
"""

from __future__ import annotations

import pstats
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from benchmarks.emulator_proc import EmulatorProcess, EmulatorSetup
from benchmarks.procs import REPO, python_module, run_child
from benchmarks.results import Figure, at_most, info
from benchmarks.workload import PROVIDERS, Workload, WorkResult

TARGET_RATIO = 1.15
ROUNDS = 3  # floor, pipeline, floor, pipeline...: the best run of each side counts
TOP = 15
# Paths shown from the package root: site-packages/, lib/python3.X/ or the repository.
_SHORTEN = re.compile(r"^.*/(site-packages|lib/python3\.\d+)/|^" + re.escape(str(REPO)) + "/")


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
    mode: Literal["floor", "pipeline"], jobs: int, out: Path, *, profile: Path | None = None
) -> Run:
    """One run of ``mode`` on a fresh emulator, writing into the new folder ``out``.
    Raises ``RuntimeError`` if it failed."""
    with EmulatorProcess(EmulatorSetup()) as emu:
        w = Workload(
            mode=mode,
            base_url=emu.base_url,
            out_dir=str(out),
            jobs=jobs,
            profile_path=str(profile) if profile else None,
        )
        child = run_child(python_module("benchmarks.worker", w.model_dump_json()))
        if child.exit_code != 0:
            raise RuntimeError(f"{mode} run failed:\n{child.stderr[-3000:]}")
        result = WorkResult.model_validate_json(child.stdout.strip().splitlines()[-1])
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


def _where(key: tuple[str, int, str]) -> str:
    file, line, func = key
    file = _SHORTEN.sub("", file)
    return f"{func} ({file}:{line})" if line else func


def profile_summary(path: Path) -> dict[str, list[str]]:
    """Top functions of a cProfile dump: cumulative time (pipeline code) and self time."""
    raw = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = [(k, v[1], v[2], v[3]) for k, v in raw.items()]
    total = sum(r[2] for r in rows) or 1.0
    ours = [r for r in rows if "/pipeline/" in r[0][0]]
    cumulative = sorted(ours, key=lambda r: r[3], reverse=True)[:TOP]
    self_time = sorted(rows, key=lambda r: r[2], reverse=True)[:TOP]
    return {
        "cumulative_pipeline": [
            f"{ct:7.2f} s cum  {calls:>7} calls  {_where(k)}" for k, calls, _, ct in cumulative
        ],
        "self_time": [
            f"{tt:7.2f} s self {100 * tt / total:5.1f}%  {calls:>7} calls  {_where(k)}"
            for k, calls, tt, _ in self_time
        ],
    }


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
    profile_path = out / "profile.pstats"
    profiled = run_side("pipeline", jobs, next(folders), profile=profile_path)
    summary = profile_summary(profile_path)
    log(f"  profiled pipeline run: {profiled.seconds:.2f} s (cProfile overhead included)")
    log(f"  top {TOP} cumulative (pipeline code):")
    for line in summary["cumulative_pipeline"]:
        log("    " + line)
    log(f"  top {TOP} self time (everything):")
    for line in summary["self_time"]:
        log("    " + line)
    (out / "profile.txt").write_text(
        "\n".join(["# cumulative (pipeline code)", *summary["cumulative_pipeline"], ""])
        + "\n".join(["# self time", *summary["self_time"], ""])
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
