"""The engine's parts for a batch shared by many processes, built on a store's ``Fleet``.

The lanes and the scheduler use the same interfaces alone and in a fleet; the runner
(the composition root) chooses these implementations when the store offers a fleet:

- ``FleetLimiter``: the provider's request rate for the whole fleet. Slots come from the
  shared GCRA (``Fleet.rate_slots``), a few per round trip, and are waited for on the
  local clock; a 429 pauses and slows everyone (applied on the next refill), and
  sustained success regrows the shared rate.
- ``FleetSlots``: a task slot per job before its task is created (or reattached), held
  until the task is terminal, counted across the fleet (``Fleet.take_slot``); a full
  provider is polled until a slot frees.
- ``FleetBudget`` (``pipeline.engine._fleet_budget``): the shared budget, reserved
  under its lock; spend is what the jobs' rows say they cost.

``key_id`` names a provider account without naming its key (a hash of it): processes on
one key share its limits, whatever batch they run.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from pipeline.clock import Clock
from pipeline.engine._feed import FleetFeed
from pipeline.engine._fleet_budget import FleetBudget
from pipeline.engine._lane import Lane
from pipeline.engine._resume import WorkItem
from pipeline.errors import StateError
from pipeline.jobs import Budget, ProviderSettings
from pipeline.store import Fleet, JobRecord

REFILL_MAX = 4  # request slots taken per round trip, at most
CLAIM_MAX = 8  # jobs claimed per round trip, at most
SLOT_POLL_S = (0.05, 1.0)  # waiting for a task slot: first and longest pause between tries


def key_id(api_key: str) -> str:
    """A provider account's name in the shared limits: never the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class FleetLimiter:
    """Spaces this process's requests within the fleet's shared rate (see the module
    note); the lane's ``RateLimiter`` interface."""

    __slots__ = (
        "_clock",
        "_decrease",
        "_fleet",
        "_floor",
        "_increase",
        "_key",
        "_lock",
        "_pause",
        "_provider",
        "_rate",
        "_recover",
        "_recover_after",
        "_slots",
        "_streak",
        "_waiting",
    )

    def __init__(
        self,
        fleet: Fleet,
        provider: str,
        key: str,
        rate: float,
        *,
        clock: Clock,
        decrease: float = 0.7,
        increase: float = 0.1,
        recover_after: int = 10,
    ) -> None:
        self._fleet = fleet
        self._provider = provider
        self._key = key
        self._rate = rate
        self._clock = clock
        self._decrease = decrease
        self._increase = increase
        self._recover_after = recover_after
        self._floor = 1 / 16
        self._slots: deque[float] = deque()
        self._lock = anyio.Lock()
        self._waiting = 0
        self._pause = 0.0  # a 429's pause, to apply on the next refill
        self._recover = False
        self._streak = 0

    def __repr__(self) -> str:
        return f"FleetLimiter({self._provider!r}, slots ahead={len(self._slots)})"

    @property
    def rate(self) -> float:
        return self._rate

    async def acquire(self, weight: int = 1) -> None:
        """Wait for this caller's slot of the shared rate (``weight`` units: taken
        together, from the shared state directly)."""
        if weight > 1:
            first, _ = await self._fleet.rate_slots(self._provider, self._key, weight)
            if first > 0:
                await self._clock.sleep(first)
            return
        self._waiting += 1
        try:
            while not self._slots:
                async with self._lock:
                    if not self._slots:
                        await self._refill()
            start = self._slots.popleft()
        finally:
            self._waiting -= 1
        delay = start - self._clock.now()
        if delay > 0:
            await self._clock.sleep(delay)

    async def _refill(self) -> None:
        if self._pause > 0:
            pause, self._pause = self._pause, 0.0
            self._slots.clear()  # taken before the 429: the fleet's pause supersedes them
            await self._fleet.rate_pause(
                self._provider, self._key, pause, self._decrease, self._floor
            )
            self._rate *= self._decrease
        if self._recover:
            self._recover = False
            await self._fleet.rate_recover(self._provider, self._key, self._increase)
        n = min(REFILL_MAX, self._waiting)
        first, interval = await self._fleet.rate_slots(self._provider, self._key, n)
        now = self._clock.now()
        self._rate = 1.0 / interval
        self._slots.extend(now + first + i * interval for i in range(n))

    def pause(self, seconds: float) -> None:
        """A 429: every process of the fleet waits ``seconds`` (from the next refill) and
        the shared rate drops."""
        self._streak = 0
        self._pause = max(self._pause, seconds)
        self._slots.clear()

    def record_success(self) -> None:
        self._streak += 1
        if self._streak >= self._recover_after:
            self._streak = 0
            self._recover = True


