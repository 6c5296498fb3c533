"""Rewriting ledger.json while a batch runs.

A rewrite costs O(jobs): at 100k jobs about a second, most of it holding the GIL. So
rewrites are spaced by at least ``LEDGER_INTERVAL_S`` and by ``LEDGER_SPACING`` x the
last rewrite's duration: they take at most about a tenth of the run, whatever its size,
where a fixed interval would make a large batch O(jobs²).

The stamp
---------
A run's last write is recorded in the state (meta ``STAMP_KEY``): the header it wrote and
the identity of the file (inode, size, mtime). A run drops the stamp before it changes
anything, and writes it only once its final ledger is on disk; so a stamp present at the
start of a run vouches that ledger.json holds the state as it is. A rerun that finds
nothing to do and changes nothing keeps that file as it is (its ``updated_at`` is when
something last changed) instead of rewriting it: see ``LedgerSink.finish``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import astuple, replace
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from pipeline.engine._outcome import utcnow
from pipeline.ledger._document import LedgerHeader, ledger_document, write_json_atomic
from pipeline.store._records import gc_paused
from pipeline.store._sqlite import JobRecord, StateStore

if TYPE_CHECKING:
    from pipeline.engine._lane import Lane

LEDGER_INTERVAL_S = 1.0
LEDGER_SPACING = 10.0  # x the last rewrite's duration
STAMP_KEY = "ledger"  # meta key of the stamp
# Part of every stamp: a ledger written in another layout is never vouched for.
LEDGER_LAYOUT = 1


def rewrite_pause(last_write_s: float) -> float:
    """Seconds between two ledger rewrites, given how long the last one took."""
    return max(LEDGER_INTERVAL_S, LEDGER_SPACING * last_write_s)


class LedgerSink:
    """Rewrites ledger.json from the state while it is dirty, spaced by
    ``rewrite_pause``.

    Before each write it commits the lanes' request counters (as deltas), so the ledger's
    ``requests`` and ``rate_limited`` survive a killed process."""

    def __init__(
        self,
        state: StateStore,
        path: Path,
        header: LedgerHeader,
        lanes: Mapping[str, Lane] | None = None,
    ) -> None:
        self.state = state
        self.path = path
        self.header = header
        self.lanes: Mapping[str, Lane] = lanes or {}
        self._flushed: dict[str, tuple[int, int]] = {}
        self._dirty = anyio.Event()
        self.last_write_s = 0.0

    async def mark_dirty(self) -> None:
        self._dirty.set()

    async def _flush_counters(self) -> None:
        for name, lane in self.lanes.items():
            now = (lane.counters.requests, lane.counters.rate_limited)
            before = self._flushed.get(name, (0, 0))
            if now != before:
                await self.state.add_counters(name, now[0] - before[0], now[1] - before[1])
                self._flushed[name] = now

    async def write(
        self, *, finished: bool = False, records: Sequence[JobRecord] | None = None
    ) -> dict[str, object]:
        """Rewrite ledger.json; ``records``: the state's current records, when the caller
        has them. Returns the document (its ``jobs`` built on access)."""
        started = time.perf_counter()
        await self._flush_counters()
        if records is None:
            records = await self.state.records()
        counters = await self.state.counters()
        header = replace(self.header, updated_at=utcnow(), finished=finished)

        def _build_and_write() -> dict[str, object]:
            with gc_paused():
                doc = ledger_document(header, records, counters)
                write_json_atomic(self.path, doc)
            return doc

        doc = await anyio.to_thread.run_sync(_build_and_write)
        self.last_write_s = time.perf_counter() - started
        return doc

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            await self.write()
            await anyio.sleep(rewrite_pause(self.last_write_s))

    async def finish(
        self, records: Sequence[JobRecord], *, finished: bool, stamp: str | None = None
    ) -> dict[str, object]:
        """The run's last write, stamped. ``stamp``: the stamp found at the start of the
        run, when the run has changed nothing since (and has nothing of its own to count):
        if ledger.json is still the file it vouches for, with the header this write would
        give it, the file is kept as it is and the stamp put back."""
        if stamp is not None:
            doc = await self._kept(stamp, records, finished)
            if doc is not None:
                await self.state.set_meta({STAMP_KEY: stamp})
                return doc
        doc = await self.write(finished=finished, records=records)
        header = replace(
            self.header, updated_at=str(doc["updated_at"]), finished=bool(doc["finished"])
        )
        new_stamp = _stamp(header, self.path)
        if new_stamp is not None:
            await self.state.set_meta({STAMP_KEY: new_stamp})
        return doc

    async def _kept(
        self, stamp: str, records: Sequence[JobRecord], finished: bool
    ) -> dict[str, object] | None:
        """The ledger document as the file holds it, if ``stamp`` vouches for the file."""
        try:
            data = json.loads(stamp)
            header = LedgerHeader(*data["header"])
        except (ValueError, TypeError, KeyError):
            return None
        wanted = replace(self.header, updated_at=header.updated_at, finished=finished)
        if header != wanted or stamp != _stamp(header, self.path):
            return None
        counters = await self.state.counters()
        with gc_paused():
            return ledger_document(header, records, counters)


def _stamp(header: LedgerHeader, path: Path) -> str | None:
    """The stamp of ledger.json at ``path`` as written with ``header``; None if it is not
    there."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    file = [info.st_ino, info.st_size, info.st_mtime_ns]
    return json.dumps({"layout": LEDGER_LAYOUT, "header": astuple(header), "file": file})
