"""Helpers for tests that run whole batches against the emulator."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from pipeline.emulator import EmulatorServer
from pipeline.engine._runner import RunOptions, RunReport, run_batch
from pipeline.jobs import Batch, Budget, Job, JobParams, ProviderSettings

PROVIDERS = ("wavespeed", "skills_video")


def make_batch(
    out: Path,
    prompts: list[tuple[str, str]],
    *,
    resolution: str = "1k",
    n: int = 1,
    rps: float = 50.0,
    max_concurrent: int = 4,
    job_timeout_s: float = 30.0,
    budget: Budget | None = None,
    usd_per_credit: float | None = 0.001,
) -> Batch:
    """A batch of (provider, prompt) jobs, built by hand (no manifest involved)."""
    jobs = tuple(
        Job(
            id=f"job{i}",
            prompt_id=f"job{i}",
            provider=provider,
            prompt=prompt,
            params=JobParams(aspect_ratio="16:9", resolution=resolution, n=n),
        )
        for i, (provider, prompt) in enumerate(prompts)
    )
    settings = ProviderSettings(
        requests_per_second=rps,
        max_concurrent=max_concurrent,
        job_timeout_s=job_timeout_s,
        usd_per_credit=usd_per_credit,
    )
    return Batch(
        name="test",
        manifest_path="test.yaml",
        output_dir=str(out),
        jobs=jobs,
        providers={p: settings for p in PROVIDERS},
        budget=budget or Budget(),
    )


def emulator_options(server: EmulatorServer, **kw: Any) -> RunOptions:
    return RunOptions(
        base_urls={p: server.base_url for p in PROVIDERS},
        api_keys={p: "test-key" for p in PROVIDERS},
        tier_defaults=False,  # the emulator's accounts have no tiers
        **kw,
    )


def check_images_match_ledger(out: Path) -> dict[str, Any]:
    """Every image listed in ledger.json exists with the recorded sha256 and size."""
    ledger: dict[str, Any] = json.loads((out / "ledger.json").read_text())
    for job in ledger["jobs"]:
        for img in job["images"]:
            data = (out / img["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == img["sha256"], img["path"]
            assert len(data) == img["bytes"]
    return ledger


async def run_until_sigint(
    batch: Batch, server: EmulatorServer, moment: Callable[[], Awaitable[object]]
) -> RunReport:
    """Run ``batch`` as the command line does (its signal handler on) and send this
    process SIGINT once sending has started and ``moment()`` has returned."""
    sending = anyio.Event()

    async def interrupt() -> None:
        await sending.wait()
        await moment()
        os.kill(os.getpid(), signal.SIGINT)

    async with anyio.create_task_group() as tg:
        tg.start_soon(interrupt)
        options = emulator_options(server, handle_signals=True, on_start=lambda _: sending.set())
        report = await run_batch(batch, options)
    return report
