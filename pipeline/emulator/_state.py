"""Everything one emulator instance holds: config, tasks, counters, limits, images."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from pipeline.clock import Clock, SystemClock
from pipeline.emulator._config import PROVIDERS, EmulatorConfig
from pipeline.emulator._images import ImageCache
from pipeline.emulator._limits import ImageWindow, TokenBucket
from pipeline.emulator._stats import Counters, EmulatorStats
from pipeline.emulator._tasks import Task, TaskStore
from pipeline.emulator._urls import file_path, signed_query
from pipeline.emulator._wire import error_reply


def iso_utc(epoch: float) -> str:
    """``2023-04-01T12:34:56.789Z`` for an epoch time."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class EmulatorState:
    """The shared state behind one emulator's handlers (one event loop, no locks).

    ``clock`` drives task timelines, rate limits and every wait (``self.clock()`` is its
    monotonic seconds, ``self.sleep`` its sleep). ``self.wall()`` is epoch seconds for
    timestamps in replies and signed URLs: ``wall`` read once at start, then moved by the
    clock, so virtual time moves ``created_at``, listings and URL expiry as well.
    """

    __slots__ = (
        "buckets",
        "clock",
        "config",
        "counters",
        "downloaded",
        "images",
        "rng",
        "sleep",
        "store",
        "url_secret",
        "wall",
        "windows",
    )

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
        started, started_wall = self.clock(), wall()
        self.wall: Callable[[], float] = lambda: started_wall + (self.clock() - started)
        self.rng = random.Random(config.seed)
        self.store = TaskStore(self.clock, self.wall)
        self.counters = {p: Counters() for p in PROVIDERS}
        self.buckets: dict[str, TokenBucket | None] = {}
        self.windows: dict[str, ImageWindow | None] = {}
        for p in PROVIDERS:
            profile = config.faults_for(p)
            rps = profile.max_rps
            self.buckets[p] = None if rps is None else TokenBucket(rps, max(1.0, rps), self.clock())
            ipm = profile.images_per_minute
            self.windows[p] = None if ipm is None else ImageWindow(ipm)
        self.images = ImageCache(config.image_cache_bytes, real_size=config.real_size_images)
        self.url_secret = os.urandom(16)
        self.downloaded: set[tuple[str, int]] = set()

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

    def error(
        self,
        provider: str,
        status: int,
        message: str | None = None,
        *,
        code: str | int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        """An error reply in the provider's shape (its profile's ``error_shape``), counted."""
        shape = self.config.faults_for(provider).error_shape
        return error_reply(
            self.counters[provider],
            provider,
            status,
            message,
            code=code,
            headers=headers,
            shape=shape,
        )

    def image_url(self, task: Task, k: int, origin: str) -> str:
        """Image ``k`` of ``task`` as this reply shows it: signed with a fresh expiry when
        the provider's ``url_ttl_s`` is set."""
        path = file_path(task.id, k, task.spec.output_format)
        ttl = self.config.faults_for(task.provider).url_ttl_s
        if ttl is None:
            return origin + path
        expires_ms = int((self.wall() + ttl) * 1000)
        return f"{origin}{path}?{signed_query(self.url_secret, path, expires_ms)}"

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
