"""Figure 9: following skills.video tasks on its event stream instead of polling them.

Whole runs of the pipeline against the emulator, on a virtual clock (so a 15 s task costs
no real time and the figures do not depend on the machine's load): the same skills.video
batch, tasks of 15 s +- 60% (uniform), 16 at once, three ways:

- ``polled``: ``stream: false`` (the default), the poll schedule as a lane starts;
- ``streamed``: ``stream: true``;
- ``streamed, 10% dropped``: every tenth stream is cut after its first frame (the
  emulator's ``sse_drop``), and those tasks are polled for the rest.

Measured by the emulator: polls per job, and the detection lag (how long after a task
ended the client was first shown it ended, mean over tasks). The targets: a streamed run
polls nothing (at most 0.01 per job) and notices each end at once (lag at most 0.05 s);
with drops, every job still completes, once each (no task created twice).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio
import stamina

from benchmarks.results import Figure, at_most, info
from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, FaultProfile, serve
from pipeline.engine._runner import RunOptions, run_batch
from pipeline.jobs import Batch, Budget, Job, JobParams, ProviderSettings

LATENCY_S = 15.0
JITTER = 0.6
CONCURRENT = 16


@dataclass(frozen=True, slots=True)
class Way:
    name: str
    stream: bool
    drop: float = 0.0


WAYS = (Way("polled", False), Way("streamed", True), Way("streamed, 10% dropped", True, 0.1))


@dataclass(frozen=True, slots=True)
class Result:
    way: str
    jobs: int
    completed: int
    submits: int
    duplicates: int
    polls_per_job: float
    lag_s: float
    virtual_s: float


def _batch(out: Path, jobs: int, stream: bool) -> Batch:
    settings = ProviderSettings(
        requests_per_second=50,
        max_concurrent=CONCURRENT,
        job_timeout_s=600,
        usd_per_credit=0.001,
        stream=stream,
    )
    return Batch(
        name="streaming",
        manifest_path="streaming.yaml",
        output_dir=str(out),
        jobs=tuple(
            Job(
                id=f"s{i}",
                prompt_id=f"s{i}",
                provider="skills_video",
                prompt=f"streamed or polled {i}",
                params=JobParams(aspect_ratio="1:1", resolution="1k"),
            )
            for i in range(jobs)
        ),
        providers={"skills_video": settings},
        budget=Budget(),
    )


async def _one(way: Way, jobs: int) -> Result:
    config = EmulatorConfig(
        image_scale=0.0625,
        seed=11,
        latency_s=LATENCY_S,
        latency_jitter=JITTER,
        faults=FaultProfile(sse_drop=way.drop),
    )
    clock = VirtualClock()
    with tempfile.TemporaryDirectory() as tmp, stamina.set_testing(True, attempts=1000):
        async with clock.running() as running, serve(config, clock=running) as server:
            options = RunOptions(
                base_urls={"skills_video": server.base_url},
                api_keys={"skills_video": "bench-key"},
                tier_defaults=False,
                clock=running,
            )
            started = running.now()
            outcome, _, _ = await run_batch(_batch(Path(tmp), jobs, way.stream), options)
            virtual_s = running.now() - started
            stats = server.stats().skills_video
    return Result(
        way.name,
        jobs,
        outcome.completed,
        stats.submits,
        stats.duplicate_submits,
        stats.polls / jobs,
        stats.notice_lag_s / max(1, stats.noticed),
        virtual_s,
    )


def measure(jobs: int, log: Callable[[str], None]) -> list[Figure]:
    results = []
    for way in WAYS:
        result = anyio.run(_one, way, jobs, backend="asyncio")
        log(
            f"  {result.way:<22} {result.completed}/{jobs} completed, {result.submits} tasks, "
            f"{result.polls_per_job:.2f} polls/job, detection lag {result.lag_s:.2f} s, "
            f"{result.virtual_s:.0f} s (virtual)"
        )
        results.append(result)
    polled, streamed, dropped = results
    details = {r.way: asdict(r) for r in results}
    return [
        at_most(
            "stream_polls_per_job",
            "9. streamed: polls per job",
            streamed.polls_per_job,
            "",
            0.01,
            details=details,
        ),
        at_most("stream_lag_s", "9. streamed: detection lag", streamed.lag_s, "s", 0.05),
        info("poll_polls_per_job", "9. polled: polls per job", polled.polls_per_job, ""),
        info("poll_lag_s", "9. polled: detection lag", polled.lag_s, "s"),
        Figure(
            "stream_drops_once_each",
            "9. streamed, 10% dropped: jobs completed, each task created once",
            dropped.completed / jobs,
            "of jobs",
            "= 1, no task twice",
            dropped.completed == jobs and dropped.submits == jobs and not dropped.duplicates,
        ),
    ]
