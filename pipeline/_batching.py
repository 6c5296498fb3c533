"""Batched thread calls: many small blocking calls share one hop to a worker thread.

Design note
-----------
A hop to a worker thread costs more than a small blocking call (a sqlite statement, a
file of a few hundred KB): a queue handoff, a wake-up of the event loop and a contended
GIL. Under load the calls come in bursts, so they are grouped:

- a call joins the *open* batch, the one no thread runs yet, and waits for the batch's
  event; with no open batch, it opens one and *leads* it;
- the leader waits for the batch before it to end (or, with none, lets the tasks that
  are ready run once, so that their calls join), closes its batch and hands it to the
  ``execute`` coroutine, which runs it in a worker thread in one go;
- then it sets the batch's event: every caller of the batch returns.

Invariants: a caller returns only once its call has run (or raised); calls run in the
order they were queued, one batch at a time; waiting is shielded from cancellation, so
a cancelled caller still returns only after its call ran, as it would from a plain
thread call. One event and one thread hop per batch, whatever its size. Users:
``pipeline.store._commit`` (one sqlite transaction per batch) and the downloader (creating,
writing and renaming image files).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel

from pipeline import _threads


@dataclass(slots=True, eq=False)
class Call:
    """One queued call and what became of it (``execute`` sets ``done``/``result`` or
    ``error``)."""

    fn: Callable[..., Any]
    done: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass(slots=True, eq=False)
class _Batch:
    calls: list[Call] = field(default_factory=list)
    ended: anyio.Event = field(default_factory=anyio.Event)


Execute = Callable[[list[Call]], Awaitable[object]]


def run_each(batch: list[Call]) -> None:
    """Run every call of ``batch`` with no argument, each error kept for its own caller.
    Blocking: the ``execute`` of a batcher of independent calls runs this in a thread."""
    for c in batch:
        try:
            c.result = c.fn()
            c.done = True
        except Exception as exc:
            c.error = exc


async def run_each_in_thread(batch: list[Call]) -> None:
    await _threads.run_sync(run_each, batch)


class Batcher:
    """The queue of one kind of blocking call; ``execute`` runs a batch of them."""

    __slots__ = ("_execute", "_open", "_running")

    def __init__(self, execute: Execute = run_each_in_thread) -> None:
        self._execute = execute
        self._open: _Batch | None = None  # calls join it until its leader starts it
        self._running: _Batch | None = None

    async def call(self, fn: Callable[..., Any]) -> Any:
        """Queue ``fn`` and return what it returned once its batch has run; raises what
        it raised."""
        entry = Call(fn)
        batch = self._open
        with anyio.CancelScope(shield=True):
            if batch is not None:
                batch.calls.append(entry)
                await batch.ended.wait()
            else:
                batch = self._open = _Batch([entry])
                await self._lead(batch)
        if entry.error is not None:
            raise entry.error
        return entry.result

    async def _lead(self, batch: _Batch) -> None:
        if self._running is not None:
            await self._running.ended.wait()
        else:
            await anyio.lowlevel.checkpoint()  # ready tasks' calls join this batch
        self._open = None
        self._running = batch
        try:
            await self._execute(batch.calls)
        except BaseException as exc:  # the worker thread itself failed
            for c in batch.calls:
                if not c.done and c.error is None:
                    c.error = exc
        finally:
            self._running = None
            batch.ended.set()

    def __repr__(self) -> str:
        waiting = len(self._open.calls) if self._open is not None else 0
        return f"Batcher(waiting={waiting}, running={self._running is not None})"
