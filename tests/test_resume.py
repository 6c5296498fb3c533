"""Rerun = resume: failed jobs on request, edited manifests, nothing paid twice."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile, serve
from pipeline.runner import run_batch
from tests.scheduler_support import check_images_match_ledger, emulator_options, make_batch

pytestmark = pytest.mark.anyio


async def test_failed_jobs_rerun_only_with_retry_failed(tmp_path: Path) -> None:
    """Failed jobs stay failed on a plain rerun and run again with --retry-failed."""
    batch = make_batch(tmp_path, [("wavespeed", f"w{i}") for i in range(3)])
    failing = EmulatorConfig(latency_s=0, image_scale=0.0625, faults=FaultProfile(task_fail=1.0))
    async with serve(failing) as server:
        outcome, _, _ = await run_batch(batch, emulator_options(server))
    assert outcome.failed == 3
    healthy = EmulatorConfig(latency_s=0, image_scale=0.0625)
    async with serve(healthy) as server:
        outcome, _, _ = await run_batch(batch, emulator_options(server))
        assert outcome.failed == 3
        assert server.stats().wavespeed.requests == 0
        outcome, doc, _ = await run_batch(batch, emulator_options(server, retry_failed=True))
        assert outcome.completed == 3
        assert server.stats().wavespeed.submits == 3
    assert all(j["attempts"] == 2 for j in doc["jobs"])  # type: ignore[attr-defined]
    check_images_match_ledger(tmp_path)


async def test_edited_manifest_runs_only_the_changed_job(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """One prompt edited between runs: only it is submitted; the old entry stays listed."""
    batch = make_batch(tmp_path, [("wavespeed", "a"), ("skills_video", "b")])
    await run_batch(batch, emulator_options(emulator))
    edited_job = replace(batch.jobs[0], prompt="a, but blue")
    edited = replace(batch, jobs=(edited_job, batch.jobs[1]))
    outcome, doc, _ = await run_batch(edited, emulator_options(emulator))
    assert outcome.completed == 2
    stats = emulator.stats()
    assert stats.wavespeed.submits == 2
    assert stats.skills_video.submits == 1
    jobs: list[dict[str, Any]] = doc["jobs"]  # type: ignore[assignment]
    superseded = [j for j in jobs if "superseded" in j.get("flags", [])]
    assert [j["prompt"] for j in superseded] == ["a"]
    assert doc["totals"]["jobs"] == 2  # type: ignore[index]
    assert doc["totals"]["cost_usd"] == pytest.approx(2 * 0.028 + 20 * 0.001)  # type: ignore[index]
    check_images_match_ledger(tmp_path)
