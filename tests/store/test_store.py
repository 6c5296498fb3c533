"""The run-state protocol on every backend: write-ahead statuses, edits between runs,
readers beside a writer, group commit."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from pipeline.clock import SystemClock
from pipeline.errors import StateError
from pipeline.jobs import Job, JobParams, JobStatus
from pipeline.ledger import LedgerHeader, _sink, summarize, summarize_tally
from pipeline.outputs._local import LocalFolder
from pipeline.store import DoneRow, read_summary, tally_records
from pipeline.store._edits import DIGEST_KEY, fingerprint, job_document, jobs_digest
from pipeline.store._sqlite import SqliteStore
from tests.ledger._support import build_ledger
from tests.store.conftest import OUTPUT, Backend

pytestmark = pytest.mark.anyio

MODELS = {"wavespeed": "kling-image-o3", "skills_video": "kling-ai/o3-image"}
HEADER = LedgerHeader("store-test", "m.yaml", "2026-01-01T00:00:00Z", "t", False)


def _job(prompt: str, job_id: str = "a", provider: str = "wavespeed") -> Job:
    return Job(id=job_id, prompt_id=job_id, provider=provider, prompt=prompt, params=JobParams())


def _status(backend: Backend, job_id: str) -> str:
    return next(r.row.status for r in backend.snapshot().records if r.id == job_id)


async def test_statuses_follow_the_write_ahead_protocol(backend: Backend) -> None:
    """intent -> submitted (with remote id) -> completed, each committed and visible."""
    store = await backend.open()
    await store.sync_batch([_job("cat")], MODELS)
    await store.mark_intent("a")
    (rec,) = backend.snapshot().records
    assert (rec.status, rec.remote_id, rec.row.attempts) == ("intent", None, 1)
    await store.mark_submitted("a", "r-1", "2026-01-01T00:00:00Z", {"total": 20})
    (rec,) = backend.snapshot().records
    assert (rec.status, rec.remote_id, rec.usage) == ("submitted", "r-1", {"total": 20})
    images = [{"path": "images/a-1.png", "bytes": 3}, {"path": "images/a-2.png", "bytes": 4}]
    await store.mark_completed(
        "a", at="t", latency_s=1.5, images=images, cost={"usd": 0.028}, usage={}
    )
    (rec,) = backend.snapshot().records
    assert rec.status == JobStatus.COMPLETED
    assert (rec.images, rec.row.image_count, rec.row.latency_s) == (images, 2, 1.5)
    assert rec.cost == {"usd": 0.028}
    await store.mark_intent("a")  # a rerun of a failed download, say: a fresh attempt
    (rec,) = backend.snapshot().records
    assert (rec.row.attempts, rec.remote_id) == (2, None)
    await store.mark_failed("a", at="t2", error={"code": "x"}, cost=None, usage=None)
    (rec,) = backend.snapshot().records
    assert (rec.status, rec.error_code, rec.cost) == ("failed", "x", {"usd": 0.028})
    await store.close()


async def test_sync_stores_documents_once(backend: Backend) -> None:
    """New jobs get their documented fingerprint and ledger document, seq in batch order;
    a second sync of the same jobs writes nothing."""
    jobs = [
        Job(
            id=f"j{i}",
            prompt_id=f"p{i}",
            provider="skills_video" if i % 2 else "wavespeed",
            prompt=f'Ünïcode "{i}"\n',
            params=JobParams(n=i + 1, image_urls=("https://x/a.png",) * (i % 3)),
            variant={"v": str(i)},
        )
        for i in range(6)
    ]
    store = await backend.open()
    records = await store.sync_batch(jobs, MODELS)
    assert list(records) == [j.id for j in jobs]
    for k, (job, rec) in enumerate(zip(jobs, records.values(), strict=True)):
        doc = job_document(job, MODELS[job.provider])
        assert rec.row.fingerprint == fingerprint(doc)
        assert rec.job == doc
        assert rec.row.seq == k
    before = store.writes
    again = await store.sync_batch(jobs, MODELS)
    assert store.writes == before
    assert [r.row for r in again.values()] == [r.row for r in records.values()]
    await store.close()


async def test_edited_job_is_archived_and_restored(backend: Backend) -> None:
    """Changing a job keeps the old row (superseded); changing it back restores it."""
    store = await backend.open()
    await store.sync_batch([_job("cat")], MODELS)
    await store.mark_completed("a", at="t", latency_s=1, images=[], cost={"usd": 0.028}, usage={})
    records = await store.sync_batch([_job("dog")], MODELS)
    archived = [r for r in records.values() if r.superseded]
    assert len(archived) == 1
    assert archived[0].status == "completed"
    assert archived[0].id.startswith("a~")
    assert records["a"].status == "pending"
    records = await store.sync_batch([_job("cat")], MODELS)
    assert records["a"].status == "completed"
    assert not records["a"].superseded
    assert len(records) == 2
    await store.close()


async def test_jobs_that_leave_the_manifest_are_superseded_until_they_return(
    backend: Backend,
) -> None:
    """A job no longer in the manifest keeps its row, flagged superseded (so no count of
    the batch includes it); listed again unchanged, it is current again, work intact."""
    store = await backend.open()
    await store.sync_batch([_job("cat", "a"), _job("dog", "b")], MODELS)
    await store.mark_completed("b", at="t", latency_s=1, images=[], cost={}, usage={})
    records = await store.sync_batch([_job("cat", "a")], MODELS)
    assert records["b"].superseded
    assert not records["a"].superseded
    records = await store.sync_batch([_job("cat", "a"), _job("dog", "b")], MODELS)
    assert not records["b"].superseded
    assert records["b"].status == "completed"
    await store.close()


async def test_ledger_totals_skip_superseded_jobs_but_count_their_cost(backend: Backend) -> None:
    """Edited-away jobs stay listed and their money is counted, not their job totals."""
    store = await backend.open()
    await store.sync_batch([_job("cat")], MODELS)
    await store.mark_completed("a", at="t", latency_s=1, images=[], cost={"usd": 0.028}, usage={})
    await store.sync_batch([_job("dog")], MODELS)
    await store.add_counters("wavespeed", 7, 1)
    await store.add_counters("wavespeed", 3, 0)
    header = LedgerHeader("n", "m.yaml", "s", "u", False)
    ledger = build_ledger(header, await store.records(), await store.counters())
    assert (ledger["totals"]["jobs"], ledger["totals"]["pending"]) == (1, 1)
    assert ledger["totals"]["cost_usd"] == pytest.approx(0.028)
    assert ledger["providers"]["wavespeed"]["requests"] == 10
    assert ledger["providers"]["wavespeed"]["rate_limited"] == 1
    assert len(ledger["jobs"]) == 2
    await store.close()


async def test_a_sync_of_the_same_jobs_compares_nothing_and_any_edit_is_seen(
    backend: Backend,
) -> None:
    """The digest of the synced jobs is kept: the same jobs again change nothing, and an
    edit of one prompt, a reordering or a job that leaves is noticed and synced."""
    jobs = [_job(f"prompt {i}", f"j{i}") for i in range(4)]
    store = await backend.open()
    await store.sync_batch(jobs, MODELS)
    writes = store.writes
    assert list(await store.sync_batch(jobs, MODELS)) == ["j0", "j1", "j2", "j3"]
    assert store.writes == writes
    edited = [*jobs[:3], _job("prompt 3, edited", "j3")]
    records = await store.sync_batch(edited, MODELS)
    assert store.writes == writes + 1
    assert [i for i in records if i.startswith("j3~")]  # archived, and a new j3
    assert records["j3"].job["prompt"] == "prompt 3, edited"
    records = await store.sync_batch(edited[:2], MODELS)
    assert records["j2"].superseded
    assert records["j3"].superseded
    assert jobs_digest(edited) != jobs_digest(edited[::-1]) != jobs_digest(edited[:2])
    await store.close()


async def test_a_new_batch_is_stored_in_parts(backend: Backend, tmp_path: Path) -> None:
    """``insert_new`` stores a new batch a part at a time, each part only after the one
    before it, into a state that holds nothing else; the rows, and the jobs noted as
    synced once the last part is in, are what one ``sync_batch`` stores. PostgreSQL
    stores a batch only whole: it refuses, and nothing is stored."""
    jobs = [_job(f"prompt {i}", f"j{i}", ("wavespeed", "skills_video")[i % 2]) for i in range(7)]
    store = await backend.open()
    if backend.kind == "postgres":
        assert not await store.insert_new(jobs, MODELS, 0, 3)
        assert await store.records() == []
        await store.close()
        return
    assert await store.insert_new(jobs, MODELS, 0, 3)
    assert not await store.insert_new(jobs, MODELS, 0, 3)  # holds jobs already
    assert not await store.insert_new(jobs, MODELS, 2, 5)  # not where the last part ended
    assert not await store.insert_new(jobs[::-1], MODELS, 3, 5)  # other jobs
    assert [r.id for r in await store.records()] == ["j0", "j1", "j2"]
    assert (await store.get_meta()).get(DIGEST_KEY) is None  # not synced yet
    assert await store.insert_new(jobs, MODELS, 3, 5)
    assert await store.insert_new(jobs, MODELS, 5, 100)  # past the end: to the end
    parts = await store.records()
    assert (await store.get_meta())[DIGEST_KEY] == jobs_digest(jobs)
    writes = store.writes
    assert [r.row for r in (await store.sync_batch(jobs, MODELS)).values()] == [
        r.row for r in parts
    ]
    assert store.writes == writes  # the same jobs: nothing to change
    await store.close()
    whole = await SqliteStore.open(tmp_path / "whole.db")
    try:
        synced = await whole.sync_batch(jobs, MODELS)
        assert [r.row for r in synced.values()] == [r.row for r in parts]
        assert not await whole.insert_new(jobs, MODELS, 0, 3)  # a state with rows
    finally:
        await whole.close()


async def test_a_run_reads_back_only_the_rows_it_needs(backend: Backend) -> None:
    """``all_rows=False`` leaves out exactly the plain pending jobs of the batch (never
    sent, nothing paid, no images) and the completed ones, which a view reads (``done``,
    and whole by id, ``records_of``): a new batch reads back nothing; the rows it does
    return are whole but for what only the ledger shows (the job document, usage...)."""
    jobs = [_job(f"prompt {i}", f"j{i}") for i in range(7)]
    store = await backend.open()
    assert await store.sync_batch(jobs, MODELS, all_rows=False) == {}
    await store.mark_intent("j1")
    image = [{"path": "images/j2-1.png", "bytes": 3}]
    await store.mark_completed("j2", at="t", latency_s=1, images=image, cost={"usd": 1}, usage={})
    await store.mark_failed("j3", at="t", error={"code": "x"}, cost=None, usage=None)
    await store.add_duplicate_cost("j4", 0.028, 0.0)  # pending, but maybe paid once
    await store.note_error("j5", {"code": "outcome_unknown"})  # pending, nothing paid
    await store.set_images("j6", image)  # pending with files (an edit moved them)
    needed = await store.sync_batch(jobs[1:], MODELS, all_rows=False)  # j0 leaves
    assert list(needed) == ["j0", "j1", "j3", "j4", "j6"]  # not the completed j2
    every = await store.sync_batch(jobs[1:], MODELS)
    assert list(every) == [f"j{i}" for i in range(7)]
    async with store.reading() as view:
        done = await anyio.to_thread.run_sync(lambda: [r for c in view.done(2) for r in c])
        whole = await view.records_of(["j3", "nope", "j2"])
    assert done == [
        DoneRow(
            "j2",
            "wavespeed",
            False,
            None,
            "",  # one image: its path and size are read out in SQL
            every["j2"].row.cost_json,
            None,
            1,
            "images/j2-1.png",
            3,
        )
    ]
    assert [r.row for r in whole] == [every["j2"].row, every["j3"].row]
    for job_id, rec in needed.items():  # all but what only the ledger shows
        shown = every[job_id].row._replace(
            job_json="", usage_json="{}", fingerprint="", attempts=0, completed_at=None
        )
        assert rec.row == shown._replace(latency_s=None)
    await store.close()


async def test_done_rows_give_each_image_as_recorded(backend: Backend) -> None:
    """``DoneRow.sizes()`` is the stored list's (path, bytes) for any number of images,
    and for values a file cannot have (a size that is not a whole number, no path)."""
    lists: list[list[dict[str, object]]] = [
        [{"path": "images/a-1.png", "bytes": 3, "sha256": "00", "format": "png"}],
        [{"path": "images/b-1.png", "bytes": 3}, {"path": "images/b-2.png", "bytes": 4}],
        [],
        [{"path": "images/d-1.png", "bytes": 2.5}],
        [{"path": "images/e-1.png", "bytes": "12"}],
        [{"bytes": 7}],
        [{"path": 'images/"quoted" \\ é-1.png', "bytes": 2**40}],
    ]
    jobs = [_job(f"prompt {i}", f"j{i}") for i in range(len(lists))]
    store = await backend.open()
    await store.sync_batch(jobs, MODELS)
    for job, images in zip(jobs, lists, strict=True):
        await store.mark_completed(
            job.id, at="t", latency_s=1, images=images, cost={"usd": 0.0}, usage={}
        )
    async with store.reading() as view:
        done = await anyio.to_thread.run_sync(lambda: [r for c in view.done(3) for r in c])
    got = {row.id: (row.image_count, row.sizes()) for row in done}
    assert got == {
        "j0": (1, [("images/a-1.png", 3)]),
        "j1": (2, [("images/b-1.png", 3), ("images/b-2.png", 4)]),
        "j2": (0, []),
        "j3": (1, [("images/d-1.png", -1)]),
        "j4": (1, [("images/e-1.png", -1)]),
        "j5": (1, [("", 7)]),
        "j6": (1, [('images/"quoted" \\ é-1.png', 2**40)]),
    }
    await store.close()


async def test_a_view_keeps_its_moment_while_the_run_writes(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``reading()`` sees the state as it was when it began, in every read, while writes
    go on and commit; the ledger written from a view, a few records at a time, is the
    whole document of the records (in seq order, archived rows included)."""
    jobs = [_job(f"prompt {i}", f"j{i:02d}") for i in range(25)]
    store = await backend.open()
    await store.sync_batch([*jobs[::-1], _job("before", "edited")], MODELS)
    await store.sync_batch([*jobs[::-1], _job("after", "edited")], MODELS)  # archives one
    await store.mark_completed("j03", at="t", latency_s=1, images=[], cost={"usd": 1}, usage={})
    before = await store.records()
    async with store.reading() as view:
        await store.mark_failed("j04", at="t", error={"code": "x"}, cost=None, usage=None)
        assert sorted(await view.tally()) == sorted(tally_records(before))
        assert await view.failed() == []
        chunks = await anyio.to_thread.run_sync(lambda: list(view.chunks(4)))
    assert [len(c) for c in chunks] == [4] * 6 + [3]
    assert [r.row for c in chunks for r in c] == [r.row for r in before]
    assert [r.id for r in before][:3] == ["j24", "j23", "j22"]  # seq order: batch order
    monkeypatch.setattr(_sink, "_RECORDS_AT_ONCE", 3)
    folder = LocalFolder(tmp_path / "out")
    sink = _sink.LedgerSink(store, folder, HEADER, clock=SystemClock())
    doc = await sink.write()
    written = json.loads((tmp_path / "out" / "ledger.json").read_text())
    header = replace(HEADER, updated_at=str(doc["updated_at"]))
    assert written == build_ledger(header, await store.records(), await store.counters())
    assert list(doc["jobs"]) == written["jobs"]  # type: ignore[call-overload]
    await store.close()


