"""Whole runs against the real emulator over HTTP: completion, limits, costs, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile, serve
from pipeline.engine._runner import exit_code, run_batch
from pipeline.jobs import Budget
from tests.scheduler_support import check_images_match_ledger, emulator_options, make_batch

pytestmark = pytest.mark.anyio


async def test_batch_completes_with_verified_images_and_costs(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock
) -> None:
    """Both providers: every job completes, files match the ledger, costs follow the rules."""
    prompts = [("wavespeed", f"cat {i}") for i in range(6)]
    prompts += [("skills_video", f"dog {i}") for i in range(6)]
    batch = make_batch(tmp_path, prompts, n=2)
    outcome, _doc, interrupted = await run_batch(batch, emulator_options(emulator, clock=clock))
    assert (outcome.completed, outcome.failed, outcome.pending) == (12, 0, 0)
    assert exit_code(outcome, interrupted) == 0
    ledger = check_images_match_ledger(tmp_path)
    assert ledger["finished"] is True
    assert ledger["totals"]["images"] == 24
    ws = ledger["providers"]["wavespeed"]
    assert ws["cost_usd"] == pytest.approx(6 * 2 * 0.028)
    sv = ledger["providers"]["skills_video"]
    assert sv["credits"] == 6 * 2 * 20
    assert sv["cost_usd"] == pytest.approx(6 * 2 * 20 * 0.001)
    for job in ledger["jobs"]:
        assert job["cost"]["basis"] == (
            "price_table" if job["provider"] == "wavespeed" else "reported"
        )
        assert job["remote_id"]
        assert job["attempts"] == 1
    stats = emulator.stats()
    assert stats.wavespeed.submits == 6
    assert stats.skills_video.submits == 6
    assert stats.wavespeed.duplicate_submits == 0
    assert stats.skills_video.duplicate_submits == 0
    # The ledger's request counts are the requests the emulator saw.
    assert ws["requests"] == stats.wavespeed.requests


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(latency_s=0.1, image_scale=0.125)])
async def test_four_k_costs_double_on_wavespeed(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock
) -> None:
    """A 4k WaveSpeed image costs $0.056."""
    batch = make_batch(tmp_path, [("wavespeed", "big")], resolution="4k")
    _, doc, _ = await run_batch(batch, emulator_options(emulator, clock=clock))
    assert doc["totals"]["cost_usd"] == pytest.approx(0.056)  # type: ignore[index]


async def test_tasks_in_flight_never_exceed_the_limit(tmp_path: Path, clock: VirtualClock) -> None:
    """With max_concurrent 3, the provider never sees more than 3 unfinished tasks."""
    config = EmulatorConfig(latency_s=0.15, latency_jitter=0.5, image_scale=0.0625)
    async with serve(config, clock=clock) as server:
        batch = make_batch(tmp_path, [("wavespeed", f"x{i}") for i in range(15)], max_concurrent=3)
        outcome, _, _ = await run_batch(batch, emulator_options(server, clock=clock))
        assert outcome.completed == 15
        assert server.stats().wavespeed.peak_in_flight == 3


async def test_rate_limit_is_respected(tmp_path: Path, clock: VirtualClock) -> None:
    """A server allowing 10 requests/s answers no 429 to a lane configured at 10/s."""
    config = EmulatorConfig(latency_s=0.05, image_scale=0.0625, faults=FaultProfile(max_rps=10))
    async with serve(config, clock=clock) as server:
        batch = make_batch(
            tmp_path, [("skills_video", f"x{i}") for i in range(12)], rps=10, max_concurrent=6
        )
        outcome, _, _ = await run_batch(batch, emulator_options(server, clock=clock))
        assert outcome.completed == 12
        assert server.stats().skills_video.rate_limited == 0


async def test_failed_task_is_recorded_with_its_code(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock
) -> None:
    """A task that ends failed gives exit 1 and the provider's code in the ledger."""
    batch = make_batch(tmp_path, [("wavespeed", "fine"), ("skills_video", "bad [[fail]]")])
    outcome, doc, interrupted = await run_batch(batch, emulator_options(emulator, clock=clock))
    assert (outcome.completed, outcome.failed) == (1, 1)
    assert exit_code(outcome, interrupted) == 1
    failed = [j for j in doc["jobs"] if j["status"] == "failed"]  # type: ignore[attr-defined]
    assert failed[0]["error"]["code"] == "IMAGE_GENERATION_FAILED"
    assert failed[0]["images"] == []


