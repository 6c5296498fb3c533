"""Emulated tasks: a timeline fixed at submit, read against a monotonic clock.

Design note. No timer runs per task: at submit the task gets its drawn latency and
outcome (``Fate``) and, from the provider's lane, the moment it may start. Its phase at any later
instant is then a pure function of the clock (``Task.phase``), so 2,000 tasks cost 2,000
small records and nothing else.

A lane keeps, per provider, a min-heap of the end times of its unfinished tasks
(``inf`` for a stuck task). With a concurrency limit ``M`` that queues (WaveSpeed), a
second heap of at most ``M`` slot release times gives each new task the earliest slot,
first come first served: ``start = max(now, earliest release)``. Invariant: at no
instant do more than ``M`` of the lane's tasks have ``start <= t < end``.

Retention is part of the timeline too: a task is ``DELETED`` from ``deleted`` on (its
record stays, a few hundred bytes, so the API can say so), and ``purged`` marks when even
that answer stops (both ``inf`` when never).
"""

from __future__ import annotations

import enum
import heapq
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


class Phase(enum.Enum):
    """Provider-neutral task phase; each API spells it its own way."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    DELETED = "deleted"  # retention passed: the task and its outputs are gone

    @property
    def terminal(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED, Phase.DELETED)


class Outcome(enum.Enum):
    """How a task ends, decided at submit (cancelled and timed out are failures that
    WaveSpeed spells with their own status)."""

    COMPLETED = "completed"
    FAILED = "failed"
    STUCK = "stuck"
    CANCELLED = "cancelled"
    TIMED_OUT = "timeout"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What was asked for, in canonical form (``resolution`` lower case: 1k/2k/4k).

    ``wire_input`` is the provider's normalized input, echoed back in its replies.
    """

    prompt: str
    aspect_ratio: str
    resolution: str
    output_format: str
    n: int
    image_urls: tuple[str, ...] = ()
    wire_input: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Task:
    """One emulated task and its whole timeline (monotonic seconds).

    ``submitted`` <= ``started`` (slot granted) <= ``running`` (left the queue) <=
    ``ends`` (terminal; ``inf`` when stuck). ``deleted`` (retention) <= ``purged`` (no
    trace left); both ``inf`` when never. ``created_wall`` is the epoch time of submit.
    """

    id: str
    provider: str
    model: str
    spec: TaskSpec
    usage: Mapping[str, Any]
    created_wall: float
    submitted: float
    started: float
    running: float
    ends: float
    outcome: Outcome
    error_code: str | int | None = None
    error_message: str = ""
    deleted: float = math.inf
    purged: float = math.inf

    def phase(self, now: float) -> Phase:
        """The task's phase at monotonic time ``now``."""
        if now >= self.deleted:
            return Phase.DELETED
        if now < self.running:
            return Phase.QUEUED
        if now < self.ends:
            return Phase.RUNNING
        return Phase.COMPLETED if self.outcome is Outcome.COMPLETED else Phase.FAILED

    def completed_wall(self) -> float | None:
        """Epoch time the task ends, or ``None`` if it never does."""
        if math.isinf(self.ends):
            return None
        return self.created_wall + (self.ends - self.submitted)

    def inference_ms(self) -> int:
        """Processing time in milliseconds (0 while unknown)."""
        return 0 if math.isinf(self.ends) else round((self.ends - self.running) * 1000)

    def next_change(self, now: float) -> float:
        """The next instant after ``now`` at which the task's life changes phase (``inf``
        if none; retention aside)."""
        for t in (self.running, self.ends):
            if now < t:
                return t
        return math.inf


