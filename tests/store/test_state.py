"""The state table: write-ahead statuses, edits between runs, readers beside a writer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import StateError
from pipeline.jobs import Job, JobParams
from pipeline.ledger._document import LedgerHeader
from pipeline.store._edits import fingerprint, job_document, job_fingerprints
from pipeline.store._records import JobRecord
from pipeline.store._sqlite import SqliteStore, read_snapshot
from tests.ledger._support import build_ledger

pytestmark = pytest.mark.anyio
# (the hypothesis test below is synchronous: the mark does not apply to it)


MODELS = {"wavespeed": "kling-image-o3", "skills_video": "kling-ai/o3-image"}


def _doc(prompt: str, job_id: str = "a") -> Job:
    return Job(id=job_id, prompt_id=job_id, provider="wavespeed", prompt=prompt, params=JobParams())


def _rows(path: Path) -> list[JobRecord]:
    return read_snapshot(path).records


async def test_statuses_follow_the_write_ahead_protocol(tmp_path: Path) -> None:
    """intent -> submitted (with remote id) -> completed, each committed and visible."""
    store = await SqliteStore.open(tmp_path / "state.db")
    await store.sync_batch([_doc("cat")], MODELS)
    await store.mark_intent("a")
    rows = _rows(tmp_path / "state.db")
    assert (rows[0].status, rows[0].remote_id, rows[0].row.attempts) == ("intent", None, 1)
    await store.mark_submitted("a", "r-1", "2026-01-01T00:00:00Z", {"total": 20})
    rows = _rows(tmp_path / "state.db")
    assert (rows[0].status, rows[0].remote_id) == ("submitted", "r-1")
    await store.mark_completed(
        "a",
        at="t",
        latency_s=1.5,
        images=[{"path": "images/a-1.png"}],
        cost={"usd": 0.028},
        usage={},
    )
    rows = _rows(tmp_path / "state.db")
    assert rows[0].status == "completed"
    assert rows[0].images == [{"path": "images/a-1.png"}]
    await store.close()


async def test_edited_job_is_archived_and_restored(tmp_path: Path) -> None:
    """Changing a job keeps the old row (superseded); changing it back restores it."""
    store = await SqliteStore.open(tmp_path / "state.db")
    await store.sync_batch([_doc("cat")], MODELS)
    await store.mark_completed("a", at="t", latency_s=1, images=[], cost={"usd": 0.028}, usage={})
    records = await store.sync_batch([_doc("dog")], MODELS)
    archived = [r for r in records.values() if "superseded" in r.flags]
    assert len(archived) == 1
    assert archived[0].status == "completed"
    assert records["a"].status == "pending"
    records = await store.sync_batch([_doc("cat")], MODELS)
    assert records["a"].status == "completed"
    assert "superseded" not in records["a"].flags
    await store.close()


async def test_ledger_totals_skip_superseded_jobs_but_count_their_cost(tmp_path: Path) -> None:
    """Edited-away jobs stay listed and their money is counted, not their job totals."""
    store = await SqliteStore.open(tmp_path / "state.db")
    await store.sync_batch([_doc("cat")], MODELS)
    await store.mark_completed("a", at="t", latency_s=1, images=[], cost={"usd": 0.028}, usage={})
    await store.sync_batch([_doc("dog")], MODELS)
    await store.add_counters("wavespeed", 7, 1)
    header = LedgerHeader("n", "m.yaml", "s", "u", False)
    ledger = build_ledger(header, await store.records(), await store.counters())
    assert ledger["totals"]["jobs"] == 1
    assert ledger["totals"]["pending"] == 1
    assert ledger["totals"]["cost_usd"] == pytest.approx(0.028)
    assert ledger["providers"]["wavespeed"]["requests"] == 7
    assert len(ledger["jobs"]) == 2
    await store.close()


# -- group commit ---------------------------------------------------------------------


async def _store_with(tmp_path: Path, n: int) -> SqliteStore:
    store = await SqliteStore.open(tmp_path / "state.db")
    await store.sync_batch([_doc(f"prompt {i}", f"j{i}") for i in range(n)], MODELS)
    return store


async def test_concurrent_writers_share_commits(tmp_path: Path) -> None:
    """Many jobs writing at once: every write committed, in far fewer transactions."""
    store = await _store_with(tmp_path, 60)
    before = (store.writes, store.commits)

    async def job(i: int) -> None:
        await store.mark_intent(f"j{i}")
        await store.mark_submitted(f"j{i}", f"r-{i}", "t", {})
        await store.mark_completed(
            f"j{i}", at="t", latency_s=1.0, images=[], cost={"usd": 0.028}, usage={}
        )

    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(job, i)
    assert store.writes - before[0] == 180
    assert store.commits - before[1] < 90
    rows = _rows(tmp_path / "state.db")
    assert {(r.status, r.remote_id) for r in rows} == {("completed", f"r-{i}") for i in range(60)}
    await store.close()


async def test_each_writer_returns_after_its_own_row_is_committed(tmp_path: Path) -> None:
    """Write-ahead under concurrency: right after each await, another connection sees it."""
    store = await _store_with(tmp_path, 30)
    seen: list[str] = []

    async def job(i: int) -> None:
        await store.mark_intent(f"j{i}")
        rows = _rows(tmp_path / "state.db")
        seen.append(next(r.status for r in rows if r.id == f"j{i}"))

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(job, i)
    assert seen == ["intent"] * 30
    await store.close()


async def test_a_failing_statement_fails_only_its_writer(tmp_path: Path) -> None:
    """One bad row in a batch: its writer gets the error, the others still commit."""
    store = await _store_with(tmp_path, 20)
    before = store.writes
    with sqlite3.connect(tmp_path / "state.db") as other:
        other.execute("UPDATE jobs SET flags = 'not json' WHERE id = 'j7'")
    errors: dict[int, BaseException] = {}

    async def job(i: int) -> None:
        try:
            await store.add_flag(f"j{i}", "reconciled")
        except StateError as exc:
            errors[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(job, i)
    assert list(errors) == [7]
    records = {r.id: r for r in await store.records()}
    assert all(records[f"j{i}"].flags == ["reconciled"] for i in range(20) if i != 7)
    assert store.writes - before == 19
    await store.close()


async def test_a_cancelled_writer_still_commits_before_returning(tmp_path: Path) -> None:
    """Cancellation does not abandon a queued write: it is committed, then delivered."""
    store = await _store_with(tmp_path, 2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.mark_intent, "j0")  # leads: flushing in a worker thread
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.mark_intent("j1")  # queued behind it, in a cancelled scope
    rows = _rows(tmp_path / "state.db")
    assert [r.status for r in rows] == ["intent", "intent"]
    await store.close()


# -- syncing a batch ------------------------------------------------------------------


async def test_sync_stores_each_jobs_document_and_fingerprint(tmp_path: Path) -> None:
    """Each new job is stored with its documented fingerprint and its ledger document;
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
    store = await SqliteStore.open(tmp_path / "a.db")
    records = await store.sync_batch(jobs, MODELS)
    assert list(records) == [j.id for j in jobs]
    for job, rec in zip(jobs, records.values(), strict=True):
        doc = job_document(job, MODELS[job.provider])
        assert rec.row.fingerprint == fingerprint(doc)
        assert rec.job == doc
        assert rec.row.seq == int(job.id[1:])
    before = store.writes
    again = await store.sync_batch(jobs, MODELS)  # nothing new: nothing written
    assert store.writes == before
    assert [r.row for r in again.values()] == [r.row for r in records.values()]
    await store.close()


