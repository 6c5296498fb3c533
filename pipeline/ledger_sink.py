"""Rewriting ledger.json while a batch runs.

A rewrite costs O(jobs): at 100k jobs about a second, most of it holding the GIL. So
rewrites are spaced by at least ``LEDGER_INTERVAL_S`` and by ``LEDGER_SPACING`` x the
last rewrite's duration: they take at most about a tenth of the run, whatever its size,
where a fixed interval would make a large batch O(jobs²).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import anyio

from pipeline.lane import Lane
from pipeline.ledger import LedgerHeader, ledger_document, write_json_atomic
from pipeline.outcome import utcnow
from pipeline.records import gc_paused
from pipeline.state import JobRecord, StateStore

LEDGER_INTERVAL_S = 1.0
LEDGER_SPACING = 10.0  # x the last rewrite's duration


def rewrite_pause(last_write_s: float) -> float:
    """Seconds between two ledger rewrites, given how long the last one took."""
    return max(LEDGER_INTERVAL_S, LEDGER_SPACING * last_write_s)


class LedgerSink:
    """Rewrites ledger.json from the state while it is dirty, spaced by
    ``rewrite_pause``.

    Before each write it commits the lanes' request counters (as deltas), so the ledger's
    ``requests`` and ``rate_limited`` survive a killed process."""

    def __init__(
        self, state: StateStore, path: Path, header: LedgerHeader, lanes: dict[str, Lane]
    ) -> None:
        self.state = state
        self.path = path
        self.header = header
        self.lanes = lanes
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