@dataclass(slots=True)
class Lane:
    """One provider's unfinished tasks, for in-flight counts and queued concurrency."""

    ends: list[float] = field(default_factory=list)
    slots: list[float] = field(default_factory=list)
    peak: int = 0

    def in_flight(self, now: float) -> int:
        """Tasks submitted and not yet terminal at ``now``."""
        while self.ends and self.ends[0] <= now:
            heapq.heappop(self.ends)
        return len(self.ends)

    def slot_start(self, now: float, limit: int) -> float:
        """Earliest start for a new task under a queued concurrency ``limit``."""
        if len(self.slots) < limit:
            return now
        return max(now, heapq.heappop(self.slots))

    def admit(self, task: Task, *, queued_limit: int | None) -> None:
        """Record a new task's end (and its slot when concurrency is queued)."""
        heapq.heappush(self.ends, task.ends)
        if queued_limit is not None:
            heapq.heappush(self.slots, task.ends)
        self.peak = max(self.peak, self.in_flight(task.submitted))


@dataclass(frozen=True, slots=True)
class Fate:
    """A task's drawn latency and outcome."""

    latency_s: float
    queue_s: float
    outcome: Outcome
    error_code: str | int | None = None
    error_message: str = ""


class TaskStore:
    """All tasks of one emulator, by id, with one lane per provider.

    ``clock`` is monotonic seconds; ``wall`` epoch seconds (injectable for tests).
    """

    __slots__ = ("_by_provider", "_lanes", "_tasks", "clock", "wall")

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.wall = wall
        self._tasks: dict[str, Task] = {}
        self._by_provider: dict[str, dict[str, Task]] = {}
        self._lanes: dict[str, Lane] = {}

    def __repr__(self) -> str:
        return f"TaskStore(tasks={len(self._tasks)})"

    def __len__(self) -> int:
        return len(self._tasks)

    def lane(self, provider: str) -> Lane:
        """The provider's lane (created on first use)."""
        lane = self._lanes.get(provider)
        if lane is None:
            lane = self._lanes[provider] = Lane()
        return lane

    def new_id(self, prefix: str = "") -> str:
        """A fresh task id: ``prefix`` and 32 random hex digits.

        Not from the seeded generator on purpose: ids must stay unique across emulator
        instances, or a resumed run could poll a new instance's task under an old id.
        """
        return f"{prefix}{uuid.uuid4().hex}"

    def create(
        self,
        task_id: str,
        *,
        provider: str,
        model: str,
        spec: TaskSpec,
        usage: Mapping[str, Any],
        fate: Fate,
        queued_limit: int | None = None,
        retention_s: float | None = None,
        purge_s: float | None = None,
    ) -> Task:
        """Create and store a task whose timeline starts now (or when a slot frees),
        deleted ``retention_s`` after now and purged ``purge_s`` after that (``None``:
        never)."""
        now = self.clock()
        lane = self.lane(provider)
        started = now if queued_limit is None else lane.slot_start(now, queued_limit)
        running = started + min(fate.queue_s, fate.latency_s)
        ends = math.inf if fate.outcome is Outcome.STUCK else started + fate.latency_s
        deleted = math.inf if retention_s is None else now + retention_s
        purged = math.inf if purge_s is None else deleted + purge_s
        task = Task(
            id=task_id,
            provider=provider,
            model=model,
            spec=spec,
            usage=usage,
            created_wall=self.wall(),
            submitted=now,
            started=started,
            running=running,
            ends=ends,
            outcome=fate.outcome,
            error_code=fate.error_code,
            error_message=fate.error_message,
            deleted=deleted,
            purged=purged,
        )
        lane.admit(task, queued_limit=queued_limit)
        self._tasks[task_id] = task
        self._by_provider.setdefault(provider, {})[task_id] = task
        return task

    def get(self, task_id: str, provider: str | None = None) -> Task | None:
        """The task with this id (of this provider, when given), or ``None``."""
        task = self._tasks.get(task_id)
        if task is None or (provider is not None and task.provider != provider):
            return None
        return task

    def delete(self, task_id: str, provider: str) -> bool:
        """Forget a task (its concurrency slot stays booked until its end time)."""
        if self.get(task_id, provider) is None:
            return False
        del self._tasks[task_id]
        del self._by_provider[provider][task_id]
        return True

    def tasks(self, provider: str | None = None) -> Iterator[Task]:
        """Tasks in submit order, of one provider or all."""
        if provider is None:
            return iter(list(self._tasks.values()))
        return iter(list(self._by_provider.get(provider, {}).values()))
