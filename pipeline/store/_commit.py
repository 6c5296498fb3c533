"""Group commit: many small writes to one sqlite connection share thread hops and commits.

Design note
-----------
A job writes its row three times or more (intent, submitted, completed), and each write
must be committed before the job goes on (the write-ahead protocol in ``state.py``).
Run one by one, every write costs a hop to a worker thread and a commit, and the hops
contend for the GIL with the event loop. So writes are grouped by a
``pipeline._batching.Batcher`` (its design note gives the protocol), and each batch runs
in one transaction.

Durability: the state runs with ``synchronous=NORMAL`` (a commit survives a crash of the
process, not necessarily a power loss), except for a batch holding a *durable* operation
(a job's intent, which precedes its submit): that batch commits with ``synchronous=FULL``,
so the intent is on stable storage before the request leaves the machine (in WAL mode the
fsync also makes every earlier commit durable). The other writes of the protocol may be
lost to a power cut without paying twice: a lost remote id leaves the intent, which is
reconciled; a lost completion is polled and downloaded again.

Invariants: a writer returns only once the transaction holding its operation has
committed; operations commit in the order they were queued; a failing operation fails
only its own writer (the batch is rolled back and replayed one operation per
transaction); a cancelled writer still returns only after its row is committed, as it
would from a plain thread call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable

from pipeline._batching import Batcher, Call

Op = Callable[[sqlite3.Connection], object]
Runner = Callable[[Callable[[sqlite3.Connection], int]], Awaitable[int]]


class _Durable:
    """An operation whose commit must reach stable storage (see the module note)."""

    __slots__ = ("op",)

    def __init__(self, op: Op) -> None:
        self.op = op

    def __call__(self, conn: sqlite3.Connection) -> object:
        return self.op(conn)


def _execute(conn: sqlite3.Connection, batch: list[Call]) -> int:
    """Run ``batch`` (each ``fn`` an ``Op``) in one transaction; on any error, one
    transaction per operation. Returns the number of transactions committed."""
    durable = any(type(w.fn) is _Durable for w in batch)
    conn.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for w in batch:
                w.fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except Exception:  # replayed below, so that each error reaches its own writer
        pass
    else:
        for w in batch:
            w.done = True
        return 1
    for w in batch:
        try:
            conn.execute("BEGIN IMMEDIATE")
            w.fn(conn)
            conn.execute("COMMIT")
            w.done = True
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            w.error = exc
    return sum(w.done for w in batch)


class GroupCommit:
    """The write queue of one connection. ``run`` executes a function of the connection
    in a worker thread, serialised with every other use of it."""

    __slots__ = ("_batcher", "_commits", "_run", "_writes")

    def __init__(self, run: Runner) -> None:
        self._run = run
        self._batcher = Batcher(self._flush)
        self._writes = 0
        self._commits = 0

    @property
    def writes(self) -> int:
        """Operations committed so far."""
        return self._writes

    @property
    def commits(self) -> int:
        """Transactions they took (fewer than ``writes`` when writes were grouped)."""
        return self._commits

    async def commit(self, op: Op, *, durable: bool = False) -> None:
        """Queue ``op`` and return once it is committed (``durable``: fsynced too).
        Raises what ``op`` raised (its transaction was then rolled back)."""
        await self._batcher.call(_Durable(op) if durable else op)

    async def _flush(self, batch: list[Call]) -> None:
        try:
            self._commits += await self._run(lambda c: _execute(c, batch))
        finally:
            self._writes += sum(w.done for w in batch)

    def __repr__(self) -> str:
        return f"GroupCommit(writes={self._writes}, commits={self._commits}, {self._batcher!r})"
