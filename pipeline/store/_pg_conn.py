"""Reaching a PostgreSQL run state: the pool, the batch row, and the reads of a batch.

``connect`` opens a pool on the URL with the schema migrated and the batch row known
(``PgState``, shared by the store and the fleet coordination); ``select_records`` and
``read_counters`` read inside a caller's connection; ``read_snapshot`` reads a batch with
one plain connection (``pipeline status`` from any host). Every failure is a
``StateError`` whose message never holds the URL's password.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from pipeline import _gc
from pipeline.errors import StateError
from pipeline.jobs import Flag, JobStatus
from pipeline.store._base import Counters, Snapshot, Summary
from pipeline.store._pg_schema import migrate
from pipeline.store._records import JobRecord, TallyRow, sort_rows

Conn = psycopg.AsyncConnection[TupleRow]

# The columns of a JobRow, in its order.
COLUMNS = (
    "id, seq, provider, fingerprint, status, remote_id, attempts, submitted_at, "
    "completed_at, latency_s, job, images, cost, usage, error, flags, duplicate_cost, "
    "image_count"
)
_CONNECT: dict[str, Any] = {"connect_timeout": 10, "application_name": "pipeline"}


class PgState:
    """The pool and the batch row that a store (and the fleet coordination) share."""

    def __init__(self, pool: AsyncConnectionPool[Conn], batch_id: int, location: str) -> None:
        self.pool = pool
        self.batch_id = batch_id
        self.location = location

    def error(self, exc: BaseException) -> StateError:
        return StateError(str(exc).replace("\n", " ").strip(), location=self.location)


async def connect(url: str, location: str, *, name: str, output: str) -> PgState:
    """A pool on ``url`` with the schema migrated and the batch ``(name, output)`` known.
    Raises ``StateError`` (unreachable, refused, a newer schema)."""
    try:
        # One plain connection first: a refused or unreachable server fails at once, with
        # its own reason (a pool would retry until its timeout).
        conn = await psycopg.AsyncConnection.connect(url, **_CONNECT)
    except psycopg.Error as exc:
        raise StateError(f"cannot connect: {_reason(exc)}", location=location) from exc
    try:
        async with conn:
            await migrate(conn, location)
            cur = await conn.execute(
                "INSERT INTO pipeline_batches (name, output) VALUES (%s, %s) "
                "ON CONFLICT (output, name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                (name, output),
            )
            row = await cur.fetchone()
            assert row is not None
            batch_id = int(str(row[0]))
            await conn.execute(
                "INSERT INTO pipeline_budget (batch_id) VALUES (%s) ON CONFLICT DO NOTHING",
                (batch_id,),
            )
            await conn.commit()
    except psycopg.Error as exc:
        raise StateError(_reason(exc), location=location) from exc

    async def configure(conn: Conn) -> None:
        await conn.execute("SET synchronous_commit = on")
        await conn.commit()

    pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=4,
        open=False,
        configure=configure,
        timeout=30.0,
        kwargs=_CONNECT,
    )
    try:
        await pool.open(wait=True, timeout=30.0)
    except Exception as exc:
        await pool.close()
        raise StateError(f"cannot connect: {_reason(exc)}", location=location) from exc
    return PgState(pool, batch_id, location)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if "\n" in text else text


async def select_records(
    conn: Conn, batch_id: int, where: str = "", columns: str = COLUMNS
) -> list[JobRecord]:
    cur = await conn.execute(
        f"SELECT {columns} FROM pipeline_jobs WHERE batch_id = %s {where}".encode(),
        (batch_id,),
    )
    rows = await cur.fetchall()
    with _gc.paused():
        return list(map(JobRecord, sort_rows(rows)))


_IS_SUPERSEDED = f"strpos(flags, '\"{Flag.SUPERSEDED}\"') > 0"
# The rows a run needs (``sync_batch(all_rows=False)``): all but the plain pending ones.
NEEDED = (
    f"AND NOT (status = '{JobStatus.PENDING}' AND cost IS NULL AND duplicate_cost IS NULL "
    f"AND images = '[]' AND NOT {_IS_SUPERSEDED}) AND status != '{JobStatus.COMPLETED}'"
)
# One image (most jobs): its path and size read out in SQL, the list left behind.
_FIRST_PATH = "CASE WHEN image_count = 1 THEN images::jsonb -> 0 ->> 'path' END"
_FIRST_BYTES = "CASE WHEN image_count = 1 THEN (images::jsonb -> 0 -> 'bytes')::text END"
DONE = (
    f"SELECT id, provider, {_IS_SUPERSEDED}, remote_id, "
    "CASE WHEN image_count = 1 THEN '' ELSE images END, cost, duplicate_cost, image_count, "
    f"{_FIRST_PATH}, {_FIRST_BYTES} "
    f"FROM pipeline_jobs WHERE batch_id = %s AND status = '{JobStatus.COMPLETED}'"
)
# What a run reads of them: not what only the ledger shows (it reads its own rows): the
# job document, usage, fingerprint, completion time, latency and attempts, most of a
# row's bytes, are constants here (a JobRow of the same layout).
RUN_COLUMNS = (
    "id, seq, provider, '', status, remote_id, 0, submitted_at, NULL, NULL, '', images, "
    "cost, '{}', error, flags, duplicate_cost, image_count"
)
IDENTITY = f"SELECT id, fingerprint, {_IS_SUPERSEDED}, seq FROM pipeline_jobs WHERE batch_id = %s"
TALLY = (
    f"SELECT provider, status, {_IS_SUPERSEDED}, cost, duplicate_cost, count(*), "
    "coalesce(sum(image_count), 0)::bigint FROM pipeline_jobs WHERE batch_id = %s "
    "GROUP BY 1, 2, 3, 4, 5"
)
FAILED = (
    "SELECT id, error FROM pipeline_jobs WHERE batch_id = %s AND "
    f"status = '{JobStatus.FAILED}' AND error IS NOT NULL AND NOT {_IS_SUPERSEDED} "
    "ORDER BY seq"
)


def tally_rows(rows: list[TupleRow]) -> list[TallyRow]:
    return [
        TallyRow(str(p), str(st), bool(sup), c, d, int(n), int(i))
        for p, st, sup, c, d, n, i in rows
    ]


async def read_counters(conn: Conn, batch_id: int) -> Counters:
    cur = await conn.execute(
        "SELECT provider, requests, rate_limited FROM pipeline_counters WHERE batch_id = %s",
        (batch_id,),
    )
    return {str(p): (int(str(r)), int(str(rl))) for p, r, rl in await cur.fetchall()}


def _find_batch(conn: psycopg.Connection[TupleRow], location: str, output: str) -> int:
    """The id of the one batch writing to ``output``. Raises ``StateError``: no schema,
    no such batch, or several batches of different names on that output."""
    version = conn.execute("SELECT to_regclass('pipeline_schema') IS NOT NULL").fetchone()
    if version is None or not version[0]:
        raise StateError("no batch state here (no pipeline schema)", location=location)
    found = conn.execute(
        "SELECT id, name FROM pipeline_batches WHERE output = %s ORDER BY id", (output,)
    ).fetchall()
    if not found:
        raise StateError(f"no batch with output {output!r}", location=location)
    if len(found) > 1:
        names = ", ".join(str(n) for _, n in found)
        raise StateError(f"several batches write to {output!r} ({names})", location=location)
    return int(str(found[0][0]))


def _meta(conn: psycopg.Connection[TupleRow], batch_id: int) -> dict[str, str]:
    rows = conn.execute("SELECT key, value FROM pipeline_meta WHERE batch_id = %s", (batch_id,))
    return {str(k): str(v) for k, v in rows.fetchall()}


def _counters(conn: psycopg.Connection[TupleRow], batch_id: int) -> Counters:
    rows = conn.execute(
        "SELECT provider, requests, rate_limited FROM pipeline_counters WHERE batch_id = %s",
        (batch_id,),
    )
    return {str(p): (int(str(r)), int(str(rl))) for p, r, rl in rows.fetchall()}


def read_snapshot(url: str, location: str, output: str) -> Snapshot:
    """The state of the batch whose output is ``output``, read with a plain connection
    (``pipeline report`` and ``export`` from any host). Raises ``StateError``:
    unreachable, no such batch, or several batches of different names on that output."""
    try:
        with psycopg.connect(url, connect_timeout=10, application_name="pipeline") as conn:
            batch_id = _find_batch(conn, location, output)
            meta = _meta(conn, batch_id)
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM pipeline_jobs WHERE batch_id = %s", (batch_id,)
            ).fetchall()
            counters = _counters(conn, batch_id)
    except psycopg.Error as exc:
        raise StateError(f"cannot read: {_reason(exc)}", location=location) from exc
    with _gc.paused():
        records = list(map(JobRecord, sort_rows(rows)))
    return Snapshot(meta, records, counters)


def read_summary(url: str, location: str, output: str) -> Summary:
    """The counts of the batch whose output is ``output`` (``pipeline status``), read in
    one transaction. Raises ``StateError`` as ``read_snapshot`` does."""
    try:
        with psycopg.connect(url, connect_timeout=10, application_name="pipeline") as conn:
            batch_id = _find_batch(conn, location, output)
            meta = _meta(conn, batch_id)
            tally = tally_rows(conn.execute(TALLY, (batch_id,)).fetchall())
            counters = _counters(conn, batch_id)
            failed = [(str(i), str(e)) for i, e in conn.execute(FAILED, (batch_id,)).fetchall()]
    except psycopg.Error as exc:
        raise StateError(f"cannot read: {_reason(exc)}", location=location) from exc
    return Summary(meta, tally, counters, failed)
