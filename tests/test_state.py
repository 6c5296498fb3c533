"""The state table: write-ahead statuses, edits between runs, readers beside a writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.jobs import Job, JobParams
from pipeline.ledger import LedgerHeader, build_ledger
from pipeline.state import StateStore, job_document, read_snapshot

pytestmark = pytest.mark.anyio


def _doc(prompt: str, job_id: str = "a") -> tuple[str, dict[str, object]]:
    job = Job(id=job_id, prompt_id=job_id, provider="wavespeed", prompt=prompt, params=JobParams())
    return job_id, job_document(job, "kling-image-o3")


async def test_statuses_follow_the_write_ahead_protocol(tmp_path: Path) -> None:
    """intent -> submitted (with remote id) -> completed, each committed and visible."""
    store = await StateStore.open(tmp_path / "state.db")
    await store.sync_jobs([_doc("cat")])
    await store.mark_intent("a")
    _, rows, _ = read_snapshot(tmp_path / "state.db")
    assert (rows[0].status, rows[0].remote_id, rows[0].attempts) == ("intent", None, 1)
    await store.mark_submitted("a", "r-1", "2026-01-01T00:00:00Z", {"total": 20})
    _, rows, _ = read_snapshot(tmp_path / "state.db")
    assert (rows[0].status, rows[0].remote_id) == ("submitted", "r-1")
    await store.mark_completed(
        "a",
        at="t",
        latency_s=1.5,
        images=[{"path": "images/a-1.png"}],
        cost={"usd": 0.028},
        usage={},
    )
    _, rows, _ = read_snapshot(tmp_path / "state.db")
    assert rows[0].status == "completed"
    assert rows[0].images == [{"path": "images/a-1.png"}]
    await store.close()


async def test_edited_job_is_archived_and_restored(tmp_path: Path) -> None:
    """Changing a job keeps the old row (superseded); changing it back restores it."""
    store = await StateStore.open(tmp_path / "state.db")
    await store.sync_jobs([_doc("cat")])
    await store.mark_completed("a", at="t", latency_s=1, images=[], cost={"usd": 0.028}, usage={})
    records = await store.sync_jobs([_doc("dog")])
    archived = [r for r in records.values() if "superseded" in r.flags]
    assert len(archived) == 1
    assert archived[0].status == "completed"
    assert records["a"].status == "pending"
    records = await store.sync_jobs([_doc("cat")])
    assert records["a"].status == "completed"
    assert "superseded" not in records["a"].flags
    await store.close()


async def test_ledger_totals_skip_superseded_jobs_but_count_their_cost(tmp_path: Path) -> None:
    """Edited-away jobs stay listed and their money is counted, not their job totals."""
    store = await StateStore.open(tmp_path / "state.db")
    await store.sync_jobs([_doc("cat")])
    await store.mark_completed("a", at="t", latency_s=1, images=[], cost={"usd": 0.028}, usage={})
    await store.sync_jobs([_doc("dog")])
    await store.add_counters("wavespeed", 7, 1)
    header = LedgerHeader("n", "m.yaml", "s", "u", False)
    ledger = build_ledger(header, await store.records(), await store.counters())
    assert ledger["totals"]["jobs"] == 1
    assert ledger["totals"]["pending"] == 1
    assert ledger["totals"]["cost_usd"] == pytest.approx(0.028)
    assert ledger["providers"]["wavespeed"]["requests"] == 7
    assert len(ledger["jobs"]) == 2
    await store.close()
