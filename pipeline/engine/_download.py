"""The download stage: fetch a finished task's images, verify them, record the job.

A job is ``completed`` only once every image is on disk and verified; when any image
fails for good, the images already fetched are removed (a failed job lists none) and the
job fails with code ``download``. Either way the task was paid for, so its cost is
recorded and settled against the budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from anyio.abc import ObjectReceiveStream

from pipeline.clock import Clock
from pipeline.engine._budget import BudgetGuard, Reservation
from pipeline.engine._lane import Lane
from pipeline.engine._outcome import cost_dict, error_dict, utcnow
from pipeline.engine._retry import attempt_then_retry
from pipeline.errors import DownloadError
from pipeline.jobs import Job
from pipeline.outputs._local import Downloader, StoredImage
from pipeline.providers.base import TaskStatus
from pipeline.providers.specs import Cost
from pipeline.store._sqlite import StateStore

DOWNLOAD_ATTEMPTS = 5
DOWNLOAD_WINDOW_MIN_S = 60.0


def _download_retryable(exc: Exception) -> bool:
    return isinstance(exc, DownloadError) and exc.retryable


@dataclass(slots=True)
class Finished:
    """A task that completed at the provider, waiting for its images."""

    job: Job
    lane: Lane
    status: TaskStatus
    reservation: Reservation | None
    started: float


class Completion:
    """Downloads and records finished tasks; shared by the run's download workers."""

    def __init__(
        self,
        *,
        state: StateStore,
        downloader: Downloader,
        budget: BudgetGuard,
        clock: Clock,
        on_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.state = state
        self.downloader = downloader
        self.budget = budget
        self.clock = clock
        self._on_change = on_change

    async def _changed(self) -> None:
        if self._on_change is not None:
            await self._on_change()

    async def worker(self, recv: ObjectReceiveStream[Finished]) -> None:
        """Complete finished tasks from ``recv`` until it closes."""
        async with recv:
            async for item in recv:
                await self._complete(item)

    async def _complete(self, item: Finished) -> None:
        job, lane, status = item.job, item.lane, item.status
        stored: list[StoredImage] = []
        window = max(lane.settings.job_timeout_s, DOWNLOAD_WINDOW_MIN_S)
        try:
            if not status.images:
                raise DownloadError("the task completed without images", url="", retryable=False)
            with anyio.move_on_after(window) as scope:
                for k, ref in enumerate(status.images, start=1):
                    stored.append(await self._download(ref.url, f"{job.id}-{k}"))
            if scope.cancelled_caught:
                raise DownloadError(f"images not downloaded within {window:g} s", url="")
        except DownloadError as exc:
            # A failed job lists no images, so none of its files may stay on disk.
            for image in stored:
                await self.downloader.discard(image)
            cost = lane.adapter.cost(job, status)
            self._settle(item, cost)
            lane.counters.failed += 1
            await self.state.mark_failed(
                job.id,
                at=utcnow(),
                error=error_dict("download", str(exc)),
                cost=cost_dict(cost),
                usage=status.usage,
            )
            await self._changed()
            return
        cost = lane.adapter.cost(job, status)
        self._settle(item, cost)
        await self.state.mark_completed(
            job.id,
            at=utcnow(),
            latency_s=round(self.clock.now() - item.started, 3),
            images=[s.as_dict() for s in stored],
            cost=cost_dict(cost),
            usage=status.usage,
        )
        lane.counters.completed += 1
        lane.counters.images += len(stored)
        await self._changed()

    def _settle(self, item: Finished, cost: Cost) -> None:
        lane = item.lane
        lane.counters.usd += cost.usd or 0.0
        lane.counters.credits += cost.credits or 0.0
        if item.reservation is not None:
            self.budget.settle(item.reservation, cost)
        else:
            self.budget.spent_usd += cost.usd or 0.0
            self.budget.spent_credits += cost.credits or 0.0

    async def _download(self, url: str, stem: str) -> StoredImage:
        """Fetch one image, retrying truncated, corrupt or failed transfers (stamina, with
        jitter); raises the last ``DownloadError``."""
        return await attempt_then_retry(
            lambda: self.downloader.fetch(url, stem),
            on=_download_retryable,
            attempts=DOWNLOAD_ATTEMPTS,
            time_left=lambda: None,
            wait_initial=0.2,
            wait_max=5.0,
            wait_jitter=0.3,
        )
