"""A read transaction on a PostgreSQL batch beside its writers: what a ledger rewrite reads.

``REPEATABLE READ, READ ONLY`` on a connection of the store's pool: the view sees the batch
as it was at its first read while the run (and a fleet) go on writing. Records come
through a server-side cursor in ``seq`` order (the ``(batch_id, seq)`` index), a chunk per
fetch, fetched from the worker thread that iterates them by a call into the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio.from_thread
import psycopg
from psycopg.rows import TupleRow

from pipeline import _gc
from pipeline.store._base import Counters
from pipeline.store._pg_conn import (
    COLUMNS,
    DONE,
    FAILED,
    TALLY,
    Conn,
    PgState,
    read_counters,
    tally_rows,
)
from pipeline.store._records import DoneRow, JobRecord, TallyRow, as_row, sort_rows

T = TypeVar("T")


class PgView:
    """One read transaction on the batch ``pg.batch_id``, on ``conn``."""

    def __init__(self, conn: Conn, pg: PgState) -> None:
        self._conn = conn
        self._pg = pg

    def __repr__(self) -> str:
        return f"PgView({self._pg.location!r}, batch {self._pg.batch_id})"

    async def tally(self) -> list[TallyRow]:
        try:
            cur = await self._conn.execute(TALLY, (self._pg.batch_id,))
            return tally_rows(await cur.fetchall())
        except psycopg.Error as exc:
            raise self._pg.error(exc) from exc

    async def counters(self) -> Counters:
        try:
            return await read_counters(self._conn, self._pg.batch_id)
        except psycopg.Error as exc:
            raise self._pg.error(exc) from exc

    async def failed(self) -> list[tuple[str, str]]:
        try:
            cur = await self._conn.execute(FAILED, (self._pg.batch_id,))
            return [(str(i), str(e)) for i, e in await cur.fetchall()]
        except psycopg.Error as exc:
            raise self._pg.error(exc) from exc

    def done(self, size: int) -> Generator[list[DoneRow], None, None]:
        def convert(rows: list[TupleRow]) -> list[DoneRow]:
            return [
                DoneRow(str(i), str(p), bool(s), r, str(im), c, d, int(n), fp, _size(fb))
                for i, p, s, r, im, c, d, n, fp, fb in rows
            ]

        return self._fetched("pipeline_done", DONE.encode(), size, convert)

    async def records_of(self, ids: Sequence[str]) -> list[JobRecord]:
        try:
            cur = await self._conn.execute(
                f"SELECT {COLUMNS} FROM pipeline_jobs WHERE batch_id = %s AND id = ANY(%s)"
                "".encode(),
                (self._pg.batch_id, list(ids)),
            )
            rows = await cur.fetchall()
        except psycopg.Error as exc:
            raise self._pg.error(exc) from exc
        with _gc.paused():
            return list(map(JobRecord, sort_rows(rows)))

    def chunks(self, size: int) -> Generator[list[JobRecord], None, None]:
        def convert(rows: list[TupleRow]) -> list[JobRecord]:
            with _gc.paused():
                return list(map(JobRecord, map(as_row, rows)))

        sql = f"SELECT {COLUMNS} FROM pipeline_jobs WHERE batch_id = %s ORDER BY seq"
        return self._fetched("pipeline_view", sql.encode(), size, convert)

    def _fetched(
        self, name: str, sql: bytes, size: int, convert: Callable[[list[TupleRow]], list[T]]
    ) -> Generator[list[T], None, None]:
        """The rows of ``sql`` (on the batch id) through a server-side cursor, ``size``
        at a time, each fetch a call into the event loop from the iterating thread."""
        cursor = self._conn.cursor(name=name)

        async def start() -> None:
            await cursor.execute(sql, (self._pg.batch_id,))

        async def fetch() -> list[T]:
            return convert(await cursor.fetchmany(size))

        try:
            anyio.from_thread.run(start)
            while chunk := anyio.from_thread.run(fetch):
                yield chunk
        except psycopg.Error as exc:
            raise self._pg.error(exc) from exc
        finally:
            anyio.from_thread.run(cursor.close)


@asynccontextmanager
async def open_view(pg: PgState) -> AsyncIterator[PgView]:
    """A view of the batch, on a connection of its pool. Raises ``StateError``."""
    try:
        async with pg.pool.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            # The snapshot is taken by the first query, here: not by a later read.
            await conn.execute("SELECT 1 FROM pipeline_batches WHERE id = %s", (pg.batch_id,))
            yield PgView(conn, pg)
    except psycopg.Error as exc:
        raise pg.error(exc) from exc


def _size(text: str | None) -> int:
    """A size read as JSON text: -1 unless a whole number."""
    return int(text) if text is not None and text.isascii() and text.isdigit() else -1
