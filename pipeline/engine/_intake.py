"""A new batch stored in parts while its first jobs are sent.

Storing a million new jobs in the state takes seconds (about 12 s on two cores: a row of
a few hundred bytes each). A job must have its row before its intent is written, but not
every job must have one before the first is sent. So when the state holds nothing yet
and the batch is large, the survey stores the first ``FIRST`` jobs (``RunStore
.insert_new``) and hands the rest to an :class:`Intake`, which the run drives beside its
lanes, ``CHUNK`` jobs per transaction. The lanes' feeds (:class:`IntakeFeed`) hand out a
job only once its row is committed.

Why counting suffices: a new batch's plan is all of its jobs, in manifest order, and the
rows are stored in that order; a lane's items are its provider's jobs in that order. So
the k-th item of a lane may go once ``k`` of its provider's jobs are stored.

What it changes, until the intake is done: the state holds only the jobs stored so far
(``pipeline status`` counts those), and ledger.json is first written once every job is
stored. A run stopped before that leaves its final ledger to the next run, whose sync
stores the rest (a crash leaves whole transactions: a part is stored or not).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING

import anyio

from pipeline._logs import get_logger
from pipeline.engine._resume import WorkItem
from pipeline.errors import StateError
from pipeline.jobs import Job
from pipeline.store import RunStore

if TYPE_CHECKING:
    from pipeline.engine._feed import WorkFeed
    from pipeline.engine._lane import Lane

# The scheduler's ``feed``: a lane's feed, given the lane, its items and ``stopped``.
Feeds = Callable[["Lane", list[WorkItem], Callable[[], bool]], "WorkFeed"]

MIN_JOBS = 50_000  # smaller new batches are stored whole (a second or less)
FIRST = 4_000  # stored before anything is sent
CHUNK = 10_000  # per transaction after that: about 0.1 s of the state's connection

_provider = attrgetter("provider")


async def start_intake(
    state: RunStore, jobs: Sequence[Job], models: Mapping[str, str]
) -> Intake | None:
    """Store the first jobs of a large new batch and return what stores the rest; None
    (nothing done) if the batch is small or the state holds anything already."""
    if len(jobs) < MIN_JOBS or not await state.insert_new(jobs, models, 0, FIRST):
        return None
    return Intake(state, jobs, models, stored=min(FIRST, len(jobs)))


class Intake:
    """The jobs of a new batch not yet stored, and the task that stores them (``run``)."""

    def __init__(
        self, state: RunStore, jobs: Sequence[Job], models: Mapping[str, str], *, stored: int
    ) -> None:
        self._state = state
        self._jobs = jobs
        self._models = models
        self.stored = stored  # jobs[:stored] have their rows
        self._first = stored
        self._by_provider = Counter(map(_provider, jobs[:stored]))
        self._moved = anyio.Event()
        self.finished = anyio.Event()
        if self.done:
            self.finished.set()

    def __repr__(self) -> str:
        return f"Intake(stored={self.stored} of {len(self._jobs)})"

    @property
    def done(self) -> bool:
        return self.stored >= len(self._jobs)

    def unstored(self) -> Counter[str]:
        """Jobs without a row yet, by provider."""
        return Counter(map(_provider, self._jobs[self.stored :]))

    async def run(self) -> None:
        """Store the rest, a transaction at a time. Raises ``StateError``."""
        jobs = self._jobs
        started = time.monotonic()  # for run.log only, never for scheduling
        while not self.done:
            start, stop = self.stored, min(len(jobs), self.stored + CHUNK)
            if not await self._state.insert_new(jobs, self._models, start, stop):
                raise StateError(
                    "the state changed while this run was storing its new jobs "
                    "(another process?); rerun to sync it",
                    location=self._state.location,
                )
            self._by_provider.update(map(_provider, jobs[start:stop]))
            self.stored = stop
            moved, self._moved = self._moved, anyio.Event()
            moved.set()
        self.finished.set()
        get_logger().info(
            "stored the batch's %d jobs in the state (the last %d while sending, %.1f s)",
            len(jobs),
            len(jobs) - self._first,
            time.monotonic() - started,
        )

    def feeds(self) -> Feeds:
        """The scheduler's ``feed``: each lane's an :class:`IntakeFeed` of its items."""

        def feed(lane: Lane, items: list[WorkItem], stopped: Callable[[], bool]) -> WorkFeed:
            return IntakeFeed(items, self)

        return feed

    async def wait_for(self, provider: str, n: int) -> None:
        """Return once ``n`` of ``provider``'s jobs have their rows (or all jobs do)."""
        while self._by_provider[provider] < n and not self.done:
            await self._moved.wait()


class IntakeFeed:
    """A lane's plan (its provider's jobs in manifest order), each handed out once its
    row is stored."""

    __slots__ = ("_handed", "_intake", "_items")

    def __init__(self, items: Iterable[WorkItem], intake: Intake) -> None:
        self._items = deque(items)
        self._intake = intake
        self._handed = 0

    async def next(self) -> WorkItem | None:
        if not self._items:
            return None
        item = self._items.popleft()  # before waiting: each item to one worker
        self._handed += 1
        await self._intake.wait_for(item.job.provider, self._handed)
        return item
