"""Rerun = resume: failed jobs on request, edited manifests, nothing paid twice."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile, serve
from pipeline.engine._resume import WorkItem, plan_work
from pipeline.engine._runner import run_batch
from pipeline.engine._survey import survey
from pipeline.jobs import Batch
from pipeline.outputs._local import LocalFolder, files_missing
from pipeline.store import image_sizes, spent, tally_records
from pipeline.store._records import JobRecord
from pipeline.store._sqlite import SqliteStore
from tests.scheduler_support import check_images_match_ledger, emulator_options, make_batch

pytestmark = pytest.mark.anyio


async def test_failed_jobs_rerun_only_with_retry_failed(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """Failed jobs stay failed on a plain rerun and run again with --retry-failed."""
    batch = make_batch(tmp_path, [("wavespeed", f"w{i}") for i in range(3)])
    failing = EmulatorConfig(latency_s=0, image_scale=0.0625, faults=FaultProfile(task_fail=1.0))
    async with serve(failing, clock=clock) as server:
        outcome, _, _ = await run_batch(batch, emulator_options(server, clock=clock))
    assert outcome.failed == 3
    healthy = EmulatorConfig(latency_s=0, image_scale=0.0625)
    async with serve(healthy, clock=clock) as server:
        outcome, _, _ = await run_batch(batch, emulator_options(server, clock=clock))
        assert outcome.failed == 3
        assert server.stats().wavespeed.requests == 0
        outcome, doc, _ = await run_batch(
            batch, emulator_options(server, clock=clock, retry_failed=True)
        )
        assert outcome.completed == 3
        assert server.stats().wavespeed.submits == 3
    assert all(j["attempts"] == 2 for j in doc["jobs"])  # type: ignore[attr-defined]
    check_images_match_ledger(tmp_path)


async def test_edited_manifest_runs_only_the_changed_job(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock
) -> None:
    """One prompt edited between runs: only it is submitted; the old entry stays listed."""
    batch = make_batch(tmp_path, [("wavespeed", "a"), ("skills_video", "b")])
    await run_batch(batch, emulator_options(emulator, clock=clock))
    edited_job = replace(batch.jobs[0], prompt="a, but blue")
    edited = replace(batch, jobs=(edited_job, batch.jobs[1]))
    outcome, doc, _ = await run_batch(edited, emulator_options(emulator, clock=clock))
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


async def _completed_state(out: Path, images_per_job: list[int]) -> dict[str, JobRecord]:
    """A state whose jobs (job0, job1, ...) are completed, each with that many image files
    on disk (k bytes for the k-th image), remote ids for even jobs only; its records."""
    batch = make_batch(out, [("wavespeed", f"p{i}") for i in range(len(images_per_job))])
    (out / "images").mkdir(parents=True)
    state = await SqliteStore.open(out / "state.db")
    await state.sync_batch(batch.jobs, {"wavespeed": "m"})
    for i, count in enumerate(images_per_job):
        images = []
        for k in range(1, count + 1):
            (out / "images" / f"job{i}-{k}.png").write_bytes(b"x" * k)
            images.append({"path": f"images/job{i}-{k}.png", "sha256": "0", "bytes": k})
        if i % 2 == 0:
            await state.mark_submitted(f"job{i}", f"remote{i}", "t", {})
        await state.mark_completed(
            f"job{i}", at="t", latency_s=1.0, images=images, cost={"usd": 0.0}, usage={}
        )
    records = {r.id: r for r in await state.records()}
    await state.close()
    return records


async def _work(batch: Batch, records: dict[str, JobRecord]) -> list[WorkItem]:
    """What a run would do: the survey of its state (``records``: what it holds), then
    the plan; the plan of the whole records, with the files checked as a list, agrees."""
    out = Path(batch.output_dir)
    state = await SqliteStore.open(out / "state.db")
    try:
        found = await survey(state, LocalFolder(out), batch, {"wavespeed": "m"})
    finally:
        await state.close()
    work = plan_work(batch, found.records, found.broken, retry_failed=False, done=found.done)
    completed = [
        (r.id, image_sizes(r.row.images_json)) for r in records.values() if r.status == "completed"
    ]
    broken = await LocalFolder(out).missing(completed)
    assert found.broken == broken
    assert work == plan_work(batch, records, broken, retry_failed=False)
    return work


async def test_the_survey_counts_and_claims_what_the_state_holds(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """The survey holds records only of jobs neither new nor done, yet its counts, its
    costs and its task ids are the whole state's."""
    await _completed_state(tmp_path, [1, 2, 0, 1])
    batch = make_batch(tmp_path, [("wavespeed", f"p{i}") for i in range(8)])
    state = await SqliteStore.open(tmp_path / "state.db")
    await state.sync_batch(batch.jobs, {"wavespeed": "m"})
    await state.mark_failed("job4", at="t", error={"code": "x"}, cost={"usd": 0.5}, usage={})
    await state.mark_intent("job5")
    await state.add_duplicate_cost("job6", 0.028, 3.0)  # pending, maybe paid once
    found = await survey(state, LocalFolder(tmp_path), batch, {"wavespeed": "m"})
    every = await state.records()
    await state.close()
    assert sorted(found.records) == ["job2", "job4", "job5", "job6"]  # job2: no images
    assert (found.done, found.broken) == ({"job0", "job1", "job3"}, {"job2"})
    assert found.claimed == {"remote0", "remote2"}
    assert sorted(found.tally(), key=repr) == sorted(tally_records(every), key=repr)
    usd, credits = found.spent()
    assert usd == pytest.approx(sum(spent(r)[0] for r in every))
    assert credits == pytest.approx(3.0)


