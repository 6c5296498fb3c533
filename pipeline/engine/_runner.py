"""Wiring for one run: keys, base URLs, state, output, lanes, ledger, signals.

This is the composition root: the only module that knows every part. The library's
``pipeline.arun`` (and so the command line) calls ``run_batch``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NamedTuple

import anyio

from pipeline import _gc
from pipeline._home import local_home
from pipeline._logs import run_logging
from pipeline.clock import Clock, SystemClock, utcnow
from pipeline.engine._budget import BudgetGuard
from pipeline.engine._intake import Feeds
from pipeline.engine._lane import LaneStats
from pipeline.engine._outcome import RunOutcome, exit_code, log_outcome, storage_stop, waiting
from pipeline.engine._resume import WorkItem, plan_work, work_for
from pipeline.engine._signals import signals_cancel
from pipeline.engine._survey import Survey, survey
from pipeline.errors import StateError, UsageError
from pipeline.jobs import Batch, JobStatus
from pipeline.ledger import STAMP_KEY, LedgerHeader, LedgerSink, summarize_tally
from pipeline.outputs import Output, open_output
from pipeline.providers.specs import SPECS
from pipeline.store import (
    JobRecord,
    RunStore,
    TallyRow,
    open_store,
    state_location,
)

if TYPE_CHECKING:
    from pipeline.engine._fleet import FleetRun

LaneView = Callable[[], dict[str, LaneStats]]
# An interrupted run skips its last ledger rewrite when one takes longer than this: it
# must exit within seconds, whatever the batch's size (its state is committed anyway).
FINAL_LEDGER_MAX_S = 1.5
__all__ = ["LaneView", "RunOptions", "RunReport", "exit_code", "resolve_endpoints", "run_batch"]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What the caller adds to a manifest (the library's options, the CLI's flags).

    ``base_urls`` / ``api_keys``: per provider, over the environment. ``state``: where the
    run state lives (``--state``; default ``DIR/state.db``). ``handle_signals``: the first
    SIGINT/SIGTERM stops the run with its state committed (``interrupted``), a second
    exits the process; only the command line sets it. ``log_to_stderr``: warnings also on
    stderr. ``on_start``: called with a view of the lanes' figures once sending starts
    (progress displays). ``lease_s``: in a fleet (a shared state), how long this
    process's leases outlive its last heartbeat. ``tier_defaults``: a provider account
    whose limits the manifest does not state is assumed to be of the provider's lowest
    tier (off for the emulator, which has none)."""

    max_usd: float | None = None
    retry_failed: bool = False
    base_urls: Mapping[str, str] | None = None
    api_keys: Mapping[str, str] | None = None
    state: str | None = None
    handle_signals: bool = False
    log_to_stderr: bool = False
    clock: Clock = field(default_factory=SystemClock)
    on_start: Callable[[LaneView], None] | None = None
    lease_s: float = 30.0
    tier_defaults: bool = True


class RunReport(NamedTuple):
    """What ``run_batch`` returns: how it ended, the final ledger document, and whether a
    signal interrupted it."""

    outcome: RunOutcome
    ledger: dict[str, object]
    interrupted: bool


def resolve_endpoints(batch: Batch, options: RunOptions) -> dict[str, tuple[str, str]]:
    """Base URL and key per provider used by the batch.

    Raises ``UsageError`` naming every missing key before anything is sent.
    """
    endpoints: dict[str, tuple[str, str]] = {}
    missing: list[str] = []
    for name in sorted({j.provider for j in batch.jobs}):
        spec = SPECS[name]
        settings = batch.providers[name]
        given = (options.base_urls or {}).get(name)
        base = given or os.environ.get(spec.env_base_url) or settings.base_url
        key = (options.api_keys or {}).get(name) or os.environ.get(spec.env_key, "")
        if not key.strip():
            missing.append(spec.env_key)
        endpoints[name] = ((base or spec.default_base_url).rstrip("/"), key.strip())
    if missing:
        raise UsageError(
            "missing API key: set " + " and ".join(missing) + " in the environment "
            "(or use --emulate to run against the local emulator)"
        )
    return endpoints


@dataclass(slots=True)
class _Run:
    """The parts of one run that sending work needs."""

    batch: Batch
    options: RunOptions
    endpoints: dict[str, tuple[str, str]]
    state: RunStore
    output: Output
    stack: AsyncExitStack  # what to close when the run ends
    header: LedgerHeader
    sink: LedgerSink  # ledger.json's writer: while the run goes on, and its last write
    outcome: RunOutcome = field(default_factory=RunOutcome)
    interrupted: list[int] = field(default_factory=list)  # the signals received


