"""The floor: what a hand-written aiohttp script does for the same jobs, and no more.

Per provider, ``max_concurrent`` workers each take the next job and: submit it (the
adapters' endpoints and bodies), poll its status until terminal (at once, then every
``POLL_S``: at zero latency the first poll sees it completed), download each image whole
and write it to ``images/``. No state, no ledger, no limiter, no retries, no checks: the
least work that produces the same files with the same requests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from benchmarks.workload import BENCH_KEY, Workload, WorkResult, build_jobs
from pipeline.jobs import Job
from pipeline.providers import _skills_video as skills_video
from pipeline.providers import _wavespeed as wavespeed

POLL_S = 0.05
_WS_DONE = {"completed": True, "failed": False}
_SV_DONE = {"completed": True, "succeeded": True, "failed": False, "canceled": False}


async def _wavespeed(session: aiohttp.ClientSession, base: str, job: Job) -> list[str] | None:
    path, body = wavespeed.request_for(job)
    async with session.post(base + path, json=body) as resp:
        task_id = (await resp.json())["data"]["id"]
    url = base + wavespeed.RESULT_PATH.format(id=task_id)
    while True:
        async with session.get(url) as resp:
            data: dict[str, Any] = (await resp.json())["data"]
        done = _WS_DONE.get(data["status"])
        if done is not None:
            return list(data["outputs"]) if done else None
        await anyio.sleep(POLL_S)


async def _skills(session: aiohttp.ClientSession, base: str, job: Job) -> list[str] | None:
    body = skills_video.request_for(job)
    async with session.post(base + skills_video.SUBMIT_PATH, json=body) as resp:
        task_id = (await resp.json())["id"]
    url = base + skills_video.POLL_PATH.format(id=task_id)
    while True:
        async with session.get(url) as resp:
            gen: dict[str, Any] = await resp.json()
        done = _SV_DONE.get(gen["status"].lower())
        if done is not None:
            return [img["url"] for img in gen["data"]["images"]] if done else None
        await anyio.sleep(POLL_S)


async def _worker(
    session: aiohttp.ClientSession, w: Workload, jobs: Iterator[Job], images: Path, tally: list[int]
) -> None:
    for job in jobs:  # a shared iterator: each job goes to exactly one worker
        run = _wavespeed if job.provider == "wavespeed" else _skills
        urls = await run(session, w.base_url, job)
        if urls is None:
            tally[1] += 1
            continue
        for k, url in enumerate(urls, start=1):
            async with session.get(url) as resp:
                data = await resp.read()
            (images / f"{job.id}-{k}.{w.output_format}").write_bytes(data)
        tally[0] += 1


async def run_floor(w: Workload) -> WorkResult:
    """Run the workload the bare way; returns its wall time and job counts."""
    images = Path(w.out_dir) / "images"
    images.mkdir(parents=True, exist_ok=True)
    jobs = build_jobs(w)
    tally = [0, 0]  # completed, failed
    start = time.perf_counter()
    headers = {"Authorization": f"Bearer {BENCH_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session, anyio.create_task_group() as tg:
        for provider in w.providers:
            mine = iter([j for j in jobs if j.provider == provider])
            for _ in range(w.max_concurrent):
                tg.start_soon(_worker, session, w, mine, images, tally)
    return WorkResult(seconds=time.perf_counter() - start, completed=tally[0], failed=tally[1])
