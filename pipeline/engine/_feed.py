"""Where a lane's workers get their next job: the run's plan, alone or shared by a fleet.

Alone (``ListFeed``), the plan is the work: each job once, in the plan's order.

In a fleet (``FleetFeed``), a job is worked only once it is leased to this process: the
feed claims the planned jobs a few at a time (``Fleet.claim``: those no live process
holds), re-derives each one's work from its record as it is now (another process may have
moved it on), and skips what it was not granted. When the plan runs out, the feed looks
for what is still open in the batch: jobs a dead process held (their leases expired) are
claimed and worked (their unconfirmed submits reconciled by the resume rules, never
resubmitted blindly); while live processes hold the rest, it waits and looks again; once
nothing is open, the feed ends, so every process of the fleet ends with the batch.

A dead process's tasks also hold their task slots (``Fleet.take_slot``) until someone
settles them. When those slots are all the provider has, every lane worker of the fleet
may be waiting for a slot with a job of its own and never come back for more work: so a
lane in a fleet also has a takeover worker (``FleetFeed.takeover``), which looks only for
such tasks (``Fleet.stale_slots``), claims them and works them in the slots they hold.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

import anyio

from pipeline.clock import Clock
from pipeline.engine._lane import Lane
from pipeline.engine._resume import WorkItem
from pipeline.store import Fleet, JobRecord


class WorkFeed(Protocol):
    async def next(self) -> WorkItem | None:
        """The next job to work, or None when there is none left. Safe to call from
        many tasks at once."""
        ...


class ListFeed:
    """The plan, as it is."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[WorkItem]) -> None:
        self._items = deque(items)

    async def next(self) -> WorkItem | None:
        return self._items.popleft() if self._items else None


class FleetFeed:
    """The plan, claimed a few jobs at a time, then what the fleet left open (see the
    module note). ``rework`` gives a claimed record's work (None: nothing to do); once
    ``stopped()`` (no more submits), only tasks already at the provider are claimed."""

    def __init__(
        self,
        fleet: Fleet,
        lane: Lane,
        items: Iterable[WorkItem],
        rework: Callable[[JobRecord], WorkItem | None],
        *,
        stopped: Callable[[], bool],
        clock: Clock,
        chunk: int,
        poll_s: float,
    ) -> None:
        self._fleet = fleet
        self._lane = lane
        self._planned = deque(items)
        self._rework = rework
        self._stopped = stopped
        self._clock = clock
        self._chunk = max(1, chunk)
        self._poll_s = poll_s
        self._ready: deque[WorkItem] = deque()
        self._lock = anyio.Lock()
        self._finished = False
        self._taken: set[str] = set()  # claimed by ``takeover``

    def __repr__(self) -> str:
        return (
            f"FleetFeed({self._lane.name!r}, planned={len(self._planned)}, "
            f"ready={len(self._ready)}, finished={self._finished})"
        )

    async def next(self) -> WorkItem | None:
        while not self._ready:
            async with self._lock:
                if self._ready:
                    break
                if self._finished:
                    return None
                await self._refill()
        return self._ready.popleft()

    async def _refill(self) -> None:
        if self._stopped():
            # No new submits: what is left to do here is the tasks already paid for.
            kept = deque(w for w in self._planned if w.remote_id is not None)
            self._lane.enqueue(len(kept) - len(self._planned))
            self._planned = kept
        if self._planned:
            chunk = [self._planned.popleft() for _ in range(min(self._chunk, len(self._planned)))]
            granted = {r.id: r for r in await self._fleet.claim([w.job.id for w in chunk])}
            for planned in chunk:
                rec = granted.get(planned.job.id)
                # Not granted (another process has it), or ours already (``takeover``).
                item = self._rework(rec) if rec is not None and rec.id not in self._taken else None
                if item is None:
                    self._lane.enqueue(-1)  # another process has it, or it is done
                else:
                    self._ready.append(item)
            return
        if self._stopped():
            self._finished = True  # others finish the batch (or a rerun does)
            return
        free, held = await self._fleet.open_jobs(self._lane.name)
        for rec in await self._fleet.claim([r.id for r in free[: self._chunk]]):
            item = self._rework(rec)
            if item is not None:
                self._lane.enqueue(1)
                self._ready.append(item)
        if self._ready:
            return
        if not free and not held:
            self._finished = True
            return
        await self._clock.sleep(self._poll_s)

    async def takeover(self) -> WorkItem | None:
        """The next task a dead process left at the provider holding a task slot (claimed
        for this process), waiting and looking again until there is one; None once the
        feed has ended. A claimed job with nothing left to do gives its slot back."""
        while not self._finished:
            ids = await self._fleet.stale_slots(self._lane.name)
            claimed = await self._fleet.claim(ids[:1])
            if not claimed:
                await self._clock.sleep(self._poll_s)
                continue
            rec = claimed[0]
            self._taken.add(rec.id)  # ours now: never handed out from the plan as well
            item = self._rework(rec)
            if item is not None:
                self._lane.enqueue(1)
                return item
            await self._fleet.give_slot(rec.id)  # settled already (died before giving it)
        return None
