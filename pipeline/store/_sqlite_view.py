"""A read transaction on a sqlite state beside its writer: what a ledger rewrite reads.

The view has its own connection (WAL: the run's writes go on, the view keeps the state as
it was when it began). Records come in ``rowid`` order, which is ``seq`` order: rows are
only ever inserted with a larger ``seq`` than any before (``_sqlite_layout.sync``), and
archiving or restoring a row changes its ``id``, never its rowid. A view checks that as it
reads and, should a row ever break it, reads again sorted by ``seq``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from pipeline import _gc, _threads
from pipeline.errors import StateError
from pipeline.store._base import Counters
from pipeline.store._records import DoneRow, JobRecord, TallyRow, as_row
from pipeline.store._sqlite_layout import COLUMNS, DONE, FAILED, counters, select_rows, tally

_done_row = partial(tuple.__new__, DoneRow)
_IDS_AT_ONCE = 500  # ids per query (sqlite's limit on parameters is higher)


class SqliteView:
    """One read transaction on the state file at ``path``."""

    def __init__(self, conn: sqlite3.Connection, location: str) -> None:
        self._conn = conn
        self._location = location

    def __repr__(self) -> str:
        return f"SqliteView({self._location!r})"

    async def tally(self) -> list[TallyRow]:
        return await _threads.run_sync(tally, self._conn)

    async def counters(self) -> Counters:
        return await _threads.run_sync(counters, self._conn)

    async def failed(self) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = await _threads.run_sync(
            lambda: self._conn.execute(FAILED).fetchall()
        )
        return rows

    def done(self, size: int) -> Generator[list[DoneRow], None, None]:
        try:
            cursor = self._conn.execute(DONE)
            while rows := cursor.fetchmany(size):
                # Built in C: the query gives every field its final type (``superseded``
                # as 0 or 1), and a million rows are read on resume.
                yield list(map(_done_row, rows))
        except sqlite3.Error as exc:
            raise StateError(str(exc), location=self._location) from exc

    async def records_of(self, ids: Sequence[str]) -> list[JobRecord]:
        def read() -> list[JobRecord]:
            found: list[JobRecord] = []
            for start in range(0, len(ids), _IDS_AT_ONCE):
                some = ids[start : start + _IDS_AT_ONCE]
                where = f"WHERE id IN ({', '.join('?' * len(some))})"
                found += select_rows(self._conn, where, params=some)
            found.sort(key=lambda r: r.row.seq)
            return found

        try:
            return await _threads.run_sync(read)
        except sqlite3.Error as exc:
            raise StateError(str(exc), location=self._location) from exc

    def chunks(self, size: int) -> Generator[list[JobRecord], None, None]:
        try:
            yield from self._chunks(size, "rowid", check=True)
        except _OutOfOrder:
            yield from self._chunks(size, "seq", check=False)

    def _chunks(self, size: int, order: str, *, check: bool) -> Iterator[list[JobRecord]]:
        try:
            cursor = self._conn.execute(f"SELECT {COLUMNS} FROM jobs ORDER BY {order}")
            last = -1
            while True:
                with _gc.paused():
                    rows = list(map(as_row, cursor.fetchmany(size)))
                if not rows:
                    return
                if check:
                    for row in rows:
                        if row.seq < last:
                            raise _OutOfOrder
                        last = row.seq
                yield list(map(JobRecord, rows))
        except sqlite3.Error as exc:
            raise StateError(str(exc), location=self._location) from exc


class _OutOfOrder(Exception):
    """A row whose rowid order is not its seq order (never written so; read sorted)."""


@asynccontextmanager
async def open_view(path: Path) -> AsyncIterator[SqliteView]:
    """A view of the state file at ``path``. Raises ``StateError``."""

    def _open() -> sqlite3.Connection:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("BEGIN")
            conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()  # the snapshot starts here
        except BaseException:
            conn.close()
            raise
        return conn

    try:
        conn = await _threads.run_sync(_open)
    except sqlite3.Error as exc:
        raise StateError(str(exc), location=str(path)) from exc
    try:
        yield SqliteView(conn, str(path))
    finally:
        await _threads.run_sync(conn.close)
