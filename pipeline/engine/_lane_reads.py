"""What a lane reads of the provider's tasks: the poll loop, one more poll, a streamed
task's frames, the listings that find a lost submit's task, and cancelling.

A mixin of :class:`~pipeline.engine._lane.Lane` (the lane's request slots, error
reactions and poll schedule are its own); see that module for the error table.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from pipeline.clock import Clock
from pipeline.engine._lane_parts import LaneStopped, Limiter
from pipeline.engine._polling import PollSchedule
from pipeline.errors import AuthError, ProviderError
from pipeline.jobs import Job, ProviderSettings
from pipeline.providers.base import ProviderAdapter, StreamDropped, TaskState, TaskStatus

# A final error on a poll (404 right after a submit, a proxy's 400) may be transient too.
MAX_POLL_FAILURES = 3
POLL_RETRY_MIN_S = 0.5
# The last poll before a job deadline goes this long before it (or 10% of the time allowed).
LAST_LOOK_S = 5.0
CANCEL_WITHIN_S = 10.0


class TaskReads:
    """The read side of a lane (see the module note)."""

    adapter: ProviderAdapter
    name: str
    settings: ProviderSettings
    clock: Clock
    schedule: PollSchedule
    limiter: Limiter
    streams_dropped: int

    def refuses(self, *, submit: bool) -> ProviderError | None:
        raise NotImplementedError

    async def _request_slot(self, *, submit: bool = False) -> None:
        raise NotImplementedError

    def _on_error(self, exc: ProviderError) -> None:
        raise NotImplementedError

    async def wait(
        self,
        job: Job,
        status: TaskStatus,
        submitted_at: float,
        deadline: float | None = None,
        *,
        frames: AsyncGenerator[TaskStatus, None] | None = None,
    ) -> TaskStatus:
        """Poll until the task is terminal and return its final status.

        ``submitted_at`` is the clock time of the submit (for a reattached task, of this
        run's first look). The caller bounds this with the job ``deadline`` (clock time);
        given here too, it gets one last look just before it rather than a poll scheduled
        after it. Poll errors are retried on the poll schedule without growing the
        interval; a final one (unknown id...) is raised only after ``MAX_POLL_FAILURES``
        in a row, a rejected key at once (``LaneStopped``).

        ``frames``: a streamed submit's further statuses (``Lane.submit_streamed``), read
        first and closed here; no poll is sent while they come. When the stream drops, the
        task is polled from then on (at once, then on the schedule).
        """
        last_running = submitted_at
        if frames is not None:
            status = await self._follow(status, frames, submitted_at)
            last_running = self.clock.now()  # running until the stream dropped
        delay = self.schedule.first_delay()
        next_at = submitted_at + delay
        final_errors = 0
        last_look = None
        if deadline is not None:
            last_look = deadline - min(LAST_LOOK_S, 0.1 * (deadline - submitted_at))
        while not status.state.terminal:
            if last_look is not None and next_at > last_look:
                # The one check that may come sooner after another than the provider's
                # minimum: the task is paid for, and this look may save it.
                next_at = max(self.clock.now(), last_look)
                last_look = None  # once: after it, the deadline decides
            await self.clock.sleep(next_at - self.clock.now())
            await self._request_slot()
            try:
                polled = await self.adapter.poll(status.remote_id)
            except ProviderError as exc:
                exc.job_id = job.id
                self._on_error(exc)
                if isinstance(exc, AuthError):
                    raise LaneStopped(exc) from exc
                if not exc.retryable:
                    final_errors += 1
                    if final_errors >= MAX_POLL_FAILURES:
                        raise
                # Nothing was learned: look again after the same interval, not a longer one
                # (but not in a tight loop against a provider that is failing).
                next_at = self.clock.now() + max(delay, POLL_RETRY_MIN_S, self.schedule.floor)
                continue
            final_errors = 0
            self.limiter.record_success()
            if polled.state is TaskState.COMPLETED:
                # It finished somewhere between the last two looks: learn the midpoint.
                seen = self.clock.now()
                self.schedule.observe((last_running + seen) / 2 - submitted_at)
            status = polled
            last_running = self.clock.now()
            now = self.clock.now()
            delay = self.schedule.next_delay(now - submitted_at, delay)
            next_at = now + delay
        return status

    async def _follow(
        self, status: TaskStatus, frames: AsyncGenerator[TaskStatus, None], submitted_at: float
    ) -> TaskStatus:
        """The stream's statuses until a terminal one, or the last one before it dropped."""
        async with aclosing(frames):
            try:
                async for frame in frames:
                    status = frame
                    if status.state.terminal:
                        if status.state is TaskState.COMPLETED:
                            # A stream says at once: the duration is exact.
                            self.schedule.observe(self.clock.now() - submitted_at)
                        break
            except StreamDropped:
                self.streams_dropped += 1
        return status

    async def list_recent(
        self, job: Job, *, since: float, exclude: set[str]
    ) -> list[TaskStatus] | None:
        """The provider's tasks created since ``since`` (epoch seconds) that could be
        ``job``'s and are not in ``exclude``; None when the listing did not answer."""
        if self.refuses(submit=False) is not None:
            return None
        await self._request_slot()
        try:
            tasks = await self.adapter.recent(since=since)
        except ProviderError as exc:
            self._on_error(exc)
            return None
        if tasks is None:
            return None
        return [
            TaskStatus(remote_id=t.remote_id, state=t.state, images=t.images, usage=t.usage)
            for t in tasks
            if t.remote_id not in exclude
            and (t.created_at is None or t.created_at >= since)
            and self.adapter.matches(t, job)
        ]

    async def refresh(self, job: Job, remote_id: str) -> TaskStatus:
        """One more poll of a finished task (fresh image URLs). Raises ``ProviderError``
        (``LaneStopped`` when the lane refuses every request)."""
        await self._request_slot()
        try:
            status = await self.adapter.poll(remote_id)
        except ProviderError as exc:
            exc.job_id = job.id
            self._on_error(exc)
            raise
        self.limiter.record_success()
        return status

    async def find_submitted(self, job: Job, exclude: set[str]) -> TaskStatus | None:
        """Look for a task the provider created for ``job`` although its submit reply was
        lost (where the API lists unfinished tasks). ``exclude``: remote ids that belong
        to other jobs."""
        if not self.adapter.spec.lists_unfinished or self.refuses(submit=False) is not None:
            return None
        await self._request_slot()
        try:
            tasks = await self.adapter.running(100)
        except ProviderError as exc:
            self._on_error(exc)
            return None
        for task in tasks or ():
            if task.remote_id not in exclude and self.adapter.matches(task, job):
                return TaskStatus(remote_id=task.remote_id, state=task.state, usage=task.usage)
        return None

    async def cancel(self, remote_id: str) -> None:
        """Best effort: delete a task the run gave up on, where the API allows it (within
        ``CANCEL_WITHIN_S``)."""
        if not self.adapter.spec.cancels or self.refuses(submit=False) is not None:
            return
        with self.clock.move_on_at(self.clock.now() + CANCEL_WITHIN_S):
            try:
                await self._request_slot()
                await self.adapter.cancel(remote_id)
            except (ProviderError, LaneStopped):
                pass