async def run_batch(batch: Batch, options: RunOptions) -> RunReport:
    """Run (or resume) ``batch``.

    Raises ``UsageError`` (nothing sent) for a missing key or a state that cannot be
    opened."""
    endpoints = resolve_endpoints(batch, options)
    root = local_home(batch.output_dir)  # run.log (an object store's: a local folder)
    output = open_output(batch.output_dir)  # a bad URL is refused before anything is made
    location = state_location(options.state, batch.output_dir)
    state = await open_store(location, name=batch.name, output=batch.output_dir)
    secrets = [key for _, key in endpoints.values()]
    async with AsyncExitStack() as stack:
        stack.push_async_callback(state.close)
        log = stack.enter_context(run_logging(root, secrets, stderr=options.log_to_stderr))
        stack.push_async_callback(output.aclose)
        meta = await state.get_meta()
        started_at = meta.get("started_at") or utcnow()
        # The stamp is dropped before this run changes anything (see ledger._sink).
        start = {"name": batch.name, "manifest": batch.manifest_path, "started_at": started_at}
        await state.set_meta({**start, STAMP_KEY: ""})
        unchanged = state.writes
        header = LedgerHeader(batch.name, batch.manifest_path, started_at, started_at, False)
        sink = LedgerSink(state, output, header, clock=options.clock)
        run = _Run(batch, options, endpoints, state, output, stack, header, sink)
        models = {name: spec.model for name, spec in SPECS.items()}
        with _gc.paused(keep=True):  # the records live as long as the run
            # Neither new jobs nor completed ones are held as records (engine._survey).
            found = await survey(state, output, batch, models)
            surveyed_writes = state.writes
            records, broken = found.records, found.broken
            work = plan_work(
                batch, records, broken, retry_failed=options.retry_failed, done=found.done
            )
            found.done.clear()  # not needed from here on
        log.info(
            "run %s (%s): %d jobs, %d to run now; providers %s",
            batch.name,
            batch.manifest_path,
            len(batch.jobs),
            len(work),
            ", ".join(f"{n} at {b}" for n, (b, _) in endpoints.items()),
        )
        if work:
            await _send(run, found, work)
        with anyio.CancelScope(shield=True):
            outcome = run.outcome
            current = not work and state.fleet is None and state.writes == surveyed_writes
            if current:
                # Nothing sent, nothing written since: the survey counted the state.
                tally, counters = found.tally(), await state.counters()
                failed = [
                    (r.id, r.row.error_json)
                    for r in records.values()
                    if r.row.status == JobStatus.FAILED and r.row.error_json and not r.superseded
                ]
            else:  # counted by the state itself: a million jobs are never all read
                async with state.reading() as view:
                    tally, counters = await view.tally(), await view.counters()
                    failed = await view.failed()
            unstored = found.intake.unstored() if found.intake is not None else {}
            for name, n in unstored.items():  # a stop before the new batch was stored
                tally.append(TallyRow(name, JobStatus.PENDING, False, None, None, n, 0))
            totals, providers = summarize_tally(tally, counters)
            outcome.completed = totals["completed"]
            outcome.failed = totals["failed"]
            outcome.pending = totals["pending"]
            done = outcome.pending == 0
            doc: dict[str, object]
            if unstored or (run.interrupted and sink.finish_cost_s() > FINAL_LEDGER_MAX_S):
                # Stopping comes first: a large batch's ledger waits for the next run.
                doc = {"name": batch.name, "totals": totals, "providers": providers}
                log.warning(
                    "stopped: ledger.json not rewritten (%s); the state is committed: "
                    "`pipeline status` shows it, the next run rewrites the ledger",
                    f"{sum(unstored.values())} of the batch's {len(batch.jobs)} jobs are not "
                    "stored yet; the next run stores them"
                    if unstored
                    else f"a rewrite takes about {sink.finish_cost_s():.0f} s",
                )
            else:
                # Nothing sent and nothing changed: the last run's ledger may hold as it is.
                kept = not work and state.writes == unchanged
                stamp = meta.get(STAMP_KEY) if kept else None
                try:
                    counted = (totals, providers)
                    doc = await sink.finish(
                        finished=done, stamp=stamp or None, counted=counted, current=current
                    )
                except Exception as exc:
                    failure = storage_stop(exc, output)
                    if failure is None:
                        raise
                    outcome.storage_failure = outcome.storage_failure or str(failure)
                    doc = await sink.document(finished=done)
            if outcome.storage_failure is not None:
                final = await state.records()
                outcome.stop_reason = waiting(outcome.storage_failure, batch, final)
            log_outcome(log, outcome, failed, bool(run.interrupted))
    return RunReport(outcome, doc, bool(run.interrupted))


