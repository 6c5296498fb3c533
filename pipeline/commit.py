"""Group commit: many small writes to one sqlite connection share thread hops and commits.

Design note
-----------
A job writes its row three times or more (intent, submitted, completed), and each write
must be committed before the job goes on (the write-ahead protocol in ``state.py``).
Run one by one, every write costs a hop to a worker thread and a commit, and the hops
contend for the GIL with the event loop. So writes are grouped:

- a write queues its operation and waits on its own event;
- the first writer that finds no flush under way *leads*: it lets the tasks that are
  ready run once (their writes join), takes the whole queue, and runs it in one
  transaction in a worker thread;
- it then wakes every writer of the batch, and passes the lead to the first operation
  queued meanwhile (whose writer wakes up and flushes the next batch).

Invariants: a writer returns only once the transaction holding its operation has
committed; operations commit in the order they were queued; a failing operation fails
only its own writer (the batch is rolled back and replayed one operation per
transaction); waiting is shielded from cancellation, so a cancelled writer still returns
only after its row is committed, as it would from a plain thread call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.lowlevel

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], object]
Runner = Callable[[Callable[[sqlite3.Connection], int]], Awaitable[int]]


@dataclass(slots=True, eq=False)
class _Write:
    """One queued operation and what became of it."""

    op: Op
    wake: anyio.Event = field(default_factory=anyio.Event)
    lead: bool = False  # woken to flush the queue, not because it is done
    committed: bool = False
    error: BaseException | None = None


def _execute(conn: sqlite3.Connection, batch: list[_Write]) -> int:
    """Run ``batch`` in one transaction; on any error, one transaction per operation.
    Returns the number of transactions committed."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for w in batch:
                w.op(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except Exception:  # replayed below, so that each error reaches its own writer
        pass
    else:
        for w in batch:
            w.committed = True
        return 1
    for w in batch:
        try:
            conn.execute("BEGIN IMMEDIATE")
            w.op(conn)
            conn.execute("COMMIT")
            w.committed = True
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            w.error = exc
    return sum(w.committed for w in batch)


class GroupCommit:
    """The write queue of one connection. ``run`` executes a function of the connection
    in a worker thread, serialised with every other use of it."""

    __slots__ = ("_commits", "_leading", "_queue", "_run", "_writes")

    def __init__(self, run: Runner) -> None:
        self._run = run
        self._queue: list[_Write] = []
        self._leading = False
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

    async def commit(self, op: Op) -> None:
        """Queue ``op`` and return once it is committed. Raises what ``op`` raised (its
        transaction was then rolled back)."""
        entry = _Write(op)
        self._queue.append(entry)
        with anyio.CancelScope(shield=True):
            if self._leading:
                await entry.wake.wait()
            else:
                self._leading = entry.lead = True
                await anyio.lowlevel.checkpoint()  # ready tasks' writes join this batch
            if entry.lead:
                await self._flush()
        if entry.error is not None:
            raise entry.error

    async def _flush(self) -> None:
        batch, self._queue = self._queue, []
        try:
            self._commits += await self._run(lambda c: _execute(c, batch))
        except BaseException as exc:  # the worker thread itself failed
            for w in batch:
                if not w.committed and w.error is None:
                    w.error = exc
        finally:
            self._writes += sum(w.committed for w in batch)
            for w in batch:
                w.wake.set()
            if self._queue:
                self._queue[0].lead = True
                self._queue[0].wake.set()
            else:
                self._leading = False

    def __repr__(self) -> str:
        return (
            f"GroupCommit(queued={len(self._queue)}, writes={self._writes}, "
            f"commits={self._commits})"
        )