async def test_jobs_that_leave_the_manifest_are_superseded_until_they_return(
    tmp_path: Path,
) -> None:
    """A job no longer in the manifest keeps its row, flagged superseded (so no count of
    the batch includes it); listed again unchanged, it is current again, work intact."""
    store = await SqliteStore.open(tmp_path / "state.db")
    await store.sync_batch([_doc("cat", "a"), _doc("dog", "b")], MODELS)
    await store.mark_completed("b", at="t", latency_s=1, images=[], cost={}, usage={})
    records = await store.sync_batch([_doc("cat", "a")], MODELS)
    assert records["b"].superseded
    assert not records["a"].superseded
    records = await store.sync_batch([_doc("cat", "a"), _doc("dog", "b")], MODELS)
    assert not records["b"].superseded
    assert records["b"].status == "completed"
    await store.close()


_text = st.text(max_size=30)


@given(
    prompt=_text,
    provider=st.sampled_from(["wavespeed", "skills_video", "ünï"]),
    aspect=_text,
    resolution=_text,
    fmt=_text,
    n=st.integers(min_value=-5, max_value=10**12),
    urls=st.lists(_text, max_size=3),
)
def test_job_fingerprint_equals_the_document_fingerprint(
    prompt: str, provider: str, aspect: str, resolution: str, fmt: str, n: int, urls: list[str]
) -> None:
    """The fast fingerprint is byte-for-byte the documented one, for any text."""
    params = JobParams(aspect, resolution, fmt, n, tuple(urls))
    job = Job(id="x", prompt_id="x", provider=provider, prompt=prompt, params=params)
    assert job_fingerprints([job]) == [fingerprint(job_document(job, "any-model"))]


def test_jobs_sharing_params_are_fingerprinted_as_each_alone() -> None:
    """job_fingerprints spells a params object shared by many jobs once; every job still
    gets its own document's fingerprint (equal params in distinct objects too)."""
    shared = JobParams("16:9", "2k", "png", 2, ("https://x/a.png",))
    params = [shared, JobParams(), shared, JobParams("16:9", "2k", "png", 2, ("https://x/a.png",))]
    jobs = [
        Job(id=f"j{i}", prompt_id="p", provider=provider, prompt=f"prompt {i % 2}", params=p)
        for i, p in enumerate(params)
        for provider in ("wavespeed", "skills_video")
    ]
    expected = [fingerprint(job_document(job, "m")) for job in jobs]
    assert job_fingerprints(jobs) == expected
    assert len(set(expected)) == 6  # prompt 0 with equal params twice, on two providers