async def test_the_tally_counts_what_the_records_hold(backend: Backend) -> None:
    """The store's grouped counts (``tally``, and ``read_summary`` from another process)
    are the records' own: every status, shared and odd costs, images, a duplicate charge
    and superseded rows; the failures come in ``seq`` order."""
    jobs = [
        _job(f"prompt {i}", f"j{i}", "skills_video" if i % 3 else "wavespeed") for i in range(12)
    ]
    store = await backend.open()
    await store.sync_batch([*jobs, _job("old", "gone")], MODELS)
    await store.mark_completed("gone", at="t", latency_s=1, images=[], cost={"usd": 0.5}, usage={})
    await store.sync_batch(jobs, MODELS)  # "gone" left the manifest: superseded, still paid
    image = {"path": "images/x.png", "bytes": 3}
    for i in range(6):
        cost = {"usd": 0.028} if i < 4 else {"usd": 0.1 + 0.2, "credits": 20.0}
        images = [image] * (1 + i % 2)
        await store.mark_completed(f"j{i}", at="t", latency_s=1, images=images, cost=cost, usage={})
    for i in (9, 6):  # failed out of seq order
        await store.mark_failed(
            f"j{i}", at="t", error={"code": f"e{i}", "message": "no"}, cost=None, usage=None
        )
    await store.mark_intent("j7")
    await store.mark_intent("j8")
    await store.mark_submitted("j8", "r-8", "t", {})
    await store.add_duplicate_cost("j8", 0.028, 0.0)
    records = await store.records()
    assert sorted(await store.tally()) == sorted(tally_records(records))
    summary = read_summary(backend.location, OUTPUT)
    assert sorted(summary.tally) == sorted(tally_records(records))
    assert [job_id for job_id, _ in summary.failed] == ["j6", "j9"]
    counted = summarize_tally(summary.tally, {})
    assert counted == summarize(records, {})
    totals = counted[0]
    assert (totals["jobs"], totals["completed"], totals["failed"], totals["pending"]) == (
        12,
        6,
        2,
        4,
    )
    assert totals["images"] == 9
    assert totals["cost_usd"] == pytest.approx(0.5 + 4 * 0.028 + 2 * 0.3 + 0.028)
    assert totals["credits"] == pytest.approx(40.0)
    await store.close()


