"""One provider's lane: rate limit, tasks in flight, retries and the poll loop.

The lane turns "run this job at the provider" into a final ``TaskStatus``. It owns the
provider's ``RateLimiter`` (every submit and poll takes a slot), its poll schedule and
its stop switch (credentials rejected, out of credit). It speaks only pipeline types;
the adapter behind it holds the wire format.

Error classes, as the lane treats them:

==========================================  ==============================================
what happened                               the lane's reaction
==========================================  ==============================================
429 (any request)                           the whole lane pauses (Retry-After, capped),
                                            its rate drops; a refused submit is resent
timeout / connection error / 5xx on submit  resent with stamina back-off, but only when the
                                            adapter says no task can exist (``retryable``)
reply lost after a submit was sent          ``OutcomeUnknown``: never resent here (the
                                            scheduler reconciles)
any error on a poll                         polled again on the schedule; a *final* error
                                            (404, other 4xx) only after
                                            ``MAX_POLL_FAILURES`` in a row
401 / 403                                   the lane stops: no request of any kind (also
                                            after a 402 stop)
402 (out of credit)                         no more submits; tasks already paid for are
                                            still polled (and deleted on timeout)
400 / 422 on submit                         final: the job fails with the provider's code
==========================================  ==============================================

Nothing waits unboundedly: submit retries stop at the job's submit deadline (and after
``SUBMIT_ATTEMPTS`` / ``MAX_SUBMIT_REFUSALS``), a pause never exceeds ``MAX_PAUSE_S`` nor
the job timeout, and the caller bounds ``wait`` by the job deadline.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import NamedTuple, TypeVar

import anyio

from pipeline.clock import Clock
from pipeline.engine._lane_parts import (
    LaneFigures,
    LaneStats,
    LaneStopped,
    Limiter,
    LocalSlots,
    SharedSlots,
    _Counters,
)
from pipeline.engine._lane_reads import (
    CANCEL_WITHIN_S,
    LAST_LOOK_S,
    MAX_POLL_FAILURES,
    POLL_RETRY_MIN_S,
    TaskReads,
)
from pipeline.engine._limits import RateLimiter
from pipeline.engine._polling import PollSchedule
from pipeline.engine._retry import attempt_then_retry
from pipeline.errors import (
    AuthError,
    InsufficientCredits,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
)
from pipeline.jobs import Job, ProviderSettings
from pipeline.providers.base import ProviderAdapter, TaskStatus

__all__ = [
    "CANCEL_WITHIN_S",
    "LAST_LOOK_S",
    "MAX_PAUSE_S",
    "MAX_POLL_FAILURES",
    "POLL_RETRY_MIN_S",
    "Lane",
    "LaneStats",
    "LaneStopped",
    "Limiter",
    "LocalSlots",
    "SharedSlots",
    "Started",
]

SUBMIT_ATTEMPTS = 5
MAX_SUBMIT_REFUSALS = 50
DEFAULT_RETRY_AFTER_S = 1.0
# A hostile or confused Retry-After (an hour, a date next year) must not stall a run.
MAX_PAUSE_S = 60.0
GROW_AFTER_COMPLETIONS = 10

T = TypeVar("T")


class Started(NamedTuple):
    """A task created: its first status (it names the task) and, for a streamed submit,
    the stream's further statuses (``Lane.wait(..., frames=)`` reads and closes them)."""

    status: TaskStatus
    frames: AsyncGenerator[TaskStatus, None] | None = None

    async def aclose(self) -> None:
        """Close the stream, if any (also while cancelled: it holds a connection)."""
        if self.frames is not None:
            with anyio.CancelScope(shield=True):
                await self.frames.aclose()


