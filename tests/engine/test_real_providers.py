"""Providers as they really behave, whole runs in virtual time against the emulator: lost
submit replies, expiring image URLs, retention, 202s, error-body shapes, cancelled and
timed-out tasks, permission problems and images-per-minute limits. Every case: no task
paid twice, and the ledger's spend equal to what the provider charged."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile, serve
from pipeline.engine._runner import exit_code, run_batch
from pipeline.jobs import ProviderSettings
from tests.scheduler_support import (
    PROVIDERS,
    check_images_match_ledger,
    emulator_options,
    make_batch,
)

pytestmark = pytest.mark.anyio

DAY = 86400.0


def _config(faults: FaultProfile, **kw: Any) -> EmulatorConfig:
    kw.setdefault("latency_s", 0.5)
    kw.setdefault("latency_jitter", 0.5)
    return EmulatorConfig(image_scale=0.0625, seed=5, faults=faults, **kw)


def _created(server: EmulatorServer) -> Counter[tuple[str, str]]:
    state = server.state
    views = [state.task_view(t) for t in state.store.tasks(None)]
    return Counter((v["provider"], v["input"]["prompt"]) for v in views)


def _jobs(doc: dict[str, object]) -> Sequence[dict[str, Any]]:
    return cast("Sequence[dict[str, Any]]", doc["jobs"])


def _check_spend(doc: dict[str, object], server: EmulatorServer) -> None:
    """The ledger's spend is what the provider charged (possible duplicates included)."""
    stats = server.stats()
    providers = cast("dict[str, dict[str, float]]", doc["providers"])
    if "wavespeed" in providers:
        assert providers["wavespeed"]["cost_usd"] == pytest.approx(stats.wavespeed.charged)
    if "skills_video" in providers:
        assert providers["skills_video"]["credits"] == pytest.approx(stats.skills_video.charged)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_lost_submit_replies_are_adopted_never_paid_twice(
    tmp_path: Path, provider: str, clock: VirtualClock
) -> None:
    """A tenth of the submits create (and charge) their task but lose the reply; tasks take
    3-6 s. Every lost task is found again through the provider's listing and adopted:
    every job completes, no task is created twice, and spend equals the charges."""
    faults = FaultProfile(lost_reply=0.1)
    async with serve(_config(faults, latency_s=4.5, latency_jitter=1 / 3), clock=clock) as server:
        batch = make_batch(tmp_path, [(provider, f"lost {i}") for i in range(30)], max_concurrent=4)
        outcome, doc, _ = await run_batch(batch, emulator_options(server, clock=clock))
        created = _created(server)
        _check_spend(doc, server)
    assert (outcome.completed, outcome.failed, outcome.pending) == (30, 0, 0)
    assert set(created.values()) == {1}
    reconciled = [j for j in _jobs(doc) if "reconciled" in j.get("flags", [])]
    assert len(reconciled) == 3  # 30 submits, one in ten lost
    assert not [j for j in _jobs(doc) if "possible_duplicate" in j.get("flags", [])]
    check_images_match_ledger(tmp_path)


