"""Provider-side limits (5 requests/s, 3 tasks in flight): right config, and 3x too high."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, FaultProfile, serve
from pipeline.engine._runner import run_batch
from tests.scheduler_support import emulator_options, make_batch

pytestmark = pytest.mark.anyio

LIMITED = EmulatorConfig(
    latency_s=0.3,
    latency_jitter=0.3,
    image_scale=0.0625,
    faults=FaultProfile(max_rps=5, max_concurrent=3),
)


@pytest.mark.parametrize("provider", ["wavespeed", "skills_video"])
async def test_true_limits_give_zero_429s(
    tmp_path: Path, provider: str, clock: VirtualClock
) -> None:
    """Configured at the server's own limits, no request is refused."""
    async with serve(LIMITED, clock=clock) as server:
        batch = make_batch(
            tmp_path, [(provider, f"p{i}") for i in range(20)], rps=5, max_concurrent=3
        )
        outcome, _, _ = await run_batch(batch, emulator_options(server, clock=clock))
        stats = server.stats().for_provider(provider)
    assert outcome.completed == 20
    assert stats.rate_limited == 0
    assert stats.peak_open_tasks <= 3


@pytest.mark.parametrize("provider", ["wavespeed", "skills_video"])
async def test_limits_three_times_too_high_adapt(
    tmp_path: Path, provider: str, clock: VirtualClock
) -> None:
    """Configured 3x too high: at most 15% of requests get 429, and every job completes."""
    async with serve(LIMITED, clock=clock) as server:
        batch = make_batch(
            tmp_path,
            [(provider, f"p{i}") for i in range(30)],
            rps=15,
            max_concurrent=9,
            job_timeout_s=120,
        )
        outcome, doc, _ = await run_batch(batch, emulator_options(server, clock=clock))
        stats = server.stats().for_provider(provider)
    assert outcome.completed == 30
    assert stats.rate_limited <= 0.15 * stats.requests
    assert doc["providers"][provider]["rate_limited"] == stats.rate_limited  # type: ignore[index]