class Lane(TaskReads, LaneFigures):
    """Submit and poll jobs of one provider within its limits.

    ``limiter`` (default: a ``RateLimiter`` at the configured rate) spaces every request;
    ``images`` (default: none) spaces submits by the images they ask for (an account's
    images per minute); ``shared`` (default: nothing) holds a task slot of a fleet per
    job."""

    def __init__(
        self,
        adapter: ProviderAdapter,
        settings: ProviderSettings,
        *,
        clock: Clock,
        schedule: PollSchedule | None = None,
        limiter: Limiter | None = None,
        images: Limiter | None = None,
        shared: SharedSlots | None = None,
    ) -> None:
        self.adapter = adapter
        self.name = adapter.spec.name
        self.settings = settings
        self.clock = clock
        self.limiter = limiter or RateLimiter(settings.requests_per_second, clock=clock)
        self.images = images
        self.shared = shared or LocalSlots()
        self.schedule = schedule or PollSchedule.for_provider(adapter.spec)
        self._counters = _Counters()
        self.stopped: ProviderError | None = None
        self.streams_dropped = 0  # streamed tasks polled for the rest
        # Tasks in flight at the provider; shrinks when a submit is refused, regrows.
        self.slots = anyio.CapacityLimiter(max(1, settings.max_concurrent))
        self._calm = 0
        # One submit at a time until a budget has learned this provider's real price.
        self.price_probe = anyio.Lock()
        # Submits sent and not answered yet; while held, no new submit is sent.
        self._submitting = 0
        self._answered = anyio.Event()
        self._held = 0
        self._resumed = anyio.Event()
        self._reconciling = anyio.Lock()

    def __repr__(self) -> str:
        return f"Lane({self.name!r}, {self.limiter!r}, stopped={self.stopped is not None})"

    # -- one request ---------------------------------------------------------------------

    @property
    def streams(self) -> bool:
        """Whether this lane follows its tasks on the provider's stream (asked for, and
        offered)."""
        return self.settings.stream and self.adapter.spec.streams

    def refuses(self, *, submit: bool) -> ProviderError | None:
        """Why the lane would refuse a request now (None: it would not).

        A rejected key stops every request; running out of credit stops only submits, so
        tasks already paid for are still polled, downloaded or deleted.
        """
        stop = self.stopped
        if stop is not None and (submit or isinstance(stop, AuthError)):
            return stop
        return None

    async def _request_slot(self, *, submit: bool = False) -> None:
        stop = self.refuses(submit=submit)
        if stop is not None:
            raise LaneStopped(stop)
        await self.limiter.acquire()
        self._counters.requests += 1

    def _on_error(self, exc: ProviderError) -> None:
        """Lane-wide reactions: pause on 429, stop on auth/credit errors."""
        if isinstance(exc, RateLimited):
            self._counters.rate_limited += 1
            wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER_S
            self.limiter.pause(min(wait, MAX_PAUSE_S, self.settings.job_timeout_s))
        elif isinstance(exc, AuthError | InsufficientCredits):
            self._stop(exc)

    def _stop(self, exc: ProviderError) -> None:
        # A rejected key outranks a credit stop: it blocks polls as well.
        upgrade = isinstance(exc, AuthError) and not isinstance(self.stopped, AuthError)
        if self.stopped is None or upgrade:
            self.stopped = exc

    def _retry_wait(self, exc: Exception) -> bool | float:
        """stamina hook: retry retryable provider errors; honour Retry-After."""
        if not isinstance(exc, ProviderError) or not exc.retryable:
            return False
        # A 429 is not retried here: ``submit`` handles refusals (lane-wide).
        return not isinstance(exc, RateLimited)

    # -- submit --------------------------------------------------------------------------

    async def submit(self, job: Job, *, deadline: float | None = None) -> TaskStatus:
        """Create the task; retried only when the provider provably did not take it.

        A 429 is a refusal, not a failure: no task was created, the limiter has paused
        the whole lane, and the lane runs fewer tasks at once from now on; the submit is
        then sent again (up to ``MAX_SUBMIT_REFUSALS`` times). ``deadline`` (clock time):
        no new attempt starts after it, the last error is raised instead. Raises
        ``OutcomeUnknown`` when a request was sent and no reply came back, ``LaneStopped``
        when the lane stopped, or the final ``ProviderError``.
        """
        return await self._submit_with(job, deadline, lambda: self.adapter.submit(job))

    async def submit_streamed(self, job: Job, *, deadline: float | None = None) -> Started:
        """``submit`` over the provider's streaming variant (``spec.streams``): the same
        retries, refusals and errors until the first frame names the task."""
        return await self._submit_with(job, deadline, lambda: self._open_stream(job))

    async def _open_stream(self, job: Job) -> Started:
        frames = self.adapter.stream(job)
        try:
            first = await anext(frames)
        except StopAsyncIteration:
            message = "the stream ended before naming the task; a task may exist"
            raise OutcomeUnknown(message, provider=self.name) from None
        return Started(first, frames)

    async def _submit_with(
        self, job: Job, deadline: float | None, send: Callable[[], Awaitable[T]]
    ) -> T:
        refusals = 0
        while True:
            try:
                return await self._submit_once(job, deadline, send)
            except RateLimited:
                refusals += 1
                self._calm = 0
                # The provider may be refusing because of tasks in flight, not rate.
                self.slots.total_tokens = max(1, self.slots.borrowed_tokens - 1)
                if refusals >= MAX_SUBMIT_REFUSALS or self._past(deadline):
                    raise

    def _past(self, deadline: float | None) -> bool:
        return deadline is not None and self.clock.now() >= deadline

    def task_done(self) -> None:
        """A task reached a terminal state; after a calm streak, allow one more at once."""
        self._calm += 1
        if (
            self._calm >= GROW_AFTER_COMPLETIONS
            and self.slots.total_tokens < self.settings.max_concurrent
        ):
            self._calm = 0
            self.slots.total_tokens = self.slots.total_tokens + 1

    async def _submit_once(
        self, job: Job, deadline: float | None, send: Callable[[], Awaitable[T]]
    ) -> T:
        def remaining() -> float | None:
            # stamina's timeout counts from when its retries start, on the monotonic
            # clock; our clock only says how much is left.
            return None if deadline is None else max(1e-3, deadline - self.clock.now())

        return await attempt_then_retry(
            lambda: self._send_submit(job, send),
            on=self._retry_wait,
            attempts=SUBMIT_ATTEMPTS,
            time_left=remaining,
            wait_initial=0.5,
            wait_max=10.0,
            what=f"{self.name} submit of {job.id}",
        )

    async def _send_submit(self, job: Job, send: Callable[[], Awaitable[T]]) -> T:
        while self._held:  # a lost reply is being attributed: keep its window clean
            await self._resumed.wait()
        await self._request_slot(submit=True)
        if self.images is not None:
            await self.images.acquire(job.params.n)
        self._submitting += 1
        try:
            answer = await send()
        except ProviderError as exc:
            exc.job_id = job.id
            self._on_error(exc)
            if isinstance(exc, AuthError | InsufficientCredits):
                raise LaneStopped(exc) from exc
            raise
        finally:
            self._submitting -= 1
            if not self._submitting:
                self._answered.set()
                self._answered = anyio.Event()
        self.limiter.record_success()
        return answer

    @asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """For the block, no new submit of this lane is sent, and the block starts once
        every submit in flight has been answered (one at a time: the holders queue)."""
        self._held += 1
        try:
            async with self._reconciling:
                while self._submitting:
                    await self._answered.wait()
                yield
        finally:
            self._held -= 1
            if not self._held:
                self._resumed.set()
                self._resumed = anyio.Event()
