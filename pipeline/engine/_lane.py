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

from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Protocol

import anyio

from pipeline.clock import Clock
from pipeline.engine._limits import RateLimiter
from pipeline.engine._polling import PollSchedule
from pipeline.engine._retry import attempt_then_retry
from pipeline.errors import (
    AuthError,
    InsufficientCredits,
    ProviderError,
    RateLimited,
)
from pipeline.jobs import Job, ProviderSettings
from pipeline.providers.base import ProviderAdapter, TaskState, TaskStatus
from pipeline.providers.specs import Cost

SUBMIT_ATTEMPTS = 5
MAX_SUBMIT_REFUSALS = 50
DEFAULT_RETRY_AFTER_S = 1.0
# A hostile or confused Retry-After (an hour, a date next year) must not stall a run.
MAX_PAUSE_S = 60.0
# A final error on a poll (404 right after a submit, a proxy's 400) may be transient too.
MAX_POLL_FAILURES = 3
POLL_RETRY_MIN_S = 0.5
# The last poll before a job deadline goes this long before it (or 10% of the time allowed).
LAST_LOOK_S = 5.0
GROW_AFTER_COMPLETIONS = 10


class LocalSlots:
    """Alone, the lane's own limit is the provider's: nothing more to hold."""

    @asynccontextmanager
    async def hold(self, job_id: str) -> AsyncIterator[None]:
        yield


CANCEL_WITHIN_S = 10.0


@dataclass(frozen=True, slots=True)
class LaneStats:
    """A snapshot of one lane's live figures (progress displays, the ledger's counters)."""

    queued: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    images: int = 0
    usd: float = 0.0
    credits: float = 0.0
    requests: int = 0
    rate_limited: int = 0


@dataclass(slots=True)
class _Counters:
    queued: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    images: int = 0
    usd: float = 0.0
    credits: float = 0.0
    requests: int = 0
    rate_limited: int = 0


class LaneStopped(Exception):
    """The lane stopped (``reason`` is the ProviderError that stopped it)."""

    def __init__(self, reason: ProviderError) -> None:
        self.reason = reason
        super().__init__(str(reason))


class Limiter(Protocol):
    """Spaces a lane's requests: ``RateLimiter`` alone, ``FleetLimiter`` in a fleet."""

    async def acquire(self, weight: int = 1) -> None: ...

    def pause(self, seconds: float) -> None: ...

    def record_success(self) -> None: ...


class SharedSlots(Protocol):
    """Tasks in flight beyond this process: nothing alone, the fleet's count in a fleet."""

    def hold(self, job_id: str) -> AbstractAsyncContextManager[None]: ...


class Lane:
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
        self.schedule = schedule or PollSchedule()
        self._counters = _Counters()
        self.stopped: ProviderError | None = None
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

    # -- figures -------------------------------------------------------------------------

    def stats(self) -> LaneStats:
        """The lane's figures now."""
        c = self._counters
        return LaneStats(
            c.queued,
            c.in_flight,
            c.completed,
            c.failed,
            c.images,
            c.usd,
            c.credits,
            c.requests,
            c.rate_limited,
        )

    def enqueue(self, jobs: int) -> None:
        """``jobs`` more wait for this lane."""
        self._counters.queued += jobs

    @contextmanager
    def working(self) -> Iterator[None]:
        """One queued job is being worked on (from its submit to its terminal state)."""
        c = self._counters
        c.queued -= 1
        c.in_flight += 1
        try:
            yield
        finally:
            c.in_flight -= 1

    def record(self, *, completed: bool, images: int = 0, cost: Cost | None = None) -> None:
        """A job of this lane ended (``cost``: what its task cost, if it was paid)."""
        c = self._counters
        if completed:
            c.completed += 1
            c.images += images
        else:
            c.failed += 1
        if cost is not None:
            c.usd += cost.usd or 0.0
            c.credits += cost.credits or 0.0

    # -- one request ---------------------------------------------------------------------

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
        refusals = 0
        while True:
            try:
                return await self._submit_once(job, deadline)
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

    async def _submit_once(self, job: Job, deadline: float | None) -> TaskStatus:
        def remaining() -> float | None:
            # stamina's timeout counts from when its retries start, on the monotonic
            # clock; our clock only says how much is left.
            return None if deadline is None else max(1e-3, deadline - self.clock.now())

        return await attempt_then_retry(
            lambda: self._send_submit(job),
            on=self._retry_wait,
            attempts=SUBMIT_ATTEMPTS,
            time_left=remaining,
            wait_initial=0.5,
            wait_max=10.0,
            what=f"{self.name} submit of {job.id}",
        )

    async def _send_submit(self, job: Job) -> TaskStatus:
        while self._held:  # a lost reply is being attributed: keep its window clean
            await self._resumed.wait()
        await self._request_slot(submit=True)
        if self.images is not None:
            await self.images.acquire(job.params.n)
        self._submitting += 1
        try:
            status = await self.adapter.submit(job)
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
        return status

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

    # -- poll ----------------------------------------------------------------------------

    async def wait(
        self,
        job: Job,
        status: TaskStatus,
        submitted_at: float,
        deadline: float | None = None,
    ) -> TaskStatus:
        """Poll until the task is terminal and return its final status.

        ``submitted_at`` is the clock time of the submit (for a reattached task, of this
        run's first look). The caller bounds this with the job ``deadline`` (clock time);
        given here too, it gets one last look just before it rather than a poll scheduled
        after it. Poll errors are retried on the poll schedule without growing the
        interval; a final one (unknown id...) is raised only after ``MAX_POLL_FAILURES``
        in a row, a rejected key at once (``LaneStopped``).
        """
        delay = self.schedule.first_delay()
        next_at = submitted_at + delay
        last_running = submitted_at
        final_errors = 0
        last_look = None
        if deadline is not None:
            last_look = deadline - min(LAST_LOOK_S, 0.1 * (deadline - submitted_at))
        while not status.state.terminal:
            if last_look is not None and next_at > last_look:
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
                next_at = self.clock.now() + max(delay, POLL_RETRY_MIN_S)
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