async def test_flags_meta_errors_and_duplicate_costs(backend: Backend) -> None:
    """A flag is added once; meta is upserted; a noted error keeps the status; possible
    duplicate charges add up."""
    store = await backend.open()
    await store.sync_batch([_job("cat")], MODELS)
    for flag in ("reconciled", "possible_duplicate", "reconciled"):
        await store.add_flag("a", flag)
    await store.add_duplicate_cost("a", 0.028, 0.0)
    await store.add_duplicate_cost("a", 0.028, 20.0)
    await store.note_error("a", {"code": "outcome_unknown"})
    await store.set_meta({"name": "x", "started_at": "t"})
    await store.set_meta({"name": "y"})
    (rec,) = backend.snapshot().records
    assert rec.flags == ["reconciled", "possible_duplicate"]
    assert rec.duplicate_cost == {"usd": pytest.approx(0.056), "credits": 20.0}
    assert (rec.status, rec.error_code) == ("pending", "outcome_unknown")
    own = {"name": "y", "started_at": "t", DIGEST_KEY: jobs_digest([_job("cat")])}
    assert await store.get_meta() == own  # with the digest of the synced jobs
    assert backend.snapshot().meta == own
    await store.close()


async def test_concurrent_writers_share_commits(backend: Backend) -> None:
    """Many jobs writing at once: every write committed, and visible to a reader."""
    store = await backend.open()
    await store.sync_batch([_job(f"prompt {i}", f"j{i}") for i in range(60)], MODELS)
    before = store.writes

    async def job(i: int) -> None:
        await store.mark_intent(f"j{i}")
        assert _status(backend, f"j{i}") == "intent"  # committed when the await returns
        await store.mark_submitted(f"j{i}", f"r-{i}", "t", {})
        await store.mark_completed(
            f"j{i}", at="t", latency_s=1.0, images=[], cost={"usd": 0.028}, usage={}
        )

    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(job, i)
    assert store.writes - before == 180
    rows = backend.snapshot().records
    assert {(r.status, r.remote_id) for r in rows} == {("completed", f"r-{i}") for i in range(60)}
    await store.close()