async def _send(run: _Run, found: Survey, work: list[WorkItem]) -> None:
    """Run ``work`` through the lanes, ledger.json rewritten as it goes (counting the
    lanes' requests from now on); the stop reasons go to ``run.outcome``. The network
    stack is imported here: a resume with nothing to send never loads it."""
    from pipeline.engine._lanes import build_lanes
    from pipeline.engine._scheduler import Scheduler

    batch, options, stack = run.batch, run.options, run.stack
    spent_usd, spent_credits = found.spent()
    budget = batch.budget
    if options.max_usd is not None:
        budget = replace(budget, max_usd=options.max_usd)
    guard = BudgetGuard(budget, spent_usd=spent_usd, spent_credits=spent_credits)
    shared = _fleet_run(run, found.broken)
    if shared is not None:  # the batch is shared with other processes: join them
        await shared.join()
        stack.push_async_callback(shared.leave)
    lanes = await build_lanes(batch, run.endpoints, options, stack, shared)

    def requests() -> dict[str, tuple[int, int]]:
        return {name: (s.requests, s.rate_limited) for name, s in view().items()}

    def view() -> dict[str, LaneStats]:
        return {name: lane.stats() for name, lane in lanes.items()}

    ledger = run.sink
    ledger.count_requests(requests)
    intake = found.intake  # a new batch (sqlite: never shared)
    feed: Feeds | None = shared.feed if shared else None
    if intake is not None:  # the jobs go out as they are stored (engine._intake)
        assert len(work) == len(batch.jobs), "a new batch's plan is every job, in order"
        feed = intake.feeds()
    scheduler = Scheduler(
        batch,
        lanes=lanes,
        state=run.state,
        output=run.output,
        budget=shared.budget if shared else guard,
        clock=options.clock,
        on_change=ledger.mark_dirty,
        feed=feed,
        claimed=found.claimed,
    )
    if options.on_start is not None:
        options.on_start(view)

    async def store_jobs() -> None:
        assert intake is not None
        try:
            await intake.run()
        except StateError as exc:
            scheduler.storage_failed(exc)

    async def keep_ledger() -> None:
        if intake is not None:  # the ledger shows the batch once it is all stored
            await intake.finished.wait()
        try:
            await ledger.run()
        except Exception as exc:
            failure = storage_stop(exc, run.output)
            if failure is None:
                raise
            scheduler.storage_failed(failure)

    ledger.mark_dirty()  # the sink's first write: the state as resumed
    async with anyio.create_task_group() as tg:
        tg.start_soon(keep_ledger)
        if intake is not None:
            tg.start_soon(store_jobs)
        if shared is not None:
            tg.start_soon(shared.heartbeat, scheduler.stop_submitting)
        with anyio.CancelScope() as run_scope:
            if options.handle_signals:
                async with signals_cancel(run_scope, run.interrupted):
                    await scheduler.run(work)
            else:
                await scheduler.run(work)
        tg.cancel_scope.cancel()
    with anyio.CancelScope(shield=True):
        try:
            await ledger.flush_counters()
        except StateError:
            if scheduler.storage_failure is None:
                raise
    run.outcome.stop_reason = scheduler.stop_reason
    if scheduler.storage_failure is not None:
        run.outcome.storage_failure = str(scheduler.storage_failure)
    for name, lane in lanes.items():
        if lane.stopped is not None:
            run.outcome.lane_stops[name] = str(lane.stopped)


def _fleet_run(run: _Run, broken: set[str]) -> FleetRun | None:
    """This run's part in a fleet, when its state is shared (else None: alone)."""
    fleet = run.state.fleet
    if fleet is None:
        return None
    from pipeline.engine._fleet import FleetRun

    jobs = {job.id: job for job in run.batch.jobs}
    retry = run.options.retry_failed

    def rework(rec: JobRecord) -> WorkItem | None:
        job = jobs.get(rec.id)
        return work_for(job, rec, broken, retry_failed=retry) if job is not None else None

    budget = run.batch.budget
    if run.options.max_usd is not None:
        budget = replace(budget, max_usd=run.options.max_usd)
    return FleetRun(
        fleet, clock=run.options.clock, lease_s=run.options.lease_s, budget=budget, rework=rework
    )