@pytest.mark.parametrize(
    "emulator_config",
    [
        EmulatorConfig(
            latency_s=0.0,
            image_scale=0.0625,
            api_keys={"wavespeed": "right", "skills_video": "test-key"},
        )
    ],
)
async def test_rejected_key_stops_only_that_lane(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock
) -> None:
    """A 401 stops the WaveSpeed lane after one request; skills.video carries on; exit 3."""
    prompts = [("wavespeed", f"w{i}") for i in range(5)] + [("skills_video", "s")]
    batch = make_batch(tmp_path, prompts, max_concurrent=1)
    outcome, doc, interrupted = await run_batch(batch, emulator_options(emulator, clock=clock))
    assert exit_code(outcome, interrupted) == 3
    assert "wavespeed" in outcome.lane_stops
    codes = {j["error"]["code"] for j in doc["jobs"] if j["provider"] == "wavespeed"}  # type: ignore[attr-defined]
    assert codes == {"auth"}
    assert emulator.stats().wavespeed.requests == 1
    assert emulator.stats().skills_video.submits == 1


async def test_budget_stops_submitting_and_is_never_exceeded(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock
) -> None:
    """A $0.10 cap admits three $0.028 jobs of ten; the rest stay pending; exit 3."""
    batch = make_batch(
        tmp_path, [("wavespeed", f"b{i}") for i in range(10)], budget=Budget(max_usd=0.10)
    )
    outcome, doc, interrupted = await run_batch(batch, emulator_options(emulator, clock=clock))
    assert exit_code(outcome, interrupted) == 3
    assert outcome.completed == 3
    assert outcome.pending == 7
    assert doc["totals"]["cost_usd"] <= 0.10  # type: ignore[index]
    assert emulator.stats().wavespeed.submits == 3


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(latency_s=0.0, image_scale=0.0625)])
async def test_stuck_task_times_out(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock
) -> None:
    """A task that never finishes fails with code 'timeout' at the job deadline."""
    batch = make_batch(tmp_path, [("wavespeed", "never [[stuck]]")], job_timeout_s=0.5)
    outcome, doc, _ = await run_batch(batch, emulator_options(emulator, clock=clock))
    assert outcome.failed == 1
    assert doc["jobs"][0]["error"]["code"] == "timeout"  # type: ignore[index]


async def test_rerun_resumes_without_resubmitting(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock
) -> None:
    """A second run of a finished batch sends nothing; a deleted image is fetched again."""
    batch = make_batch(tmp_path, [("wavespeed", "a"), ("skills_video", "b")])
    await run_batch(batch, emulator_options(emulator, clock=clock))
    before = emulator.stats()
    outcome, _, _ = await run_batch(batch, emulator_options(emulator, clock=clock))
    assert outcome.completed == 2
    after = emulator.stats()
    assert after.wavespeed.requests == before.wavespeed.requests
    assert after.skills_video.requests == before.skills_video.requests
    (tmp_path / "images" / "job0-1.png").unlink()
    outcome, doc, _ = await run_batch(batch, emulator_options(emulator, clock=clock))
    assert outcome.completed == 2
    assert emulator.stats().wavespeed.submits == 1  # polled again by remote id, not resubmitted
    check_images_match_ledger(tmp_path)
    job0 = next(j for j in doc["jobs"] if j["id"] == "job0")  # type: ignore[attr-defined]
    assert "redownloaded" in job0["flags"]
