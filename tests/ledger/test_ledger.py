"""ledger.json: spliced job lines equal the decoded entries, the file is one valid document."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from pipeline import _threads
from pipeline.clock import SystemClock
from pipeline.jobs import Job, JobParams
from pipeline.ledger._document import (
    LEDGER_NAME,
    JobEntries,
    LedgerHeader,
    encode_document,
    entry_json,
    job_entry,
    ledger_document,
)
from pipeline.ledger._sink import LEDGER_INTERVAL_S, LedgerSink, rewrite_pause
from pipeline.outputs._local import LocalFolder, write_text_atomic
from pipeline.store import RunStore, StateLocation, open_store
from pipeline.store._records import JobRecord, JobRow
from pipeline.store._sqlite import SqliteStore
from tests.ledger._support import build_ledger

MODELS = {"wavespeed": "kling-image-o3"}

pytestmark = pytest.mark.anyio

HEADER = LedgerHeader("batch", "m.yaml", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", False)


def _job(job_id: str, prompt: str, **params: Any) -> Job:
    return Job(
        id=job_id,
        prompt_id=job_id,
        provider="wavespeed",
        prompt=prompt,
        params=JobParams(**params),
        variant={"style": "noir"},
    )


async def _varied_store(tmp_path: Path, postgres_url: str | None = None) -> RunStore:
    """A state holding one job in every status, flags, odd floats and non-ASCII text (in
    ``tmp_path``, or in the PostgreSQL database ``postgres_url``)."""
    store: RunStore
    if postgres_url is None:
        store = await SqliteStore.open(tmp_path / "state.db")
    else:
        location = StateLocation("postgres", postgres_url)
        store = await open_store(location, name="ledger-test", output=str(tmp_path))
    jobs = [
        _job("done", 'Café au lait, «noir» "quoted" \\ slash\n', n=2),
        _job("failed", "a failure", image_urls=("https://x/1.png", "https://x/2.png")),
        _job("intent", "sent, reply lost"),
        _job("running", "polling"),
        _job("waiting", "not started"),
    ]
    await store.sync_batch([*jobs, _job("edited", "before the edit")], MODELS)
    await store.mark_completed(
        "done",
        at="2026-01-01T00:00:05Z",
        latency_s=0.1 + 0.2,  # repr differs from its 15-digit rendering
        images=[{"path": "images/done-1.png", "bytes": 12, "width": 1, "height": 1}],
        cost={"usd": 0.028, "credits": None, "basis": "price_table"},
        usage={"tokens": 3, "note": "ünïcode"},
    )
    await store.mark_failed(
        "failed",
        at="t",
        error={"code": "task_failed", "message": "nope", "http_status": 422},
        cost={"usd": 0.0, "credits": 20.0, "basis": "reported"},
    )
    await store.mark_intent("intent")
    await store.add_flag("intent", "possible_duplicate")
    await store.add_duplicate_cost("intent", 0.028, 0.0)
    await store.mark_intent("running")
    await store.mark_submitted("running", "r-1", "2026-01-01T00:00:01Z", {})
    await store.sync_batch([*jobs, _job("edited", "after the edit")], MODELS)  # archives one
    await store.add_counters("wavespeed", 9, 2)
    return store


async def test_spliced_lines_equal_the_decoded_entries(tmp_path: Path) -> None:
    """Every status, flag and odd value: entry_json parses to exactly job_entry."""
    store = await _varied_store(tmp_path)
    records = await store.records()
    await store.close()
    assert {r.status for r in records} == {"completed", "failed", "intent", "submitted", "pending"}
    assert any("superseded" in r.flags for r in records)
    for r in records:
        assert json.loads(entry_json(r)) == job_entry(r), r.id


async def test_written_ledger_is_the_same_document(tmp_path: Path) -> None:
    """The fast document, encoded and written, reads back equal to build_ledger's dicts."""
    store = await _varied_store(tmp_path)
    records = await store.records()
    counters = await store.counters()
    await store.close()
    path = tmp_path / "ledger.json"
    write_text_atomic(path, encode_document(ledger_document(HEADER, records, counters)))
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == build_ledger(HEADER, records, counters)
    # Readable: one job per line after the indented header.
    lines = text.splitlines()
    assert sum(line.startswith('{"id": ') for line in lines) == len(records)
    assert lines[0] == "{"


async def test_job_entries_read_like_a_list(tmp_path: Path) -> None:
    """JobEntries: len, index, slice and iteration give build_ledger's entries."""
    store = await _varied_store(tmp_path)
    records = await store.records()
    await store.close()
    entries = JobEntries(records)
    plain = build_ledger(HEADER, records, {})["jobs"]
    assert len(entries) == len(plain)
    assert entries[0] == plain[0]
    assert entries[-1] == plain[-1]
    assert entries[1:3] == plain[1:3]
    assert list(entries) == plain