async def test_a_cancelled_writer_still_commits_before_returning(backend: Backend) -> None:
    """Cancellation does not abandon a queued write: it is committed, then delivered."""
    store = await backend.open()
    await store.sync_batch([_job("a", "j0"), _job("b", "j1")], MODELS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.mark_intent, "j0")  # leads: flushing
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.mark_intent("j1")  # queued behind it, in a cancelled scope
    assert [r.row.status for r in backend.snapshot().records] == ["intent", "intent"]
    await store.close()


async def test_a_refused_write_fails_only_its_writer(backend: Backend) -> None:
    """A write the database refuses raises StateError for its writer; the writes grouped
    with it still commit."""
    store = await backend.open()
    await store.sync_batch([_job(f"p{i}", f"j{i}") for i in range(10)], MODELS)
    await store.add_flag("j3", "x")
    await _corrupt_flags(backend, "j3")
    errors: dict[int, BaseException] = {}

    async def flag(i: int) -> None:
        try:
            await store.add_flag(f"j{i}", "reconciled")
        except StateError as exc:
            errors[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(flag, i)
    assert list(errors) == [3]
    assert str(backend.location) in str(errors[3])
    records = {r.id: r for r in await store.records()}
    assert all(records[f"j{i}"].flags == ["reconciled"] for i in range(10) if i != 3)
    await store.close()


async def _corrupt_flags(backend: Backend, job_id: str) -> None:
    """Plant text that is not JSON in a job's flags, from outside the store."""
    if backend.kind == "sqlite":
        import sqlite3

        with sqlite3.connect(backend.location.target) as conn:
            conn.execute("UPDATE jobs SET flags = 'not json' WHERE id = ?", (job_id,))
        return
    import psycopg

    async with await psycopg.AsyncConnection.connect(backend.location.target) as conn:
        await conn.execute("UPDATE pipeline_jobs SET flags = 'not json' WHERE id = %s", (job_id,))