async def test_expiring_urls_and_cut_downloads_are_fetched_fresh(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """Signed image URLs expire 0.5 s after the poll that issued them and every image's
    first download is cut short: the retries fetch fresh URLs from a new poll, never a
    new task, and every paid job completes."""
    faults = FaultProfile(url_ttl_s=0.5, truncate_first_download=True)
    async with serve(_config(faults), clock=clock) as server:
        prompts = [(p, f"fresh {p} {i}") for p in PROVIDERS for i in range(10)]
        batch = make_batch(tmp_path, prompts, n=2, max_concurrent=3)
        outcome, doc, _ = await run_batch(batch, emulator_options(server, clock=clock))
        stats = server.stats()
        _check_spend(doc, server)
    assert (outcome.completed, outcome.failed) == (20, 0)
    assert stats.wavespeed.submits + stats.skills_video.submits == 20
    assert stats.wavespeed.downloads + stats.skills_video.downloads > 40  # first ones cut
    check_images_match_ledger(tmp_path)


async def test_outputs_past_retention_fail_expired(tmp_path: Path, clock: VirtualClock) -> None:
    """A finished WaveSpeed batch whose images are gone from disk, rerun eight days later:
    the provider has deleted the task and its outputs, so the job fails with code
    ``expired`` and a message that says so; nothing is submitted again."""
    async with serve(_config(FaultProfile()), clock=clock) as server:
        batch = make_batch(tmp_path, [("wavespeed", "kept a week")])
        outcome, _, _ = await run_batch(batch, emulator_options(server, clock=clock))
        assert outcome.completed == 1
        for image in (tmp_path / "images").iterdir():
            os.remove(image)
        clock.advance(8 * DAY)
        outcome, doc, interrupted = await run_batch(batch, emulator_options(server, clock=clock))
        submits = server.stats().wavespeed.submits
    assert (outcome.completed, outcome.failed) == (0, 1)
    assert exit_code(outcome, interrupted) == 1
    (job,) = _jobs(doc)
    assert job["error"]["code"] == "expired"
    assert "deleted" in job["error"]["message"]
    assert submits == 1


@pytest.mark.parametrize(
    "faults",
    [
        FaultProfile(accepted_202=0.5, submit_5xx=0.1, error_shape="split"),
        FaultProfile(accepted_202=0.5, submit_5xx=0.1, error_shape="legacy"),
        FaultProfile(submit_5xx=0.1, poll_5xx=0.2, error_shape="cli"),
    ],
    ids=["202-split", "202-legacy", "cli"],
)
async def test_accepted_answers_and_every_error_shape(
    tmp_path: Path, faults: FaultProfile, clock: VirtualClock
) -> None:
    """202 Accepted is a created task; 5xx answers in each documented body shape are
    retried: every job completes once."""
    async with serve(_config(faults), clock=clock) as server:
        prompts = [(p, f"shape {p} {i}") for p in PROVIDERS for i in range(8)]
        batch = make_batch(tmp_path, prompts, max_concurrent=3)
        outcome, doc, _ = await run_batch(batch, emulator_options(server, clock=clock))
        created = _created(server)
        _check_spend(doc, server)
    assert (outcome.completed, outcome.failed) == (16, 0)
    assert set(created.values()) == {1}


async def test_cancelled_and_timed_out_tasks_fail_with_their_codes(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """Tasks the provider cancels or times out end failed with a code saying so; the
    others complete."""
    faults = FaultProfile(task_cancel=0.25, task_timeout=0.25)
    async with serve(_config(faults), clock=clock) as server:
        prompts = [(p, f"ends {p} {i}") for p in PROVIDERS for i in range(10)]
        batch = make_batch(tmp_path, prompts, max_concurrent=3)
        outcome, doc, _ = await run_batch(batch, emulator_options(server, clock=clock))
    codes = Counter(j["error"]["code"] for j in _jobs(doc) if j["status"] == "failed")
    assert outcome.completed + outcome.failed == 20
    assert outcome.failed > 0
    assert outcome.completed > 0
    assert set(codes) <= {"cancelled", "timeout", "CANCELED", "IMAGE_GENERATION_TIMEOUT"}


async def test_a_permission_problem_stops_only_that_lane(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """A 403 saying the key's role may not use the model stops WaveSpeed's lane (code
    auth, the provider's permission_denied kept); skills.video carries on; exit 3."""
    config = EmulatorConfig(
        latency_s=0.2,
        image_scale=0.0625,
        provider_faults={"wavespeed": FaultProfile(permission_denied=1.0)},
    )
    async with serve(config, clock=clock) as server:
        prompts = [("wavespeed", f"w{i}") for i in range(4)] + [("skills_video", "s")]
        batch = make_batch(tmp_path, prompts, max_concurrent=1)
        outcome, doc, interrupted = await run_batch(batch, emulator_options(server, clock=clock))
    assert exit_code(outcome, interrupted) == 3
    ws = [j for j in _jobs(doc) if j["provider"] == "wavespeed"]
    assert {j["error"]["code"] for j in ws} == {"auth"}
    assert any(j["error"].get("provider_code") == "permission_denied" for j in ws)
    assert outcome.completed == 1


async def test_images_per_minute_hold_at_the_stated_limit(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """A server allowing 60 images a minute and jobs of two images, the manifest stating
    the same limit: no 429, every job completes, at the pace the limit sets."""
    config = EmulatorConfig(
        latency_s=0.2, image_scale=0.0625, faults=FaultProfile(images_per_minute=60)
    )
    async with serve(config, clock=clock) as server:
        batch = make_batch(tmp_path, [("wavespeed", f"ipm {i}") for i in range(20)], n=2)
        settings = ProviderSettings(
            requests_per_second=50, max_concurrent=4, job_timeout_s=60, images_per_minute=60
        )
        batch = replace(batch, providers={"wavespeed": settings})
        start = clock.now()
        outcome, _, _ = await run_batch(batch, emulator_options(server, clock=clock))
        elapsed = clock.now() - start
        stats = server.stats().wavespeed
    assert outcome.completed == 20
    assert stats.rate_limited == 0
    assert elapsed >= 38  # 40 images at one a second (the first goes at once)
