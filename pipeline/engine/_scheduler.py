"""The run: one task group, per-provider lanes, a download stage, a ledger writer.

The lane workers of a provider share one iterator of its jobs; finished tasks go to the
download workers through a memory object stream::

    a lane's jobs --> lane workers (max_concurrent each) --done--> downloaders --> state

A lane worker holds one of the provider's task slots from submit until the task is
terminal; downloads happen after the slot is released, so slow image transfers never
keep the provider idle. Every state change is committed before the next step (the
write-ahead protocol of ``pipeline.store``); ledger.json is rewritten from the state at
most once a second.

Deadlines (nothing can hang a run): a job's submit attempts stop ``max(job_timeout_s,
SUBMIT_WINDOW_MIN_S)`` after the job started (each request is bounded by the adapter's
timeout); the task then has ``job_timeout_s`` from its creation to finish, after which it
fails with ``timeout`` and is deleted at the provider where the API allows; its images have
``max(job_timeout_s, DOWNLOAD_WINDOW_MIN_S)`` to download (each attempt bounded by the
downloader's timeout). The windows have floors because ``job_timeout_s`` is about how long
a provider may take to generate, not about how long we may need to reach it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import nullcontext
from functools import partial

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from pipeline import _gc
from pipeline.clock import Clock, utcnow
from pipeline.engine._budget import Reservation, Spending
from pipeline.engine._download import DOWNLOAD_WINDOW_MIN_S, DownloadStage, Finished
from pipeline.engine._feed import FleetFeed, ListFeed, WorkFeed
from pipeline.engine._lane import Lane, LaneStopped, Started
from pipeline.engine._outcome import error_dict, provider_error
from pipeline.engine._resume import WorkItem
from pipeline.engine._submit import Submitter
from pipeline.errors import BudgetExhausted, ErrorCode, ProviderError, StateError, StorageFailed
from pipeline.jobs import Batch, Job
from pipeline.outputs import Output
from pipeline.providers.base import TaskState, TaskStatus
from pipeline.store import RunStore

SUBMIT_WINDOW_MIN_S = 60.0
REATTACH_MIN_DEADLINE_S = 60.0
MIN_DOWNLOADS = 8
MAX_DOWNLOADS = 32


def download_workers(lanes: dict[str, Lane]) -> int:
    """How many images download at once: half the tasks the lanes may have in flight
    (one download follows every two API requests of a job), from 8 to 32. Too few and,
    when tasks finish fast, finished tasks queue for their images while the lanes keep
    the provider busy; each download holds at most its spill size (2.25 MiB) in memory."""
    in_flight = sum(lane.settings.max_concurrent for lane in lanes.values())
    return min(MAX_DOWNLOADS, max(MIN_DOWNLOADS, in_flight // 2))


class Scheduler:
    """Runs the work of one batch against its lanes. Use once.

    ``on_change`` is called after every change of a job's state (the ledger sink marks
    itself dirty). ``feed`` gives each lane its work (default: the plan as it is; a
    fleet's feed claims it), told whether submitting has stopped. ``claimed``: the remote
    ids the state already gives to jobs (reconciliation never adopts them)."""

    def __init__(
        self,
        batch: Batch,
        *,
        lanes: dict[str, Lane],
        state: RunStore,
        output: Output,
        budget: Spending,
        clock: Clock,
        on_change: Callable[[], None] | None = None,
        download_concurrency: int | None = None,
        feed: Callable[[Lane, list[WorkItem], Callable[[], bool]], WorkFeed] | None = None,
        claimed: Iterable[str] = (),
    ) -> None:
        self.batch = batch
        self.lanes = lanes
        self.state = state
        self.output = output
        self.budget = budget
        self.clock = clock
        self._changed = on_change or (lambda: None)
        self._downloads = download_concurrency or download_workers(lanes)
        self._feed = feed or (lambda lane, items, stopped: ListFeed(items))
        self.downloads = DownloadStage(
            state=state, output=output, budget=budget, clock=clock, on_change=self._changed
        )
        self.stop_reason: str | None = None
        self.storage_failure: StorageFailed | StateError | None = None
        self._scope: anyio.CancelScope | None = None
        self.submitter = Submitter(
            state=state,
            budget=budget,
            clock=clock,
            claimed=set(claimed),
            changed=self._changed,
            stop=self.stop_submitting,
        )

    def _stopped(self) -> bool:
        return self.stop_reason is not None

    def stop_submitting(self, reason: str) -> None:
        """No new submits from now on; work in flight carries on."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def storage_failed(self, exc: StorageFailed | StateError) -> None:
        """The run's own storage (output or state) failed: no more submits, and the run
        ends now; every paid task stays in the state, waiting for a rerun's download."""
        if self.storage_failure is None:
            self.storage_failure = exc
            self.stop_submitting(f"the run's storage failed: {exc}")
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, work: list[WorkItem]) -> None:
        """Run ``work`` to the end (or until cancelled, with state committed)."""
        await self.output.sweep()
        # The batch, its jobs and records live for the whole run: the collector need not
        # rescan them (see pipeline._gc).
        with _gc.frozen():
            await self._run(work)

    async def _run(self, work: list[WorkItem]) -> None:
        # Back-pressure: a lane worker whose task finished waits here for a downloader
        # (no new submit meanwhile), so the tasks finished at the provider and not yet
        # downloaded stay below the downloads at once, twice, plus the tasks in flight.
        done_send, done_recv = anyio.create_memory_object_stream[Finished](self._downloads)
        async with anyio.create_task_group() as tg:
            self._scope = tg.cancel_scope
            async with done_recv:
                for _ in range(self._downloads):
                    tg.start_soon(self._download_worker, done_recv.clone())
            async with done_send:
                for name, lane in self.lanes.items():
                    items = [w for w in work if w.job.provider == name]
                    lane.enqueue(len(items))
                    feed = self._feed(lane, items, self._stopped)  # for the lane's workers
                    for _ in range(max(1, lane.settings.max_concurrent)):
                        tg.start_soon(self._lane_worker, lane, feed.next, done_send.clone())
                    if isinstance(feed, FleetFeed):  # a dead process's tasks (engine._feed)
                        takeover = partial(self._lane_worker, own_slot=False)
                        tg.start_soon(takeover, lane, feed.takeover, done_send.clone())
            # The downloaders end once every lane worker has closed its clone of done_send.

    # -- lane stage -------------------------------------------------------------------------

    async def _lane_worker(
        self,
        lane: Lane,
        next_item: Callable[[], Awaitable[WorkItem | None]],
        done: ObjectSendStream[Finished],
        *,
        own_slot: bool = True,
    ) -> None:
        """Works the jobs ``next_item`` gives (a feed's ``next``), one at a time, each in
        one of the lane's slots. Without ``own_slot``: the tasks a dead process of the
        fleet left at the provider (``FleetFeed.takeover``), in the fleet's task slots
        they already hold, not in this process's own: those may all be waiting for one."""
        async with done:
            try:
                while (item := await next_item()) is not None:  # each item to one worker
                    # One task in flight at the provider (a taken-over one holds its own).
                    async with lane.slots if own_slot else nullcontext():
                        with lane.working():
                            finished = await self._run_at_provider(lane, item)
                    lane.task_done()
                    if finished is not None:
                        await done.send(finished)
            except (StorageFailed, StateError) as exc:
                self.storage_failed(exc)

    async def _download_worker(self, recv: ObjectReceiveStream[Finished]) -> None:
        async with recv:
            try:
                async for item in recv:
                    images = await self.downloads.complete(item)
                    lane = self.lanes[item.job.provider]
                    lane.record(completed=images is not None, images=images or 0, cost=item.cost)
            except (StorageFailed, StateError) as exc:
                self.storage_failed(exc)

    async def _run_at_provider(self, lane: Lane, item: WorkItem) -> Finished | None:
        job = item.job
        # A task already at the provider is still polled when only submits are stopped.
        refusal = lane.refuses(submit=item.remote_id is None)
        if refusal is not None:
            await self._fail(lane, job, provider_error(refusal))
            return None
        async with lane.shared.hold(job.id):  # the fleet's count of tasks in flight
            return await self._at_provider(lane, item)

    async def _at_provider(self, lane: Lane, item: WorkItem) -> Finished | None:
        job = item.job
        reservation: Reservation | None = None
        started = self.clock.now()
        timeout = lane.settings.job_timeout_s
        try:
            for flag in item.flags:
                await self.state.add_flag(job.id, flag)
            frames = None
            if item.remote_id is not None:
                status = TaskStatus(remote_id=item.remote_id, state=TaskState.QUEUED)
                deadline = max(timeout, REATTACH_MIN_DEADLINE_S)
            else:
                submit_by = started + max(timeout, SUBMIT_WINDOW_MIN_S)
                started_task = await self._start(lane, item, submit_by=submit_by)
                if started_task is None:
                    return None
                (status, frames), reservation = started_task
                deadline = timeout
            # The task's deadline runs from its creation: a slow submit phase (retries,
            # 429 pauses) must not make us throw away a task we just paid for.
            now = self.clock.now()
            with self.clock.move_on_at(now + deadline):
                final = await lane.wait(job, status, now, now + deadline, frames=frames)
                if final.state is TaskState.COMPLETED:
                    window = max(timeout, DOWNLOAD_WINDOW_MIN_S)
                    cost = lane.adapter.cost(job, final)
                    refresh = partial(lane.refresh, job, final.remote_id)
                    return Finished(job, final, cost, reservation, started, window, refresh)
                await self._fail(
                    lane,
                    job,
                    error_dict(
                        final.error_code or ErrorCode.TASK_FAILED,
                        final.error_message or "the task failed at the provider",
                    ),
                    usage=final.usage,
                )
                if reservation is not None:
                    await self.budget.settle(reservation, None)
                return None
            # Deadline passed: give up on the task, and free it at the provider.
            await lane.cancel(status.remote_id)
            await self._fail(
                lane, job, error_dict(ErrorCode.TIMEOUT, f"no result within {deadline:g} s")
            )
            if reservation is not None:
                await self.budget.settle(reservation, None)
            return None
        except LaneStopped as stop:
            await self._fail(lane, job, provider_error(stop.reason))
        except ProviderError as exc:
            await self._fail(lane, job, self._provider_failure(lane, item, exc))
        if reservation is not None:
            await self.budget.settle(reservation, None)
        return None

    def _provider_failure(
        self, lane: Lane, item: WorkItem, exc: ProviderError
    ) -> dict[str, object]:
        """The ledger's error for ``exc``; a task the provider no longer knows (404) that
        was submitted longer ago than the provider keeps tasks is ``expired``."""
        retention = lane.adapter.spec.retention_s
        if (
            exc.http_status == 404
            and item.remote_id is not None
            and item.since is not None
            and retention is not None
            and self.clock.wall() - item.since > retention
        ):
            days = retention / 86400
            return error_dict(
                ErrorCode.EXPIRED,
                f"the provider no longer has this task: it was submitted more than "
                f"{days:g} days ago, past the provider's retention of its tasks and images",
                404,
            )
        return provider_error(exc)

    async def _start(
        self, lane: Lane, item: WorkItem, *, submit_by: float
    ) -> tuple[Started, Reservation] | None:
        """Reserve the job's cost and create its task (reconciling first if an earlier
        submit's outcome is unknown). None: not started (budget, stop, unknown outcome).
        A submit that fails releases its reservation and raises (``ProviderError``,
        ``LaneStopped``): no task was created, nothing was charged.

        Under a cap, a provider that reports its charge only in the submit reply gets one
        submit at a time until the first reply has taught the guard the real price, so an
        underestimated price can never let several jobs slip past the cap at once.
        """
        if self.stop_reason is not None:
            return None
        job = item.job
        probe = None
        reports_cost = lane.adapter.spec.cost_reported_on_submit
        if self.budget.capped and reports_cost and not self.budget.knows(lane.name):
            probe = lane.price_probe
            await probe.acquire()
            if self.budget.knows(lane.name):
                probe.release()
                probe = None
        try:
            try:
                reservation = await self.budget.reserve(
                    lane.adapter.spec.estimate(job.params, lane.settings.usd_per_credit),
                    lane.name,
                    job.id,
                    probe=reports_cost,
                )
            except BudgetExhausted as exc:
                self.stop_submitting(str(exc))
                return None
            try:
                started = await self.submitter.start(
                    lane, job, unknown=item.unknown, since=item.since, submit_by=submit_by
                )
                if started is not None and started.status.usage:
                    # The reply reports the real charge (skills.video): reserve that.
                    cost = lane.adapter.cost(job, started.status)
                    try:
                        await self.budget.adjust(reservation, cost)
                    except BaseException:
                        await started.aclose()
                        raise
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self.budget.settle(reservation, None)
                raise
            if started is None:
                await self.budget.settle(reservation, None)
                return None
            return started, reservation
        finally:
            if probe is not None:
                probe.release()

    async def _fail(
        self, lane: Lane, job: Job, error: dict[str, object], usage: dict[str, object] | None = None
    ) -> None:
        lane.record(completed=False)
        await self.state.mark_failed(job.id, at=utcnow(), error=error, usage=usage)
        self._changed()