@pytest.mark.parametrize(
    "document",
    [
        {"name": "x", "jobs": []},
        {"jobs": [{"id": "a"}, {"id": "b", "n": 1.5}]},
        {"name": "only a header"},
        {"name": "x", "jobs": [{"id": f"j{i}"} for i in range(4500)]},  # several chunks
    ],
)
def test_any_document_encodes_to_valid_json(document: dict[str, Any]) -> None:
    """Empty, header-less and multi-chunk documents all encode to the same JSON."""
    assert json.loads("".join(encode_document(document))) == document


def test_unreadable_stored_document_falls_back_to_the_decoded_entry() -> None:
    """A job document not in the ledger's shape is re-encoded, not spliced."""
    row = JobRow(
        *("a", 0, "wavespeed", "f" * 16, "pending", None, 0, None, None, None),
        '{"prompt": "p", "provider": "wavespeed"}',
        *("[]", None, "{}", None, "[]", None, 0),
    )
    record = JobRecord(row)
    assert json.loads(entry_json(record)) == job_entry(record)
    assert job_entry(record)["model"] is None


def test_rewrites_are_spaced_by_their_own_cost() -> None:
    """At least the interval apart, and 20x the last rewrite's duration when that is more:
    rewrites take under 5 % of a run's time, however long each one is."""
    assert rewrite_pause(0.01) == LEDGER_INTERVAL_S
    assert rewrite_pause(1.5) == pytest.approx(30.0)
    for took in (0.01, 0.5, 1.5, 12.0, 60.0):
        assert took / (took + rewrite_pause(took)) < 0.05


class _HeldFolder(LocalFolder):
    """A real output folder whose ledger writes can be held after their first piece (the
    moment a large ledger is being written), to cancel one in the middle."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.hold = True
        self.writing = threading.Event()
        self.go_on = threading.Event()

    def write_atomic(self, name: str, pieces: Iterable[str]) -> None:
        def held() -> Iterator[str]:
            for k, piece in enumerate(pieces):
                yield piece
                if k == 0 and self.hold:
                    self.writing.set()
                    self.go_on.wait(timeout=30)

        super().write_atomic(name, held())


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_cancelled_rewrite_stops_at_its_next_piece_and_leaves_nothing_behind(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """A rewrite cancelled mid-way (a run stopping) stops at its next piece: no ledger.json
    from it and no temporary file; its view of the state stays open until its thread has
    stopped reading, and the reading is closed in that thread (a PostgreSQL cursor closes
    through the event loop: from anywhere else it could not); the next write is whole."""
    url = request.getfixturevalue("postgres_url") if kind == "postgres" else None
    store = await _varied_store(tmp_path, url)
    folder = _HeldFolder(tmp_path)
    sink = LedgerSink(store, folder, HEADER, clock=SystemClock())
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sink.write)
            await anyio.to_thread.run_sync(folder.writing.wait, 30)
            scope.cancel()
            # The writer thread goes on once cancelled: it must see the stop.
            threading.Timer(0.2, folder.go_on.set).start()
    assert folder.go_on.is_set()  # the cancelled write waited for its thread
    assert LEDGER_NAME not in os.listdir(tmp_path)
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []
    assert sink.finish_cost_s() > 0.0  # what the stopped write would have taken
    folder.hold = False
    doc = await sink.write(finished=True)
    written = json.loads((tmp_path / LEDGER_NAME).read_text())
    assert written["finished"] is True
    assert written == build_ledger(
        replace(HEADER, updated_at=str(doc["updated_at"]), finished=True),
        await store.records(),
        await store.counters(),
    )
    await store.close()


async def test_a_rewrite_cancelled_before_its_thread_began_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while its call waits for a worker thread (anyio then may never run it), a
    rewrite returns at once instead of waiting for a thread that never comes, and the
    call, if it runs after all, reads nothing."""
    store = await _varied_store(tmp_path)
    sink = LedgerSink(store, LocalFolder(tmp_path), HEADER, clock=SystemClock())
    real = _threads.run_sync
    late: list[Callable[[], object]] = []

    async def no_thread_yet(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        if getattr(fn, "__name__", "") == "_write":
            late.append(fn)
            scope.cancel()
            await anyio.sleep(1)  # cancelled here, as while waiting for a thread
        return await real(fn, *args, **kw)

    monkeypatch.setattr(_threads, "run_sync", no_thread_yet)
    with anyio.fail_after(10), anyio.CancelScope() as scope:
        await sink.write()
    assert scope.cancelled_caught
    monkeypatch.undo()
    (write,) = late
    write()  # the thread's call, arriving late: it sees the stop and touches nothing
    assert LEDGER_NAME not in os.listdir(tmp_path)
    await store.close()
