"""Rewriting ledger.json while a batch runs.

A rewrite costs O(jobs): at 100k jobs about a second, most of it holding the GIL. So
rewrites are spaced by at least ``LEDGER_INTERVAL_S`` and by ``LEDGER_SPACING`` x the
last rewrite's duration: they take at most 1/21 of the run (under 5 %), whatever its
size, where a fixed interval would make a large batch O(jobs²).

The stamp
---------
A run's last write is recorded in the state (meta ``STAMP_KEY``): the header it wrote and
the identity of the file (``Output.identity``: inode, size, mtime for a folder). A run
drops the stamp before it changes anything, and writes it only once its final ledger is
stored; so a stamp present at the start of a run vouches that ledger.json holds the state
as it is. A rerun that finds nothing to do and changes nothing keeps that file as it is
(its ``updated_at`` is when something last changed) instead of rewriting it: see
``LedgerSink.finish``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import astuple, replace
from functools import partial
from typing import Any

import anyio

from pipeline import _gc, _threads
from pipeline.clock import Clock, utcnow
from pipeline.ledger._document import (
    LEDGER_NAME,
    LedgerHeader,
    WrittenJobs,
    encode_streamed,
    ledger_document,
    ledger_head,
    summarize_tally,
)
from pipeline.outputs import Output
from pipeline.store import JobRecord, RunStore, StateView

LEDGER_INTERVAL_S = 1.0
LEDGER_SPACING = 20.0  # x the last rewrite's duration
_RECORDS_AT_ONCE = 2000  # records a rewrite holds at a time
STAMP_KEY = "ledger"  # meta key of the stamp
# Part of every stamp: a ledger written in another layout is never vouched for.
LEDGER_LAYOUT = 2

RequestCounts = Callable[[], Mapping[str, tuple[int, int]]]
Counted = tuple[dict[str, Any], dict[str, dict[str, Any]]]  # totals, providers


class _Stopped(Exception):
    """A write abandoned by its (cancelled) caller."""


def _until(stop: threading.Event, pieces: Iterable[str]) -> Iterator[str]:
    for piece in pieces:
        if stop.is_set():
            raise _Stopped
        yield piece


def rewrite_pause(last_write_s: float) -> float:
    """Seconds between two ledger rewrites, given how long the last one took."""
    return max(LEDGER_INTERVAL_S, LEDGER_SPACING * last_write_s)


class LedgerSink:
    """Rewrites ledger.json from the state while it is dirty, spaced by
    ``rewrite_pause`` on ``clock``.

    ``requests`` reads the run's request counters per provider (requests, rate limited);
    before each write their growth is committed to the state, so the ledger's figures
    survive a killed process."""

    def __init__(
        self,
        state: RunStore,
        output: Output,
        header: LedgerHeader,
        *,
        clock: Clock,
        requests: RequestCounts | None = None,
    ) -> None:
        self.state = state
        self.output = output
        self.header = header
        self.clock = clock
        self._requests = requests
        self._flushed: dict[str, tuple[int, int]] = {}
        self._dirty = anyio.Event()
        self.last_write_s = 0.0
        self._writing_since: float | None = None
        self._progress = [0, 1]  # records written by the rewrite under way, of all
        self._stopped_guess_s = 0.0  # what a stopped rewrite would have taken

    def mark_dirty(self) -> None:
        """Something changed: rewrite when the spacing allows."""
        self._dirty.set()

    async def flush_counters(self) -> None:
        """Commit the growth of the request counters since the last flush."""
        if self._requests is None:
            return
        for name, now in self._requests().items():
            before = self._flushed.get(name, (0, 0))
            if now != before:
                await self.state.add_counters(name, now[0] - before[0], now[1] - before[1])
                self._flushed[name] = now

    def count_requests(self, requests: RequestCounts) -> None:
        """From now on, commit the growth of these counters before each write."""
        self._requests = requests

    def finish_cost_s(self) -> float:
        """What a rewrite costs: the last one's time, or the time of one stopped (or under
        way) by the share of the records it wrote."""
        guess = self._stopped_guess_s
        if self._writing_since is not None:
            guess = max(guess, self._guess(self.clock.now() - self._writing_since))
        return max(self.last_write_s, guess)

    def _guess(self, elapsed: float) -> float:
        done = self._progress[0] / max(self._progress[1], 1)
        return elapsed / done if done > 0 else max(elapsed, 2 * LEDGER_INTERVAL_S)

    async def write(
        self, *, finished: bool = False, counted: Counted | None = None
    ) -> dict[str, object]:
        """Rewrite ledger.json from a view of the state (``RunStore.reading``): totals
        from its tally, then its records a chunk at a time, never all held. Returns the
        document; its ``jobs`` are read back from the file if anyone asks. ``counted``:
        the totals and providers the view would give (the caller vouches that nothing
        writes to the state meanwhile): its tally is not taken again (at a million jobs,
        about 2 s of a resume).

        Cancelled, it returns once the write under way has stopped at its next piece and
        removed its temporary file."""
        started = self._writing_since = self.clock.now()
        self._progress = [0, 1]
        try:
            await self.flush_counters()
            header = replace(self.header, updated_at=utcnow(), finished=finished)
            async with self.state.reading() as view:
                if counted is None:
                    counted = summarize_tally(await view.tally(), await view.counters())
                totals, providers = counted
                head = ledger_head(header, totals, providers)
                self._progress = [0, int(totals["jobs"])]
                await self._stream(head, view)
        except anyio.get_cancelled_exc_class():
            self._stopped_guess_s = max(
                self._stopped_guess_s, self._guess(self.clock.now() - started)
            )
            raise
        finally:
            self._writing_since = None
        self.last_write_s = self.clock.now() - started
        return {**head, "jobs": WrittenJobs(partial(self.output.read_bytes, LEDGER_NAME))}

    async def _stream(self, head: dict[str, object], view: StateView) -> None:
        stop = threading.Event()
        ended = threading.Event()
        guard = threading.Lock()  # the thread starts reading, or sees the stop: not both
        started = [False]
        progress = self._progress

        def counted() -> Iterator[list[JobRecord]]:
            for chunk in view.chunks(_RECORDS_AT_ONCE):
                progress[0] += len(chunk)
                yield chunk

        def _write() -> None:
            with guard:
                if stop.is_set():
                    return  # cancelled before it began: the view may be gone
                started[0] = True
            try:
                pieces = encode_streamed(head, counted())
                # Closed here, in this thread, also when stopped: the view's reading ends
                # in a worker thread (a PostgreSQL cursor closes through the event loop).
                with _gc.paused(), closing(pieces):
                    self.output.write_atomic(LEDGER_NAME, _until(stop, pieces))
            finally:
                ended.set()

        try:
            await _threads.run_sync(_write, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            # The view closes when this returns: a thread reading it must stop first (at
            # its next piece: its temporary file goes with it). A call cancelled before
            # its thread began never reads it (it may never run at all).
            with guard:
                stop.set()
                reading = started[0]
            if reading:
                with anyio.CancelScope(shield=True):
                    await _threads.run_sync(ended.wait)
            raise

    async def run(self) -> None:
        """Rewrite whenever marked dirty, until cancelled."""
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            await self.write()
            await self.clock.sleep(rewrite_pause(self.last_write_s))

    async def finish(
        self,
        *,
        finished: bool,
        stamp: str | None = None,
        counted: Counted | None = None,
        current: bool = False,
    ) -> dict[str, object]:
        """The run's last write, stamped. ``stamp``: the stamp found at the start of the
        run, when the run has changed nothing since (and has nothing of its own to count):
        if ledger.json is still the file it vouches for, with the header this write would
        give it, the file is kept as it is and the stamp put back (``counted``: the
        state's totals and providers, when the caller has them; ``current``: they are the
        state's as the write will find it, so a rewrite takes them too)."""
        if stamp is not None:
            doc = await self._kept(stamp, finished, counted)
            if doc is not None:
                await self.state.set_meta({STAMP_KEY: stamp})
                return doc
        doc = await self.write(finished=finished, counted=counted if current else None)
        header = replace(
            self.header, updated_at=str(doc["updated_at"]), finished=bool(doc["finished"])
        )
        new_stamp = await _threads.run_sync(self._stamp, header)  # a store's HEAD, maybe
        if new_stamp is not None:
            await self.state.set_meta({STAMP_KEY: new_stamp})
        return doc

    async def document(self, *, finished: bool) -> dict[str, object]:
        """The ledger document of the state now, built and not written (when the output
        cannot take it)."""
        counters = await self.state.counters()
        header = replace(self.header, updated_at=utcnow(), finished=finished)
        records = await self.state.records()
        with _gc.paused():
            return ledger_document(header, records, counters)

    async def _kept(
        self, stamp: str, finished: bool, counted: Counted | None
    ) -> dict[str, object] | None:
        """The ledger document as the file holds it, if ``stamp`` vouches for the file."""
        try:
            data = json.loads(stamp)
            header = LedgerHeader(*data["header"])
        except (ValueError, TypeError, KeyError):
            return None
        wanted = replace(self.header, updated_at=header.updated_at, finished=finished)
        if header != wanted or stamp != await _threads.run_sync(self._stamp, header):
            return None
        if counted is None:
            counted = summarize_tally(await self.state.tally(), await self.state.counters())
        head = ledger_head(header, *counted)
        return {**head, "jobs": WrittenJobs(partial(self.output.read_bytes, LEDGER_NAME))}

    def _stamp(self, header: LedgerHeader) -> str | None:
        """The stamp of ledger.json as written with ``header``; None if it is not there."""
        file = self.output.identity(LEDGER_NAME)
        if file is None:
            return None
        return json.dumps({"layout": LEDGER_LAYOUT, "header": astuple(header), "file": file})
