"""The run state in a sqlite file (``DIR/state.db`` by default): WAL, one writer.

Implements :class:`~pipeline.store._base.RunStore` (its docstring gives the write-ahead
protocol). Writes are many and small, so they share thread hops and commits
(``pipeline.store._commit``): a write method returns only once the transaction holding
*its* statement has committed, statements commit in the order they were queued, and a
cancelled writer still returns only after its row is committed. A job's intent is
committed with ``synchronous=FULL`` (on stable storage before its submit is sent).

The file's layout, its versions and the reads live in ``pipeline.store._sqlite_layout``
(a newer version than this code knows is refused, never guessed at). A run holds
the file's lock (``pipeline.store._lock``): one run at a time per state.

All access goes through one connection used from worker threads, serialised by a
one-slot ``CapacityLimiter``; readers in other processes (``pipeline status``) open their
own connection and see committed rows thanks to WAL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import anyio

from pipeline import _threads
from pipeline.errors import StateError
from pipeline.jobs import Job, JobStatus
from pipeline.store._base import Counters
from pipeline.store._commit import GroupCommit
from pipeline.store._lock import StateLock, acquire
from pipeline.store._records import JobRecord, TallyRow
from pipeline.store._sqlite_layout import (
    ADD_FLAG,
    counters,
    insert_new,
    migrate,
    read_snapshot,
    select_rows,
    sync,
    tally,
)
from pipeline.store._sqlite_view import SqliteView, open_view

__all__ = ["SqliteStore", "read_snapshot"]

T = TypeVar("T")


class SqliteStore:
    """The state database at ``path``. Open with ``await SqliteStore.open(path)``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, lock: StateLock | None) -> None:
        self._conn = conn
        self._lock_file = lock
        self.path = path
        self._lock = anyio.CapacityLimiter(1)
        self._group = GroupCommit(self._run)
        self._synced = 0  # syncs that changed the table

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r}, {self._group!r})"

    @classmethod
    async def open(cls, path: Path, *, exclusive: bool = False) -> SqliteStore:
        """Open (creating or upgrading it if needed) the state database at ``path``;
        ``exclusive``: for a run, holding the state's lock until ``close``. Raises
        ``BatchInUse`` when another run holds it, ``StateError`` for a newer schema,
        ``OSError`` or ``sqlite3.Error`` when it cannot be opened or is not one."""

        def _open() -> tuple[sqlite3.Connection, StateLock | None]:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = acquire(path) if exclusive else None
            try:
                conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                    conn.execute("PRAGMA busy_timeout=5000")
                    migrate(conn, path)
                except BaseException:
                    conn.close()
                    raise
            except BaseException:
                if lock is not None:
                    lock.release()
                raise
            return conn, lock

        conn, lock = await _threads.run_sync(_open)
        return cls(conn, path, lock)

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def writes(self) -> int:
        return self._group.writes + self._synced

    @property
    def commits(self) -> int:
        """How many transactions the writes took (group commit: fewer than ``writes``)."""
        return self._group.commits

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await _threads.run_sync(fn, self._conn, limiter=self._lock)
        except sqlite3.Error as exc:
            raise StateError(str(exc), location=self.location) from exc

    async def _commit(
        self, op: Callable[[sqlite3.Connection], object], *, durable: bool = False
    ) -> None:
        """Queue ``op`` for the group commit; returns once it is committed (``durable``:
        on stable storage). Raises ``StateError`` for what sqlite refused (its transaction
        was rolled back)."""
        try:
            await self._group.commit(op, durable=durable)
        except sqlite3.Error as exc:
            raise StateError(str(exc), location=self.location) from exc

    async def _write(self, sql: str, args: Iterable[Any]) -> None:
        params = tuple(args)
        await self._commit(lambda c: c.execute(sql, params))

    async def close(self) -> None:
        try:
            await self._run(lambda c: c.close())
        finally:
            if self._lock_file is not None:
                self._lock_file.release()
                self._lock_file = None

    # -- meta and counters -------------------------------------------------------------

    async def get_meta(self) -> dict[str, str]:
        rows = await self._run(lambda c: c.execute("SELECT key, value FROM meta").fetchall())
        return dict(rows)

    async def set_meta(self, values: Mapping[str, str]) -> None:
        items = list(values.items())
        await self._commit(
            lambda c: c.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                items,
            )
        )

    async def add_counters(self, provider: str, requests: int, rate_limited: int) -> None:
        await self._write(
            "INSERT INTO counters(provider, requests, rate_limited) VALUES (?, ?, ?) "
            "ON CONFLICT(provider) DO UPDATE SET requests = requests + excluded.requests, "
            "rate_limited = rate_limited + excluded.rate_limited",
            (provider, requests, rate_limited),
        )

    async def counters(self) -> Counters:
        return await self._run(counters)

    # -- jobs --------------------------------------------------------------------------

    async def sync_batch(
        self, jobs: Sequence[Job], models: Mapping[str, str], *, all_rows: bool = True
    ) -> dict[str, JobRecord]:
        def _run_sync(c: sqlite3.Connection) -> list[JobRecord]:
            records, changed = sync(c, jobs, models, all_rows=all_rows)
            self._synced += changed
            return records

        return {r.id: r for r in await self._run(_run_sync)}

    async def insert_new(
        self, jobs: Sequence[Job], models: Mapping[str, str], start: int, stop: int
    ) -> bool:
        def _insert(c: sqlite3.Connection) -> bool:
            stored = insert_new(c, jobs, models, start, stop)
            self._synced += stored
            return stored

        return await self._run(_insert)

    async def records(self) -> list[JobRecord]:
        return await self._run(select_rows)

    async def tally(self) -> list[TallyRow]:
        return await self._run(tally)

    def reading(self) -> AbstractAsyncContextManager[SqliteView]:
        return open_view(self.path)

    @property
    def fleet(self) -> None:
        """A sqlite state is worked by one process (it holds the lock): no fleet."""
        return None

    async def mark_intent(self, job_id: str, at: str | None = None) -> bool:
        sql = (
            f"UPDATE jobs SET status = '{JobStatus.INTENT}', attempts = attempts + 1, "
            "error = NULL, remote_id = NULL, submitted_at = COALESCE(?, submitted_at) "
            "WHERE id = ?"
        )
        await self._commit(lambda c: c.execute(sql, (at, job_id)), durable=True)
        return True

    async def mark_submitted(
        self, job_id: str, remote_id: str, at: str, usage: Mapping[str, Any]
    ) -> None:
        await self._write(
            f"UPDATE jobs SET status = '{JobStatus.SUBMITTED}', remote_id = ?, "
            "submitted_at = ?, usage = ? WHERE id = ?",
            (remote_id, at, json.dumps(usage), job_id),
        )

    async def mark_completed(
        self,
        job_id: str,
        *,
        at: str,
        latency_s: float | None,
        images: Sequence[Mapping[str, Any]],
        cost: Mapping[str, Any],
        usage: Mapping[str, Any],
    ) -> None:
        await self._write(
            f"UPDATE jobs SET status = '{JobStatus.COMPLETED}', completed_at = ?, "
            "latency_s = ?, images = ?, cost = ?, usage = ?, error = NULL WHERE id = ?",
            (at, latency_s, json.dumps(images), json.dumps(cost), json.dumps(usage), job_id),
        )

    async def mark_failed(
        self,
        job_id: str,
        *,
        at: str,
        error: Mapping[str, Any],
        cost: Mapping[str, Any] | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> None:
        await self._write(
            f"UPDATE jobs SET status = '{JobStatus.FAILED}', completed_at = ?, error = ?, "
            "cost = COALESCE(?, cost), usage = COALESCE(?, usage) WHERE id = ?",
            (
                at,
                json.dumps(error),
                json.dumps(cost) if cost is not None else None,
                json.dumps(usage) if usage is not None else None,
                job_id,
            ),
        )

    async def set_images(self, job_id: str, images: Sequence[Mapping[str, Any]]) -> None:
        await self._write("UPDATE jobs SET images = ? WHERE id = ?", (json.dumps(images), job_id))

    async def note_error(self, job_id: str, error: Mapping[str, Any]) -> None:
        await self._write("UPDATE jobs SET error = ? WHERE id = ?", (json.dumps(error), job_id))

    async def add_flag(self, job_id: str, flag: str) -> None:
        await self._write(ADD_FLAG, (flag, job_id, flag))

    async def add_duplicate_cost(
        self, job_id: str, usd: float, credits: float, tasks: Sequence[str] = ()
    ) -> None:
        def _add(c: sqlite3.Connection) -> None:
            # Runs inside the batch's transaction: the read and the update are atomic.
            row = c.execute("SELECT duplicate_cost FROM jobs WHERE id = ?", (job_id,)).fetchone()
            old: dict[str, Any] = json.loads(row[0]) if row and row[0] else {}
            new: dict[str, Any] = {
                "usd": old.get("usd", 0.0) + usd,
                "credits": old.get("credits", 0.0) + credits,
            }
            known: list[str] = old.get("tasks", [])
            named = [*known, *(t for t in tasks if t not in known)]
            if named:
                new["tasks"] = named
            c.execute("UPDATE jobs SET duplicate_cost = ? WHERE id = ?", (json.dumps(new), job_id))

        await self._commit(_add)