def _images(records: list[JobRecord]) -> list[tuple[str, list[tuple[str, int]]]]:
    return [(r.id, image_sizes(r.row.images_json)) for r in records]


async def test_completed_jobs_with_their_files_need_nothing(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """Every file present, of its recorded size: nothing to do."""
    records = await _completed_state(tmp_path, [1, 2, 3])
    batch = make_batch(tmp_path, [("wavespeed", f"p{i}") for i in range(3)])
    assert await _work(batch, records) == []
    assert files_missing(str(tmp_path), _images(list(records.values()))) == set()


async def test_a_file_gone_short_linked_or_not_a_file_is_fetched_again(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """Any image of a completed job that is missing, of another size, a symlink (even to a
    file of the right size) or a directory: fetched again by remote id (redownloaded), or
    generated again when no remote id is known (regenerated). Also a job that recorded no
    images at all. The others (first image intact, or no image touched) need nothing."""
    records = await _completed_state(tmp_path, [2, 2, 2, 2, 2, 0, 2])
    images = tmp_path / "images"
    (images / "job0-2.png").unlink()  # the second of two images missing
    (images / "job1-1.png").write_bytes(b"xx")  # wrong size
    (images / "job2-2.png").unlink()
    (images / "job2-2.png").symlink_to(images / "job4-2.png")  # a link to a good file
    (images / "job3-1.png").unlink()
    (images / "job3-1.png").mkdir()  # a directory where a file belongs
    batch = make_batch(tmp_path, [("wavespeed", f"p{i}") for i in range(7)])
    work = await _work(batch, records)
    assert [(w.job.id, w.remote_id, w.flags) for w in work] == [
        ("job0", "remote0", ("redownloaded",)),
        ("job2", "remote2", ("redownloaded",)),
        ("job1", None, ("regenerated",)),
        ("job3", None, ("regenerated",)),
        ("job5", None, ("regenerated",)),
    ]
    assert files_missing(str(tmp_path / "nowhere"), _images(list(records.values()))) == set(records)


async def test_image_paths_resolve_against_a_relative_output_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: VirtualClock
) -> None:
    """A relative output folder (the default out/<name>) is where the files are looked
    for, and a path recorded outside it is followed as written."""
    records = await _completed_state(tmp_path / "out", [1, 1])
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"x")
    job1 = records["job1"]
    moved = JobRecord(
        job1.row._replace(images_json=json.dumps([{"path": str(outside), "bytes": 1}]))
    )
    monkeypatch.chdir(tmp_path)
    assert files_missing("out", _images([records["job0"], moved])) == set()
    outside.unlink()
    assert files_missing("out", _images([records["job0"], moved])) == {"job1"}
