"""Durable run state in ``DIR/state.db`` (sqlite3, WAL, one writer).

Resume protocol (write-ahead of every spend)
--------------------------------------------
Each job row moves ``pending -> intent -> submitted -> completed | failed``:

- ``intent`` is committed *before* the submit request is sent;
- ``submitted`` (with the provider's remote id) is committed as soon as the submit returns,
  before anything else happens;
- ``completed`` is committed only after every image file is on disk and verified.

So after a crash: ``submitted`` jobs are polled by remote id, never resubmitted; ``intent``
jobs have an unknown outcome (the process may have died after the provider accepted the
request) and must be reconciled before they may be sent again; ``completed`` jobs are
skipped when their files are still valid. ledger.json is always derived from this table.

Group commit
------------
Writes are many and small, so they share thread hops and commits (``pipeline.store._commit``).
Invariant: a write method returns only once the transaction holding *its* statement has
committed, statements commit in the order they were queued, and a cancelled writer still
returns only after its row is committed. Each step of a job is awaited before the next
is queued, so the write-ahead order above holds exactly as with one commit per write.

All access goes through one connection used from worker threads (``anyio.to_thread``),
serialised by a one-slot ``CapacityLimiter``; readers in other processes (``pipeline
status``) open their own connection and see committed rows thanks to WAL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio

from pipeline.jobs import Job
from pipeline.store._commit import GroupCommit
from pipeline.store._edits import (
    fingerprint,
    job_document,
    job_fingerprints,
    stored_document,
    sync_rows,
)
from pipeline.store._records import JobRecord, gc_paused, select_rows

__all__ = ["JobRecord", "StateStore", "job_document", "read_snapshot"]

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    provider TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    job TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    remote_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    submitted_at TEXT,
    completed_at TEXT,
    latency_s REAL,
    images TEXT NOT NULL DEFAULT '[]',
    cost TEXT,
    usage TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    flags TEXT NOT NULL DEFAULT '[]',
    duplicate_cost TEXT
);
CREATE TABLE IF NOT EXISTS counters (
    provider TEXT PRIMARY KEY,
    requests INTEGER NOT NULL DEFAULT 0,
    rate_limited INTEGER NOT NULL DEFAULT 0
);
"""


