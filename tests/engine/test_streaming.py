"""skills.video's event stream (``providers.skills_video.stream: true``), whole runs in
virtual time against the emulator: a streamed task is known finished without a poll; a
stream that drops after naming its task is polled for the rest, never submitted again; a
stream lost before its first frame is reconciled like any lost reply."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, FaultProfile, serve
from pipeline.engine._runner import run_batch
from pipeline.jobs import Batch
from tests.scheduler_support import check_images_match_ledger, emulator_options, make_batch

pytestmark = pytest.mark.anyio


def _config(faults: FaultProfile | None = None) -> EmulatorConfig:
    return EmulatorConfig(
        image_scale=0.0625, seed=9, faults=faults or FaultProfile(), latency_s=4.0
    )


def _batch(out: Path, jobs: int, *, stream: bool) -> Batch:
    batch = make_batch(out, [("skills_video", f"streamed {i}") for i in range(jobs)])
    settings = replace(batch.providers["skills_video"], stream=stream)
    return replace(batch, providers={**batch.providers, "skills_video": settings})


def _flags(doc: dict[str, object], flag: str) -> list[dict[str, Any]]:
    jobs = cast("list[dict[str, Any]]", doc["jobs"])
    return [j for j in jobs if flag in j.get("flags", [])]


async def test_streamed_tasks_finish_without_a_poll(tmp_path: Path, clock: VirtualClock) -> None:
    """Twelve jobs streamed: every one completes, the provider saw twelve submits and not
    one poll, and each task's end was shown the moment it happened."""
    async with serve(_config(), clock=clock) as server:
        outcome, doc, _ = await run_batch(
            _batch(tmp_path, 12, stream=True), emulator_options(server, clock=clock)
        )
        stats = server.stats().skills_video
    assert (outcome.completed, outcome.failed) == (12, 0)
    assert (stats.submits, stats.polls) == (12, 0)
    assert (stats.noticed, stats.notice_lag_s) == (12, 0.0)
    assert cast("dict[str, dict[str, float]]", doc["providers"])["skills_video"][
        "credits"
    ] == pytest.approx(stats.charged)
    check_images_match_ledger(tmp_path)


async def test_polling_is_what_streaming_saves(tmp_path: Path, clock: VirtualClock) -> None:
    """The same batch polled: the same results, at the price of polls and of ends noticed
    later (what the streamed run saves)."""
    async with serve(_config(), clock=clock) as server:
        outcome, _, _ = await run_batch(
            _batch(tmp_path, 12, stream=False), emulator_options(server, clock=clock)
        )
        stats = server.stats().skills_video
    assert outcome.completed == 12
    assert stats.submits == 12
    assert stats.polls >= 12
    assert stats.noticed == 12
    assert stats.notice_lag_s > 0


async def test_a_dropped_stream_is_polled_never_resubmitted(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """Every stream is cut right after its first frame (the task is named, and paid):
    each task is polled to its end instead, no job is submitted twice, and spend equals
    the charges."""
    async with serve(_config(FaultProfile(sse_drop=1.0)), clock=clock) as server:
        outcome, doc, _ = await run_batch(
            _batch(tmp_path, 8, stream=True), emulator_options(server, clock=clock)
        )
        stats = server.stats().skills_video
    assert (outcome.completed, outcome.failed) == (8, 0)
    assert stats.submits == 8
    assert stats.duplicate_submits == 0
    assert stats.polls >= 8
    assert not _flags(doc, "possible_duplicate")
    assert cast("dict[str, dict[str, float]]", doc["providers"])["skills_video"][
        "credits"
    ] == pytest.approx(stats.charged)
    check_images_match_ledger(tmp_path)


async def test_a_stream_lost_before_its_first_frame_is_reconciled(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """A fifth of the streamed submits lose the connection before the first frame (the
    task exists, its id unknown): the running list finds each one, it is adopted, and no
    task is paid twice."""
    async with serve(_config(FaultProfile(lost_reply=0.2)), clock=clock) as server:
        outcome, doc, _ = await run_batch(
            _batch(tmp_path, 20, stream=True), emulator_options(server, clock=clock)
        )
        stats = server.stats().skills_video
    assert (outcome.completed, outcome.failed) == (20, 0)
    assert stats.submits == 20
    assert _flags(doc, "reconciled")
    assert not _flags(doc, "possible_duplicate")
    check_images_match_ledger(tmp_path)
