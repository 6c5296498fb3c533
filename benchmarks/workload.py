"""One measured run, as a record both sides (floor and pipeline) read the same way."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from pipeline.jobs import Batch, Budget, Job, JobParams, ProviderSettings

PROVIDERS = ("wavespeed", "skills_video")
BENCH_KEY = "bench-key"  # not a secret: the emulator accepts any bearer


class Workload(BaseModel):
    """``jobs`` single-image jobs spread round-robin over ``providers``, each provider
    with ``max_concurrent`` tasks in flight and ``rps`` requests per second."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["floor", "pipeline"]
    base_url: str
    out_dir: str
    jobs: int
    providers: tuple[str, ...] = PROVIDERS
    max_concurrent: int = 32
    rps: float = 10_000.0
    aspect_ratio: str = "1:1"
    resolution: str = "1k"
    output_format: str = "png"


class WorkResult(BaseModel):
    """What a worker reports on stdout (one JSON line)."""

    model_config = ConfigDict(frozen=True)

    seconds: float
    completed: int
    failed: int


def build_jobs(w: Workload) -> tuple[Job, ...]:
    """The workload's jobs; every prompt differs, so the emulator sees no duplicates."""
    params = JobParams(
        aspect_ratio=w.aspect_ratio, resolution=w.resolution, output_format=w.output_format
    )
    return tuple(
        Job(
            id=f"b{i:06d}",
            prompt_id=f"b{i:06d}",
            provider=w.providers[i % len(w.providers)],
            prompt=f"benchmark image {i}: a lighthouse at dusk, oil painting",
            params=params,
        )
        for i in range(w.jobs)
    )


def build_batch(w: Workload) -> Batch:
    """The workload as a Batch, built by hand (no manifest involved)."""
    settings = ProviderSettings(
        requests_per_second=w.rps,
        max_concurrent=w.max_concurrent,
        job_timeout_s=120.0,
        usd_per_credit=0.001,
    )
    return Batch(
        name="bench",
        manifest_path="bench.yaml",
        output_dir=w.out_dir,
        jobs=build_jobs(w),
        providers={p: settings for p in w.providers},
        budget=Budget(),
    )
