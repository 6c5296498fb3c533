"""Figure 5: a 100k-job batch: plan it, resume it when complete, write its ledger.

The manifest is YAML naming a CSV of prompts, swept over 4 aspect ratios x 2 providers.
``pipeline plan`` and the resume (``pipeline run`` on a finished batch: it loads the
manifest, syncs the state, checks every image file and writes the ledger) run as the
real command in their own process, timed with their own peak RSS. The finished state is
built with ``pipeline.store._sqlite.SqliteStore`` directly: every job completed with one image,
a hard link to one small PNG, so the resume really stats 100k files. It has no ledger
and no stamp vouching for one (as after a run killed before its last write), so the
timed resume writes ledger.json. Provider URLs point at a closed port: a resume that
sent anything would fail the figure.

The resume then runs again, as this environment runs Python (with
``PYTHONDONTWRITEBYTECODE`` set, every module is compiled again in every process: about
0.3 s of imports on this path) and finding the ledger current (stamped by the first
resume: kept, not rewritten); and once more the same way with a bytecode cache, as an
installed tool runs (``PYTHONPYCACHEPREFIX`` in a temporary folder, filled by a first
run). The ledger figure times what ``pipeline run`` does to write it:
``ledger_document`` (totals, and each job's line spliced from the stored JSON) plus
the local folder's ``write_atomic``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from benchmarks.procs import ChildResult, python_module, run_child
from benchmarks.results import Figure, at_most, info
from pipeline.engine._resume import plan_work
from pipeline.engine._survey import survey
from pipeline.jobs import Batch, Job
from pipeline.ledger._document import LedgerHeader, encode_document, ledger_document
from pipeline.manifest import load_manifest
from pipeline.outputs._local import LocalFolder, write_text_atomic
from pipeline.providers.specs import SPECS
from pipeline.store._sqlite import SqliteStore

ASPECTS = ("1:1", "16:9", "4:3", "3:2")
PLAN_S, PLAN_MB, RESUME_S, LEDGER_S = 5.0, 300.0, 3.0, 2.0
# A valid 1x1 PNG: what each job's "image" is on disk.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)
CLOSED_PORT_URL = "http://127.0.0.1:9"
LINKS_PER_FILE = 50_000
WARM_IMPORTS = "import pipeline.cli._main, pipeline.manifest, pipeline.engine._runner"
MODELS = {name: spec.model for name, spec in SPECS.items()}
MARKS_AT_ONCE = 256  # concurrent mark_completed calls while building the state


def write_manifest(folder: Path, jobs: int) -> Path:
    """A YAML manifest (and its CSV) that expands to ``jobs`` jobs; returns its path."""
    per_prompt = len(ASPECTS) * len(SPECS)
    rows = -(-jobs // per_prompt)
    with (folder / "prompts.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "prompt"])
        for i in range(rows):
            out.writerow([f"p{i:06d}", f"Product photo {i} of a ceramic mug, soft daylight"])
    manifest = folder / "scale.yaml"
    manifest.write_text(
        "name: scale\n"
        "providers:\n"
        "  wavespeed: {requests_per_second: 10, max_concurrent: 10, tier: ultra}\n"
        "  skills_video: {requests_per_second: 10, max_concurrent: 10, usd_per_credit: 0.0014}\n"
        "sweep:\n"
        f"  aspect_ratio: {json.dumps(list(ASPECTS))}\n"
        f"  provider: {json.dumps(sorted(SPECS))}\n"
        "prompts_file: prompts.csv\n"
    )
    return manifest


async def build_completed_state(batch: Batch) -> tuple[float, float]:
    """Record every job of ``batch`` as completed, with its image file on disk.

    Returns the seconds spent in ``sync_batch`` and in ``mark_completed`` (for context;
    the marks run ``MARKS_AT_ONCE`` at a time, so they share commits).
    """
    root = Path(batch.output_dir)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    state = await SqliteStore.open(root / "state.db")

    async def complete(jobs: list[Job]) -> None:
        for job in jobs:
            name = f"{job.id}-1.png"
            image = {
                "path": f"images/{name}",
                "sha256": "0" * 64,
                "bytes": len(TINY_PNG),
                "width": 1,
                "height": 1,
                "format": "png",
                "source_url": "http://x/1.png",
            }
            await state.mark_completed(
                job.id,
                at="2026-01-01T00:00:00Z",
                latency_s=1.0,
                images=[image],
                cost={"usd": 0.028, "credits": None, "basis": "price_table"},
                usage={},
            )

    try:
        t0 = time.perf_counter()
        await state.sync_batch(batch.jobs, MODELS)
        t1 = time.perf_counter()
        for i, job in enumerate(batch.jobs):
            if i % LINKS_PER_FILE == 0:  # a file system caps the links to one inode
                source = root / f"tiny-{i}.png"
                source.write_bytes(TINY_PNG)
            os.link(source, images / f"{job.id}-1.png")
        async with anyio.create_task_group() as tg:
            for k in range(MARKS_AT_ONCE):
                tg.start_soon(complete, list(batch.jobs[k::MARKS_AT_ONCE]))
        t2 = time.perf_counter()
    finally:
        await state.close()
    return t1 - t0, t2 - t1


async def time_ledger(batch: Batch) -> dict[str, float]:
    """Seconds to read the records, build the ledger and write ledger.json."""
    state = await SqliteStore.open(Path(batch.output_dir) / "state.db")
    try:
        t0 = time.perf_counter()
        records = await state.records()
        counters = await state.counters()
        t1 = time.perf_counter()
        header = LedgerHeader(batch.name, batch.manifest_path, "t", "t", True)
        doc = ledger_document(header, records, counters)
        t2 = time.perf_counter()
        path = Path(batch.output_dir) / "ledger-bench.json"
        write_text_atomic(path, encode_document(doc))
        t3 = time.perf_counter()
        size = path.stat().st_size
    finally:
        await state.close()
    return {"read_s": t1 - t0, "build_s": t2 - t1, "write_s": t3 - t2, "bytes": size}


def resume_breakdown(manifest: Path, out: Path) -> dict[str, float]:
    """In-process timings of the resume's main steps (context for the CLI figure): the
    manifest, the survey of the state (sync, then the completed jobs checked a chunk at
    a time), the plan."""
    t0 = time.perf_counter()
    batch = load_manifest(str(manifest), out=str(out))
    timings: dict[str, float] = {"load_manifest_s": time.perf_counter() - t0}

    async def resume() -> int:
        state = await SqliteStore.open(out / "state.db")
        try:
            t = time.perf_counter()
            found = await survey(state, LocalFolder(out), batch, MODELS)
            timings["survey_s"] = time.perf_counter() - t
        finally:
            await state.close()
        t = time.perf_counter()
        work = plan_work(batch, found.records, found.broken, retry_failed=False, done=found.done)
        timings["plan_work_s"] = time.perf_counter() - t
        return len(work)

    timings["left_to_do"] = anyio.run(resume, backend="asyncio")
    return timings


def run_resume(manifest: Path, out: Path, planned: int, env: dict[str, str]) -> ChildResult:
    """``pipeline run`` on the finished batch. Raises ``RuntimeError`` unless it found
    every job completed."""
    resume = run_child(
        python_module("pipeline", "run", str(manifest), "--out", str(out), "--json", "-q"),
        env=env,
    )
    summary: dict[str, Any] = json.loads(resume.stdout) if resume.stdout.strip() else {}
    if resume.exit_code != 0 or summary.get("totals", {}).get("completed") != planned:
        raise RuntimeError(f"resume did not find a finished batch:\n{resume.stderr[-3000:]}")
    return resume


def measure(
    jobs: int,
    log: Callable[[str], None],
    number: int = 5,
    bounds: tuple[float, float, float, float] = (PLAN_S, PLAN_MB, RESUME_S, LEDGER_S),
) -> list[Figure]:
    """Figure 5 (or ``number``: the same at another size): plan time and RSS, resume
    time, ledger write time at ``jobs`` jobs."""
    n = f"{number}."
    key = "" if number == 5 else f"_{number}"
    plan_bound, plan_mb, resume_bound, ledger_bound = bounds
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = write_manifest(folder, jobs)
        plan = run_child(python_module("pipeline", "plan", str(manifest), "--json"))
        if plan.exit_code != 0:
            raise RuntimeError(f"pipeline plan failed:\n{plan.stderr[-3000:]}")
        planned = json.loads(plan.stdout)["totals"]["jobs"]
        log(f"  plan: {planned:,} jobs in {plan.wall_s:.2f} s, peak RSS {plan.max_rss_mb:.0f} MB")

        out = folder / "out"
        batch = load_manifest(str(manifest), out=str(out))
        sync_s, mark_s = anyio.run(build_completed_state, batch, backend="asyncio")
        log(
            f"  built a completed state: sync_jobs {sync_s:.2f} s, "
            f"{len(batch.jobs):,} x mark_completed {mark_s:.2f} s"
        )
        env = {f"{s.env_key}": "bench-key" for s in SPECS.values()}
        env |= {f"{s.env_base_url}": CLOSED_PORT_URL for s in SPECS.values()}
        resume = run_resume(manifest, out, planned, env)
        log(
            f"  resume (pipeline run, all completed): {resume.wall_s:.2f} s, "
            f"peak RSS {resume.max_rss_mb:.0f} MB"
        )
        again = run_resume(manifest, out, planned, env)
        log(f"  again (the ledger current: kept): {again.wall_s:.2f} s")
        cached_env = env | {
            "PYTHONDONTWRITEBYTECODE": "",
            "PYTHONPYCACHEPREFIX": str(folder / "pycache"),
        }
        warm = run_child([sys.executable, "-c", WARM_IMPORTS], env=cached_env)
        if warm.exit_code != 0:
            raise RuntimeError(f"could not fill the bytecode cache:\n{warm.stderr[-3000:]}")
        cached = run_resume(manifest, out, planned, cached_env)
        log(f"  again, with a bytecode cache: {cached.wall_s:.2f} s")
        steps = resume_breakdown(manifest, out)
        log("  resume steps in-process: " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()))
        ledger = anyio.run(time_ledger, batch, backend="asyncio")
        ledger_s = ledger["build_s"] + ledger["write_s"]
        log(
            f"  ledger: read {ledger['read_s']:.2f} s, build {ledger['build_s']:.2f} s, "
            f"write {ledger['write_s']:.2f} s ({ledger['bytes'] / 1e6:.0f} MB)"
        )
    return [
        at_most(
            "plan_s" + key, f"{n} pipeline plan, {planned:,} jobs", plan.wall_s, "s", plan_bound
        ),
        at_most("plan_rss_mb" + key, f"{n} pipeline plan peak RSS", plan.max_rss_mb, "MB", plan_mb),
        at_most(
            "resume_s" + key,
            f"{n} resume {planned:,} completed jobs",
            resume.wall_s,
            "s",
            resume_bound,
            details={
                "steps": steps,
                "max_rss_mb": resume.max_rss_mb,
                "setup_sync_jobs_s": sync_s,
                "setup_mark_completed_ms_each": 1000 * mark_s / len(batch.jobs),
            },
        ),
        info("resume_rss_mb" + key, f"{n} resume peak RSS", resume.max_rss_mb, "MB"),
        info("resume_again_s" + key, f"{n} resume again, ledger kept", again.wall_s, "s"),
        info("resume_cached_s" + key, f"{n} same, with a bytecode cache", cached.wall_s, "s"),
        at_most(
            "ledger_s" + key,
            f"{n} ledger.json for {planned:,} jobs",
            ledger_s,
            "s",
            ledger_bound,
            details=ledger,
        ),
        info(
            "ledger_with_read_s" + key,
            f"{n} same, incl. reading the state",
            ledger_s + ledger["read_s"],
            "s",
        ),
    ]
