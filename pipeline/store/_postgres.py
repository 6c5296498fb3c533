"""The run state in PostgreSQL (``--state postgresql://...``): one batch of a shared database.

Implements :class:`~pipeline.store._base.RunStore` (its docstring gives the write-ahead
protocol) with psycopg 3 (async, through a ``psycopg_pool`` pool). Sessions run with
``synchronous_commit = on``: a write returns once its commit is durable (a job's intent
before its submit leaves the machine). Writes are grouped as on sqlite: concurrent writes
share a transaction, sent in pipeline mode (one round trip for the batch); a failing
statement fails only its own writer.

A batch is identified by its manifest name and its output location; every process of a
fleet opens the same batch row (``pipeline.store._pg_conn`` connects and reads). The
password of the URL never appears in any message.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from pipeline._batching import Batcher, Call
from pipeline.jobs import Job, JobStatus
from pipeline.store._base import Counters
from pipeline.store._pg_conn import (
    NEEDED,
    RUN_COLUMNS,
    TALLY,
    Conn,
    PgState,
    read_counters,
    select_records,
    tally_rows,
)
from pipeline.store._pg_sync import ADD_FLAG, apply_sync
from pipeline.store._pg_view import PgView, open_view
from pipeline.store._records import JobRecord, TallyRow

# A grouped write: it sends its statement and returns the cursor, read once committed.
Op = Callable[[Conn], Awaitable[psycopg.AsyncCursor[TupleRow]]]

# A settled job holds no reservation and no task slot: its cost is what it spent (the
# budget row and the slot count follow, by trigger, in the same transaction).
_SETTLED = "reserved_usd = 0, reserved_credits = 0, holds_slot = false"


class PostgresStore:
    """The run state of one batch in a PostgreSQL database. Open with ``connect`` and
    wrap; ``close`` closes the pool."""

    def __init__(self, pg: PgState) -> None:
        from pipeline.store._pg_fleet import PgFleet

        self.pg = pg
        self.fleet = PgFleet(pg)
        self._batcher = Batcher(self._flush)
        self._writes = 0
        self.commits = 0

    def __repr__(self) -> str:
        return f"PostgresStore({self.pg.location!r}, batch {self.pg.batch_id})"

    @property
    def location(self) -> str:
        return self.pg.location

    @property
    def writes(self) -> int:
        return self._writes

    async def close(self) -> None:
        await self.pg.pool.close()

    # -- group commit -------------------------------------------------------------------

    async def _flush(self, batch: list[Call]) -> None:
        try:
            async with self.pg.pool.connection() as conn:
                try:
                    async with conn.transaction(), conn.pipeline():
                        cursors = [await call.fn(conn) for call in batch]
                    # In pipeline mode a statement's outcome is known once the pipeline
                    # has synced: here, after the commit.
                    for call, cur in zip(batch, cursors, strict=True):
                        call.result = cur.rowcount
                        call.done = True
                    self.commits += 1
                except psycopg.Error:
                    for call in batch:  # one transaction each: each error to its writer
                        try:
                            async with conn.transaction():
                                cur = await call.fn(conn)
                            call.result = cur.rowcount
                            call.done = True
                            self.commits += 1
                        except psycopg.Error as exc:
                            call.error = self.pg.error(exc)
        except psycopg.Error as exc:
            raise self.pg.error(exc) from exc
        finally:
            self._writes += sum(c.done for c in batch)

    async def _write(self, sql: str, params: Mapping[str, Any]) -> int:
        """Queue one statement for the group commit; the rows it changed, once committed."""
        args = {"b": self.pg.batch_id, **params}

        async def op(conn: Conn) -> psycopg.AsyncCursor[TupleRow]:
            return await conn.execute(sql.encode(), args)

        count: int = await self._batcher.call(op)
        return count

    async def _run(self, fn: Callable[[Conn], Awaitable[Any]]) -> Any:
        try:
            async with self.pg.pool.connection() as conn:
                result = await fn(conn)
                await conn.commit()
                return result
        except psycopg.Error as exc:
            raise self.pg.error(exc) from exc

    # -- meta and counters --------------------------------------------------------------

    async def get_meta(self) -> dict[str, str]:
        async def read(conn: Conn) -> dict[str, str]:
            cur = await conn.execute(
                "SELECT key, value FROM pipeline_meta WHERE batch_id = %s", (self.pg.batch_id,)
            )
            return {str(k): str(v) for k, v in await cur.fetchall()}

        result: dict[str, str] = await self._run(read)
        return result

    async def set_meta(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            await self._write(
                "INSERT INTO pipeline_meta (batch_id, key, value) VALUES (%(b)s, %(k)s, %(v)s) "
                "ON CONFLICT (batch_id, key) DO UPDATE SET value = EXCLUDED.value",
                {"k": key, "v": value},
            )

    async def add_counters(self, provider: str, requests: int, rate_limited: int) -> None:
        await self._write(
            "INSERT INTO pipeline_counters (batch_id, provider, requests, rate_limited) "
            "VALUES (%(b)s, %(p)s, %(r)s, %(rl)s) ON CONFLICT (batch_id, provider) DO UPDATE "
            "SET requests = pipeline_counters.requests + EXCLUDED.requests, "
            "rate_limited = pipeline_counters.rate_limited + EXCLUDED.rate_limited",
            {"p": provider, "r": requests, "rl": rate_limited},
        )

    async def counters(self) -> Counters:
        async def read(conn: Conn) -> Counters:
            return await read_counters(conn, self.pg.batch_id)

        result: Counters = await self._run(read)
        return result

    # -- jobs ----------------------------------------------------------------------------

    async def insert_new(
        self, jobs: Sequence[Job], models: Mapping[str, str], start: int, stop: int
    ) -> bool:
        """Never: a shared batch is synced whole (``sync_batch``), one process at a time."""
        return False

    async def sync_batch(
        self, jobs: Sequence[Job], models: Mapping[str, str], *, all_rows: bool = True
    ) -> dict[str, JobRecord]:
        async def sync(conn: Conn) -> list[JobRecord]:
            b = self.pg.batch_id
            async with conn.transaction():
                # Workers starting together sync one after the other.
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (b,))
                if await apply_sync(conn, b, jobs, models):
                    self._writes += 1
                if all_rows:
                    return await select_records(conn, b)
                return await select_records(conn, b, NEEDED, RUN_COLUMNS)

        return {r.id: r for r in await self._run(sync)}

    async def records(self) -> list[JobRecord]:
        async def read(conn: Conn) -> list[JobRecord]:
            return await select_records(conn, self.pg.batch_id)

        result: list[JobRecord] = await self._run(read)
        return result

    async def tally(self) -> list[TallyRow]:
        async def read(conn: Conn) -> list[TallyRow]:
            cur = await conn.execute(TALLY, (self.pg.batch_id,))
            return tally_rows(await cur.fetchall())

        result: list[TallyRow] = await self._run(read)
        return result

    def reading(self) -> AbstractAsyncContextManager[PgView]:
        return open_view(self.pg)

    async def mark_intent(self, job_id: str, at: str | None = None) -> bool:
        # Fenced by the lease: a process whose lease was taken over writes nothing.
        fence = "" if self.fleet.worker_id is None else " AND worker_id = %(me)s"
        changed = await self._write(
            f"UPDATE pipeline_jobs SET status = '{JobStatus.INTENT}', attempts = attempts + 1, "
            "error = NULL, remote_id = NULL, submitted_at = COALESCE(%(at)s, submitted_at) "
            f"WHERE batch_id = %(b)s AND id = %(id)s{fence}",
            {"id": job_id, "me": self.fleet.worker_id, "at": at},
        )
        return changed == 1

    async def mark_submitted(
        self, job_id: str, remote_id: str, at: str, usage: Mapping[str, Any]
    ) -> None:
        await self._write(
            f"UPDATE pipeline_jobs SET status = '{JobStatus.SUBMITTED}', remote_id = %(r)s, "
            "submitted_at = %(at)s, usage = %(u)s WHERE batch_id = %(b)s AND id = %(id)s",
            {"id": job_id, "r": remote_id, "at": at, "u": json.dumps(usage)},
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
            f"UPDATE pipeline_jobs SET status = '{JobStatus.COMPLETED}', completed_at = %(at)s, "
            "latency_s = %(l)s, images = %(i)s, image_count = %(n)s, cost = %(c)s, "
            f"usage = %(u)s, error = NULL, {_SETTLED} WHERE batch_id = %(b)s AND id = %(id)s",
            {
                "id": job_id,
                "at": at,
                "l": latency_s,
                "i": json.dumps(images),
                "n": len(images),
                "c": json.dumps(cost),
                "u": json.dumps(usage),
            },
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
            f"UPDATE pipeline_jobs SET status = '{JobStatus.FAILED}', completed_at = %(at)s, "
            "error = %(e)s, cost = COALESCE(%(c)s, cost), usage = COALESCE(%(u)s, usage), "
            f"{_SETTLED} WHERE batch_id = %(b)s AND id = %(id)s",
            {
                "id": job_id,
                "at": at,
                "e": json.dumps(error),
                "c": json.dumps(cost) if cost is not None else None,
                "u": json.dumps(usage) if usage is not None else None,
            },
        )

    async def set_images(self, job_id: str, images: Sequence[Mapping[str, Any]]) -> None:
        await self._write(
            "UPDATE pipeline_jobs SET images = %(i)s, image_count = %(n)s "
            "WHERE batch_id = %(b)s AND id = %(id)s",
            {"id": job_id, "i": json.dumps(images), "n": len(images)},
        )

    async def note_error(self, job_id: str, error: Mapping[str, Any]) -> None:
        await self._write(
            "UPDATE pipeline_jobs SET error = %(e)s WHERE batch_id = %(b)s AND id = %(id)s",
            {"id": job_id, "e": json.dumps(error)},
        )

    async def add_flag(self, job_id: str, flag: str) -> None:
        await self._write(ADD_FLAG, {"id": job_id, "flag": flag})

    async def add_duplicate_cost(
        self, job_id: str, usd: float, credits: float, tasks: Sequence[str] = ()
    ) -> None:
        # The tasks that could be the first submit's are named once each.
        named = (
            "(SELECT COALESCE(jsonb_agg(DISTINCT t), '[]'::jsonb) FROM jsonb_array_elements_text("
            "COALESCE(duplicate_cost::jsonb -> 'tasks', '[]'::jsonb) || %(t)s::jsonb) AS t)"
        )
        await self._write(
            "UPDATE pipeline_jobs SET duplicate_cost = (jsonb_build_object("
            "'usd', COALESCE((duplicate_cost::json->>'usd')::float8, 0) + %(usd)s, "
            "'credits', COALESCE((duplicate_cost::json->>'credits')::float8, 0) + %(cr)s"
            f") || CASE WHEN {named} = '[]'::jsonb THEN '{{}}'::jsonb "
            f"ELSE jsonb_build_object('tasks', {named}) END)::text "
            "WHERE batch_id = %(b)s AND id = %(id)s",
            {"id": job_id, "usd": usd, "cr": credits, "t": json.dumps(list(tasks))},
        )
