"""Wiring for one ``pipeline run``: keys, base URLs, state, lanes, ledger, signals.

This is the composition root: it is the only module that knows every part, and the
library entry point (``await run_batch(batch, options)``) the CLI calls.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from pipeline._logs import get_logger, run_logging
from pipeline.clock import Clock, SystemClock
from pipeline.engine._budget import BudgetGuard
from pipeline.engine._outcome import RunOutcome, utcnow
from pipeline.engine._relocate import keep_files_with_their_jobs
from pipeline.engine._resume import WorkItem, plan_work
from pipeline.errors import UsageError
from pipeline.jobs import Batch
from pipeline.ledger._document import LedgerHeader, spent
from pipeline.ledger._sink import STAMP_KEY, LedgerSink
from pipeline.providers.specs import SPECS
from pipeline.store._records import gc_paused
from pipeline.store._sqlite import JobRecord, StateStore

if TYPE_CHECKING:
    import stamina.instrumentation

    from pipeline.engine._scheduler import Scheduler

EMULATOR_KEY = "emulator-key"  # not a secret: the local emulator accepts any bearer


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What the command line adds to a manifest."""

    max_usd: float | None = None
    retry_failed: bool = False
    base_urls: dict[str, str] | None = None  # set by --emulate
    api_keys: dict[str, str] | None = None  # set by --emulate; else from the environment
    clock: Clock = field(default_factory=SystemClock)


def resolve_endpoints(batch: Batch, options: RunOptions) -> dict[str, tuple[str, str]]:
    """Base URL and key per provider used by the batch.

    Raises ``UsageError`` naming every missing key before anything is sent.
    """
    endpoints: dict[str, tuple[str, str]] = {}
    missing: list[str] = []
    for name in sorted({j.provider for j in batch.jobs}):
        spec = SPECS[name]
        settings = batch.providers[name]
        if options.base_urls is not None:
            base = options.base_urls[name]
        else:
            base = os.environ.get(spec.env_base_url) or settings.base_url or spec.default_base_url
        key = (options.api_keys or {}).get(name) or os.environ.get(spec.env_key, "")
        if not key.strip():
            missing.append(spec.env_key)
        endpoints[name] = (base.rstrip("/"), key.strip())
    if missing:
        raise UsageError(
            "missing API key: set " + " and ".join(missing) + " in the environment "
            "(or use --emulate to run against the local emulator)"
        )
    return endpoints


def _log_retry(details: stamina.instrumentation.RetryDetails) -> None:
    get_logger().info(
        "retry %d of %s in %.2f s after %s: %s",
        details.retry_num,
        details.name,
        details.wait_for,
        type(details.caused_by).__name__,
        details.caused_by,
    )


@asynccontextmanager
async def _signals_cancel(scope: anyio.CancelScope, interrupted: list[int]) -> AsyncIterator[None]:
    """First SIGINT/SIGTERM cancels the run (state is committed); a second exits at once."""

    async def watch() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if interrupted:
                    os._exit(130)
                interrupted.append(signum)
                scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


@dataclass(slots=True)
class _Run:
    """The parts of one run that sending work needs."""

    batch: Batch
    options: RunOptions
    endpoints: dict[str, tuple[str, str]]
    state: StateStore
    stack: AsyncExitStack  # what to close when the run ends
    outcome: RunOutcome = field(default_factory=RunOutcome)
    interrupted: list[int] = field(default_factory=list)  # the signals received


async def run_batch(
    batch: Batch,
    options: RunOptions,
    *,
    on_start: Callable[[Scheduler], None] | None = None,
) -> tuple[RunOutcome, dict[str, object], bool]:
    """Run (or resume) ``batch``. Returns the outcome, the final ledger and whether the run
    was interrupted by a signal. ``on_start`` sees the scheduler before it starts (there
    is none when the resume finds nothing to send)."""
    endpoints = resolve_endpoints(batch, options)
    root = Path(batch.output_dir)
    state = await StateStore.open(root / "state.db")
    secrets = [key for _, key in endpoints.values()]
    async with AsyncExitStack() as stack:
        run = _Run(batch, options, endpoints, state, stack)
        log = stack.enter_context(run_logging(root, secrets))
        stack.push_async_callback(state.close)
        meta = await state.get_meta()
        started_at = meta.get("started_at") or utcnow()
        # The stamp is dropped before this run changes anything (see ledger_sink).
        start = {"name": batch.name, "manifest": batch.manifest_path, "started_at": started_at}
        await state.set_meta({**start, STAMP_KEY: ""})
        unchanged = state.writes
        models = {name: spec.model for name, spec in SPECS.items()}
        with gc_paused(promote=True):  # the records live as long as the run
            records = await state.sync_batch(batch.jobs, models)
            # Nothing written after this point means `records` is still the whole state.
            synced_writes = state.writes
            await keep_files_with_their_jobs(state, root, records)
            work = plan_work(batch, records, retry_failed=options.retry_failed)
        log.info(
            "run %s (%s): %d jobs, %d to run now; providers %s",
            batch.name,
            batch.manifest_path,
            len(batch.jobs),
            len(work),
            ", ".join(f"{n} at {b}" for n, (b, _) in endpoints.items()),
        )
        header = LedgerHeader(batch.name, batch.manifest_path, started_at, started_at, False)
        ledger = LedgerSink(state, root / "ledger.json", header)
        if work:
            await _send(run, ledger, records, work, on_start)
        with anyio.CancelScope(shield=True):
            if state.writes == synced_writes:
                final: Sequence[JobRecord] = list(records.values())
            else:
                final = await state.records()
            outcome = run.outcome
            current = {j.id for j in batch.jobs}
            for r in final:
                if r.id not in current:
                    continue
                if r.status == "completed":
                    outcome.completed += 1
                elif r.status == "failed":
                    outcome.failed += 1
                else:
                    outcome.pending += 1
            # Nothing sent and nothing changed: the last run's ledger may hold as it is.
            kept = not work and state.writes == unchanged
            stamp = meta.get(STAMP_KEY) if kept else None
            doc = await ledger.finish(final, finished=outcome.pending == 0, stamp=stamp or None)
            _log_outcome(log, outcome, final, current, bool(run.interrupted))
    return outcome, doc, bool(run.interrupted)