def read_snapshot(path: Path) -> tuple[dict[str, str], list[JobRecord], dict[str, tuple[int, int]]]:
    """Meta, records and counters, read from another process (WAL lets it run alongside)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        rows = select_rows(conn)
        counters = {
            p: (r, rl)
            for p, r, rl in conn.execute("SELECT provider, requests, rate_limited FROM counters")
        }
    finally:
        conn.close()
    return meta, [JobRecord(r) for r in rows], counters


class StateStore:
    """The state database of one output folder. Open with ``await StateStore.open(path)``."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = anyio.CapacityLimiter(1)
        self._group = GroupCommit(self._run)
        self._synced = 0  # syncs that changed the table

    @classmethod
    async def open(cls, path: Path) -> StateStore:
        def _open() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(SCHEMA)
            return conn

        return cls(await anyio.to_thread.run_sync(_open), path)

    @property
    def writes(self) -> int:
        """How many changes this store has committed (compare two readings to learn
        whether anything changed in between)."""
        return self._group.writes + self._synced

    @property
    def commits(self) -> int:
        """How many transactions the writes took (group commit: fewer than ``writes``)."""
        return self._group.commits

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(fn, self._conn, limiter=self._lock)

    async def _write(self, sql: str, args: Iterable[Any]) -> None:
        params = tuple(args)
        await self._group.commit(lambda c: c.execute(sql, params))

    async def close(self) -> None:
        await self._run(lambda c: c.close())

    # -- meta --------------------------------------------------------------------------

    async def get_meta(self) -> dict[str, str]:
        rows = await self._run(lambda c: c.execute("SELECT key, value FROM meta").fetchall())
        return dict(rows)

    async def set_meta(self, values: dict[str, str]) -> None:
        items = list(values.items())
        await self._group.commit(
            lambda c: c.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                items,
            )
        )

    # -- jobs --------------------------------------------------------------------------

    async def sync_jobs(self, docs: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, JobRecord]:
        """Insert jobs not yet known; return every record keyed by id, in ``seq`` order.

        A known id whose fingerprint changed (the manifest was edited) is archived under
        ``<id>~<old fingerprint>`` with the ``superseded`` flag, and starts afresh; an id
        edited back to an archived version gets that row back.
        """

        def _run_sync(c: sqlite3.Connection) -> tuple[dict[str, JobRecord], bool]:
            wanted = [(job_id, doc["provider"], fingerprint(doc)) for job_id, doc in docs]
            return sync_rows(c, wanted, lambda k: stored_document(docs[k][1]))

        with gc_paused():
            records, changed = await self._run(_run_sync)
        self._synced += changed
        return records

    async def sync_batch(
        self, jobs: Sequence[Job], models: Mapping[str, str]
    ) -> dict[str, JobRecord]:
        """``sync_jobs`` for a batch's jobs (``models``: provider -> model name), building
        the stored document only of jobs that are new or edited."""

        def _run_sync(c: sqlite3.Connection) -> tuple[dict[str, JobRecord], bool]:
            fingerprints = job_fingerprints(jobs)
            wanted = [(j.id, j.provider, fp) for j, fp in zip(jobs, fingerprints, strict=True)]

            def document(k: int) -> str:
                return stored_document(job_document(jobs[k], models[jobs[k].provider]))

            return sync_rows(c, wanted, document)

        with gc_paused():
            records, changed = await self._run(_run_sync)
        self._synced += changed
        return records

    async def records(self) -> list[JobRecord]:
        with gc_paused():
            return await self._run(lambda c: [JobRecord(r) for r in select_rows(c)])

    async def mark_intent(self, job_id: str) -> None:
        """Committed before the submit request is sent."""
        await self._write(
            "UPDATE jobs SET status = 'intent', attempts = attempts + 1, error = NULL, "
            "remote_id = NULL WHERE id = ?",
            (job_id,),
        )

    async def mark_submitted(
        self, job_id: str, remote_id: str, at: str, usage: dict[str, Any]
    ) -> None:
        """Committed as soon as the submit returns, before anything else happens."""
        await self._write(
            "UPDATE jobs SET status = 'submitted', remote_id = ?, submitted_at = ?, usage = ? "
            "WHERE id = ?",
            (remote_id, at, json.dumps(usage), job_id),
        )

    async def mark_completed(
        self,
        job_id: str,
        *,
        at: str,
        latency_s: float | None,
        images: list[dict[str, Any]],
        cost: dict[str, Any],
        usage: dict[str, Any],
    ) -> None:
        """Committed only once every image is on disk and verified."""
        await self._write(
            "UPDATE jobs SET status = 'completed', completed_at = ?, latency_s = ?, images = ?, "
            "cost = ?, usage = ?, error = NULL WHERE id = ?",
            (at, latency_s, json.dumps(images), json.dumps(cost), json.dumps(usage), job_id),
        )

    async def mark_failed(
        self,
        job_id: str,
        *,
        at: str,
        error: dict[str, Any],
        cost: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        await self._write(
            "UPDATE jobs SET status = 'failed', completed_at = ?, error = ?, "
            "cost = COALESCE(?, cost), usage = COALESCE(?, usage) WHERE id = ?",
            (
                at,
                json.dumps(error),
                json.dumps(cost) if cost is not None else None,
                json.dumps(usage) if usage is not None else None,
                job_id,
            ),
        )

    async def set_images(self, job_id: str, images: list[dict[str, Any]]) -> None:
        await self._write("UPDATE jobs SET images = ? WHERE id = ?", (json.dumps(images), job_id))

    async def note_error(self, job_id: str, error: dict[str, Any]) -> None:
        """Record an error without changing the job's status."""
        await self._write("UPDATE jobs SET error = ? WHERE id = ?", (json.dumps(error), job_id))

    async def add_flag(self, job_id: str, flag: str) -> None:
        await self._write(
            "UPDATE jobs SET flags = json_insert(flags, '$[#]', ?) "
            "WHERE id = ? AND NOT EXISTS (SELECT 1 FROM json_each(flags) WHERE value = ?)",
            (flag, job_id, flag),
        )

    async def add_duplicate_cost(self, job_id: str, usd: float, credits: float) -> None:
        """Count the estimated cost of a submit that may have been charged a second time."""

        def _add(c: sqlite3.Connection) -> None:
            # Runs inside the batch's transaction: the read and the update are atomic.
            row = c.execute("SELECT duplicate_cost FROM jobs WHERE id = ?", (job_id,)).fetchone()
            old = json.loads(row[0]) if row and row[0] else {"usd": 0.0, "credits": 0.0}
            new = {"usd": old["usd"] + usd, "credits": old["credits"] + credits}
            c.execute("UPDATE jobs SET duplicate_cost = ? WHERE id = ?", (json.dumps(new), job_id))

        await self._group.commit(_add)

    async def add_counters(self, provider: str, requests: int, rate_limited: int) -> None:
        await self._write(
            "INSERT INTO counters(provider, requests, rate_limited) VALUES (?, ?, ?) "
            "ON CONFLICT(provider) DO UPDATE SET requests = requests + excluded.requests, "
            "rate_limited = rate_limited + excluded.rate_limited",
            (provider, requests, rate_limited),
        )

    async def counters(self) -> dict[str, tuple[int, int]]:
        rows = await self._run(
            lambda c: c.execute("SELECT provider, requests, rate_limited FROM counters").fetchall()
        )
        return {p: (r, rl) for p, r, rl in rows}
