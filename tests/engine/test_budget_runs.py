"""Budgets on real runs with random prices: spend never passes the cap."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, FaultProfile, serve
from pipeline.engine._runner import exit_code, run_batch
from pipeline.jobs import Budget
from tests.scheduler_support import emulator_options, make_batch

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("seed", "price", "n", "cap"),
    [(0, 80.0, 2, 300.0)] + [(seed, None, None, None) for seed in (1, 2, 3, 4)],
)
async def test_random_prices_never_exceed_the_cap(
    tmp_path: Path,
    seed: int,
    price: float | None,
    n: int | None,
    cap: float | None,
    clock: VirtualClock,
) -> None:
    """skills.video charging 0.5x-4x the documented price, a random cap: never exceeded.

    The first case is the trap: four jobs at the 20-credit estimate fit under the cap,
    but each really costs four times that."""
    rng = random.Random(seed)
    per_image = price or rng.uniform(10, 80)  # the estimate assumes 20 credits per 1K image
    config = EmulatorConfig(
        latency_s=0.05,
        image_scale=0.0625,
        credits_per_image={"1K": per_image, "2K": 2 * per_image},
        faults=FaultProfile(submit_5xx=0.1, poll_5xx=0.1),
    )
    cap = cap or rng.uniform(50, 600)
    prompts = [("skills_video", f"p{i}") for i in range(20)]
    async with serve(config, clock=clock) as server:
        batch = make_batch(
            tmp_path, prompts, n=rng.randint(1, 3), max_concurrent=4, budget=Budget(max_credits=cap)
        )
        outcome, doc, interrupted = await run_batch(batch, emulator_options(server, clock=clock))
        charged = server.stats().skills_video.charged
    assert charged <= cap + 1e-6
    assert doc["totals"]["credits"] <= cap + 1e-6  # type: ignore[index]
    if outcome.pending:
        assert exit_code(outcome, interrupted) == 3


@pytest.mark.parametrize("seed", [5, 6])
async def test_usd_cap_over_both_providers(tmp_path: Path, seed: int, clock: VirtualClock) -> None:
    """Mixed providers, resolutions and image counts under a random dollar cap."""
    rng = random.Random(seed)
    config = EmulatorConfig(latency_s=0.05, image_scale=0.03125)
    cap = rng.uniform(0.1, 1.0)
    prompts = [(rng.choice(["wavespeed", "skills_video"]), f"p{i}") for i in range(24)]
    async with serve(config, clock=clock) as server:
        batch = make_batch(tmp_path, prompts, n=rng.randint(1, 4), budget=Budget(max_usd=cap))
        outcome, doc, _ = await run_batch(batch, emulator_options(server, clock=clock))
        stats = server.stats()
    spent = stats.wavespeed.charged + stats.skills_video.charged * 0.001
    assert spent <= cap + 1e-9
    assert doc["totals"]["cost_usd"] <= cap + 1e-9  # type: ignore[index]
    assert outcome.completed >= 1