async def _send(
    run: _Run,
    ledger: LedgerSink,
    records: dict[str, JobRecord],
    work: list[WorkItem],
    on_start: Callable[[Scheduler], None] | None,
) -> None:
    """Run ``work`` through the lanes, ``ledger`` rewritten as it goes (counting the
    lanes' requests from now on); the stop reasons go to ``run.outcome``. The network
    stack is imported here: a resume with nothing to send never loads it."""
    import aiohttp
    import stamina.instrumentation

    from pipeline.engine._lane import Lane
    from pipeline.engine._scheduler import Scheduler
    from pipeline.outputs._local import Downloader
    from pipeline.providers._registry import create_adapter

    # Retries go to run.log (through the redacting filter), not to stamina's own logger.
    stamina.instrumentation.set_on_retry_hooks([_log_retry])
    batch, options, stack = run.batch, run.options, run.stack
    with gc_paused():
        costs = [spent(r) for r in records.values()]
    budget = batch.budget
    if options.max_usd is not None:
        budget = replace(budget, max_usd=options.max_usd)
    guard = BudgetGuard(
        budget,
        spent_usd=sum(usd for usd, _ in costs),
        spent_credits=sum(credits for _, credits in costs),
    )
    http = await stack.enter_async_context(
        aiohttp.ClientSession(auto_decompress=False, trust_env=False)
    )
    lanes: dict[str, Lane] = {}
    for name, (base, key) in run.endpoints.items():
        settings = batch.providers[name]
        adapter = create_adapter(
            name, api_key=key, base_url=base, usd_per_credit=settings.usd_per_credit
        )
        stack.push_async_callback(adapter.aclose)
        lanes[name] = Lane(adapter, settings, clock=options.clock)
    ledger.lanes = lanes
    scheduler = Scheduler(
        batch,
        lanes=lanes,
        state=run.state,
        downloader=Downloader(Path(batch.output_dir), session=http),
        budget=guard,
        clock=options.clock,
        on_change=ledger.mark_dirty,
    )
    if on_start is not None:
        on_start(scheduler)
    await ledger.mark_dirty()  # the sink's first write: the state as resumed
    async with anyio.create_task_group() as tg:
        tg.start_soon(ledger.run)
        with anyio.CancelScope() as run_scope:
            async with _signals_cancel(run_scope, run.interrupted):
                await scheduler.run(work)
        tg.cancel_scope.cancel()
    run.outcome.stop_reason = scheduler.stop_reason
    for name, lane in lanes.items():
        if lane.stopped is not None:
            run.outcome.lane_stops[name] = str(lane.stopped)


def _log_outcome(
    log: logging.Logger,
    outcome: RunOutcome,
    records: Sequence[JobRecord],
    current: set[str],
    interrupted: bool,
) -> None:
    for r in records:
        if r.id in current and r.status == "failed" and r.error:
            log.info("job %s failed: %s: %s", r.id, r.error.get("code"), r.error.get("message"))
    for name, reason in outcome.lane_stops.items():
        log.info("lane %s stopped: %s", name, reason)
    if outcome.stop_reason:
        log.info("stopped submitting: %s", outcome.stop_reason)
    log.info(
        "%s: %d completed, %d failed, %d pending",
        "interrupted" if interrupted else "finished",
        outcome.completed,
        outcome.failed,
        outcome.pending,
    )


def exit_code(outcome: RunOutcome, interrupted: bool) -> int:
    """design.md's exit codes."""
    if interrupted:
        return 130
    if outcome.stop_reason is not None or outcome.lane_stops:
        return 3
    if outcome.failed or outcome.pending:
        return 1
    return 0


def check_keys_or_raise(batch: Batch, options: RunOptions) -> None:
    """Fail fast (exit 2) on missing keys, before anything else happens."""
    resolve_endpoints(batch, options)


__all__ = ["RunOptions", "UsageError", "check_keys_or_raise", "exit_code", "run_batch"]
