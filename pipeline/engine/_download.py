"""The download stage: fetch a finished task's images, verify and store them, record the job.

A job is ``completed`` only once every image is stored and verified; when any image fails
for good, the images already stored are removed (a failed job lists none) and the job
fails with code ``download``, unless the output itself failed (a full disk, a refused
bucket: ``StorageFailed``, raised to the scheduler, which ends the run): then the job
stays submitted, its task paid and waiting for a rerun's download. Either way the task
was paid for, so its cost is settled against the budget.

Fresh URLs: providers hand out signed image URLs that expire. A download the server
refuses (403, 404, 410) or that is cut short every time is retried with the URLs of a
new poll of the task (``Finished.refresh``, at most ``REFRESHES`` times a job), never by
submitting the job again. A poll that says the outputs are gone (the provider's retention
passed, the task was deleted) fails the job with code ``expired``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from pipeline.clock import Clock, utcnow
from pipeline.engine._budget import Reservation, Spending
from pipeline.engine._outcome import cost_dict, error_dict
from pipeline.engine._retry import attempt_then_retry
from pipeline.errors import (
    DownloadError,
    ErrorCode,
    ProviderError,
    StorageFailed,
    storage_failure,
)
from pipeline.jobs import Job
from pipeline.outputs import Output, StoredImage
from pipeline.providers.base import ImageRef, TaskState, TaskStatus
from pipeline.providers.specs import Cost
from pipeline.store import RunStore

DOWNLOAD_ATTEMPTS = 5
DOWNLOAD_WINDOW_MIN_S = 60.0
REFRESHES = 3  # new polls of a task for fresh image URLs, per job

Refresh = Callable[[], Awaitable[TaskStatus]]


def _download_retryable(exc: Exception) -> bool:
    return isinstance(exc, DownloadError) and exc.retryable


@dataclass(frozen=True, slots=True)
class Finished:
    """A task that completed at the provider, waiting for its images. ``cost``: what it
    cost by the provider's rule; ``started``: clock time the job started; ``window_s``:
    how long its images may take."""

    job: Job
    status: TaskStatus
    cost: Cost
    reservation: Reservation | None
    started: float
    window_s: float
    refresh: Refresh | None = None  # a new poll of the task (fresh image URLs)


class _Expired(Exception):
    """The provider no longer has the task's outputs."""


class DownloadStage:
    """Downloads and records finished tasks; shared by the run's download workers."""

    def __init__(
        self,
        *,
        state: RunStore,
        output: Output,
        budget: Spending,
        clock: Clock,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.state = state
        self.output = output
        self.budget = budget
        self.clock = clock
        self._on_change = on_change or (lambda: None)

    async def complete(self, item: Finished) -> int | None:
        """Store ``item``'s images and record the job: the number of images stored, or
        None when the job failed (``download``)."""
        job, status = item.job, item.status
        stored: list[StoredImage] = []
        deadline = self.clock.now() + item.window_s
        try:
            if not status.images:
                raise DownloadError("the task completed without images", url="", retryable=False)
            with self.clock.move_on_at(deadline) as scope:
                stored = await self._download_all(item)
            if scope.cancelled_caught:
                raise DownloadError(f"images not downloaded within {item.window_s:g} s", url="")
        except (DownloadError, _Expired, StorageFailed) as exc:
            # A failed job lists no images, so none of its files may stay behind.
            for image in stored:
                await self.output.discard(image)
            await self._settle(item)
            failure = storage_failure(exc, self.output.location)
            if failure is not None:
                # Not the job's fault: it stays submitted (paid), for a rerun to download.
                raise failure from exc
            code = ErrorCode.EXPIRED if isinstance(exc, _Expired) else ErrorCode.DOWNLOAD
            await self.state.mark_failed(
                job.id,
                at=utcnow(),
                error=error_dict(code, str(exc)),
                cost=cost_dict(item.cost),
                usage=status.usage,
            )
            self._on_change()
            return None
        await self._settle(item)
        await self.state.mark_completed(
            job.id,
            at=utcnow(),
            latency_s=round(self.clock.now() - item.started, 3),
            images=[s.as_dict() for s in stored],
            cost=cost_dict(item.cost),
            usage=status.usage,
        )
        self._on_change()
        return len(stored)

    async def _download_all(self, item: Finished) -> list[StoredImage]:
        """Every image of ``item``, with fresh URLs from a new poll when a URL went stale
        (see the module note). Raises ``DownloadError`` or ``_Expired``, the images stored
        so far removed again."""
        refs = list(item.status.images)
        stored: list[StoredImage] = []
        refreshes = 0
        k = 0
        try:
            while k < len(refs):
                try:
                    stored.append(await self._download(refs[k].url, f"{item.job.id}-{k + 1}"))
                    k += 1
                except DownloadError as exc:
                    if not (exc.stale or exc.retryable) or item.refresh is None:
                        raise
                    if refreshes >= REFRESHES:
                        raise DownloadError(
                            f"{exc} (and with fresh URLs from {REFRESHES} new polls)",
                            url=exc.url,
                            retryable=False,
                        ) from exc
                    refreshes += 1
                    refs = await self._fresh_urls(item, len(refs))
        except BaseException:
            with anyio.CancelScope(shield=True):
                for image in stored:
                    await self.output.discard(image)
            raise
        return stored

    async def _fresh_urls(self, item: Finished, wanted: int) -> list[ImageRef]:
        assert item.refresh is not None
        try:
            status = await item.refresh()
        except ProviderError as exc:
            raise DownloadError(
                f"cannot poll the task again for fresh image URLs: {exc}",
                url="",
                retryable=False,
            ) from exc
        if status.state is TaskState.FAILED and status.error_code == ErrorCode.EXPIRED:
            raise _Expired(status.error_message or "the provider deleted the task's outputs")
        if status.state is not TaskState.COMPLETED or len(status.images) != wanted:
            raise DownloadError(
                f"a new poll of the task gave {len(status.images)} images "
                f"({status.state}), not the {wanted} it had",
                url="",
                retryable=False,
            )
        return list(status.images)

    async def _settle(self, item: Finished) -> None:
        if item.reservation is not None:
            await self.budget.settle(item.reservation, item.cost)
        else:
            await self.budget.charge(item.cost)

    async def _download(self, url: str, stem: str) -> StoredImage:
        """Fetch one image, retrying truncated, corrupt or failed transfers (stamina, with
        jitter); raises the last ``DownloadError``."""
        return await attempt_then_retry(
            lambda: self.output.fetch(url, stem),
            on=_download_retryable,
            attempts=DOWNLOAD_ATTEMPTS,
            time_left=lambda: None,
            wait_initial=0.2,
            wait_max=5.0,
            wait_jitter=0.3,
            what=f"download of {stem}",
        )