class FleetSlots:
    """A provider's tasks in flight across the fleet (see the module note)."""

    def __init__(self, fleet: Fleet, provider: str, key: str, limit: int, clock: Clock) -> None:
        self._fleet = fleet
        self._provider = provider
        self._key = key
        self._limit = limit
        self._clock = clock

    @asynccontextmanager
    async def hold(self, job_id: str) -> AsyncIterator[None]:
        """Hold ``job_id``'s slot for the block (waiting for one to free)."""
        pause = SLOT_POLL_S[0]
        while not await self._fleet.take_slot(job_id, self._provider, self._key, self._limit):
            await self._clock.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(SLOT_POLL_S[1], pause * 2)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await self._fleet.give_slot(job_id)


class FleetRun:
    """This process's part in a fleet for one run: joining (a worker row with a lease),
    the lanes' shared limits, the shared budget, the claiming feeds, the heartbeat, and
    leaving (every lease given back)."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        clock: Clock,
        lease_s: float,
        budget: Budget,
        rework: Callable[[JobRecord], WorkItem | None],
    ) -> None:
        self.fleet = fleet
        self.clock = clock
        self.lease_s = lease_s
        self.budget = FleetBudget(fleet, budget, clock)
        self._rework = rework

    def __repr__(self) -> str:
        return f"FleetRun({self.fleet!r}, lease {self.lease_s:g} s)"

    async def join(self) -> None:
        await self.fleet.join(host=socket.gethostname(), pid=os.getpid(), lease_s=self.lease_s)

    async def leave(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.fleet.leave()

    async def lane_parts(
        self,
        provider: str,
        api_key: str,
        settings: ProviderSettings,
        images_per_minute: float | None,
    ) -> tuple[FleetLimiter, FleetLimiter | None, FleetSlots]:
        """The shared request limiter, images limiter (None: no images-per-minute limit)
        and task slots of one provider's lane."""
        key = key_id(api_key)
        await self.fleet.limits(provider, key, settings.requests_per_second)
        limiter = FleetLimiter(
            self.fleet, provider, key, settings.requests_per_second, clock=self.clock
        )
        images = None
        if images_per_minute:
            await self.fleet.limits(provider, key + ":images", images_per_minute / 60)
            images = FleetLimiter(
                self.fleet, provider, key + ":images", images_per_minute / 60, clock=self.clock
            )
        slots = FleetSlots(self.fleet, provider, key, settings.max_concurrent, self.clock)
        return limiter, images, slots

    def feed(self, lane: Lane, items: list[WorkItem], stopped: Callable[[], bool]) -> FleetFeed:
        """The lane's work, claimed (a few jobs per claim: leases are not hoarded); once
        submitting ``stopped``, only jobs already at the provider are claimed."""
        return FleetFeed(
            self.fleet,
            lane,
            items,
            self._rework,
            stopped=stopped,
            clock=self.clock,
            chunk=min(CLAIM_MAX, max(1, lane.settings.max_concurrent // 2)),
            poll_s=min(5.0, max(0.5, self.lease_s / 6)),
        )

    async def heartbeat(self, lost: Callable[[str], None]) -> None:
        """Renew the lease every third of it, until cancelled. When it cannot be renewed
        for two thirds of a lease (the database is unreachable, or this worker was
        declared gone), ``lost`` is told: the process must stop submitting, as others may
        take its jobs over."""
        last = self.clock.now()
        while True:
            await self.clock.sleep(self.lease_s / 3)
            try:
                alive = await self.fleet.beat()
            except StateError:
                alive = True  # unknown: judged by the time since the last renewal
            else:
                if not alive:
                    lost("this process's lease was given up (declared gone)")
                    return
                last = self.clock.now()
            if self.clock.now() - last > self.lease_s * 2 / 3:
                lost(f"the shared state has not answered for {self.clock.now() - last:.0f} s")
                return
