"""Everything one emulator instance holds: config, tasks, counters, limits, images."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from pipeline.clock import Clock, SystemClock
from pipeline.emulator._config import PROVIDERS, EmulatorConfig
from pipeline.emulator._faults import TokenBucket
from pipeline.emulator._images import ImageCache
from pipeline.emulator._stats import Counters, EmulatorStats
from pipeline.emulator._tasks import Task, TaskStore


def iso_utc(epoch: float) -> str:
    """``2023-04-01T12:34:56.789Z`` for an epoch time."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class EmulatorState:
    """The shared state behind one emulator's handlers (one event loop, no locks).

    ``clock`` drives task timelines, rate limits and every wait (``self.clock()`` is its
    monotonic seconds, ``self.sleep`` its sleep); ``wall`` is epoch seconds (timestamps in
    replies).
    """

    __slots__ = ("buckets", "clock", "config", "counters", "images", "rng", "sleep", "store")

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        timer = clock or SystemClock()
        self.clock = timer.now
        self.sleep = timer.sleep
        self.rng = random.Random(config.seed)
        self.store = TaskStore(self.clock, wall)
        self.counters = {p: Counters() for p in PROVIDERS}
        self.buckets: dict[str, TokenBucket | None] = {}
        for p in PROVIDERS:
            rps = config.faults_for(p).max_rps
            self.buckets[p] = None if rps is None else TokenBucket(rps, max(1.0, rps), self.clock())
        self.images = ImageCache(config.image_cache_bytes)

    def __repr__(self) -> str:
        return f"EmulatorState(tasks={len(self.store)}, images={self.images!r})"

    def stats(self) -> EmulatorStats:
        """A snapshot of every provider's counters."""
        now = self.clock()
        snaps = {}
        for p in PROVIDERS:
            lane = self.store.lane(p)
            snaps[p] = self.counters[p].snapshot(lane.in_flight(now), lane.peak)
        return EmulatorStats(wavespeed=snaps["wavespeed"], skills_video=snaps["skills_video"])

    def task_view(self, task: Task) -> dict[str, Any]:
        """A provider-neutral JSON view of a task, for ``GET /_emulator/tasks``."""
        phase = task.phase(self.clock())
        done = task.completed_wall()
        return {
            "id": task.id,
            "provider": task.provider,
            "model": task.model,
            "status": phase.value,
            "outcome": task.outcome.value,
            "input": dict(task.spec.wire_input),
            "usage": dict(task.usage),
            "created_at": iso_utc(task.created_wall),
            "completed_at": iso_utc(done) if done is not None and phase.terminal else None,
            "error_code": task.error_code,
        }


STATE_KEY = web.AppKey("emulator_state", EmulatorState)
