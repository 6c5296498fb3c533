"""The library's entry points: ``run`` / ``arun`` a manifest, ``plan``, ``status``,
``report``, ``export``, and ``emulated()``; what ``import pipeline`` re-exports.

A library call changes nothing process-wide: no signal handlers unless
``handle_signals=True`` (the command line passes it), no logging configuration (a run
logs to its ``run.log``, and to the application's ``pipeline`` logger only when the
application set one up), no other library's globals, and nothing printed unless
``progress=True``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import _gc
from pipeline._results import BatchStatus, RunResult
from pipeline.errors import UsageError
from pipeline.jobs import Batch
from pipeline.manifest import Plan, load_manifest, make_plan

if TYPE_CHECKING:
    from pipeline.clock import Clock
    from pipeline.engine import RunOptions, RunReport
    from pipeline.ledger import ExportResult

Manifest = str | os.PathLike[str] | Mapping[str, object]

__all__ = [
    "BatchStatus",
    "RunResult",
    "arun",
    "emulated",
    "export",
    "plan",
    "report",
    "run",
    "status",
]

EMULATOR_LATENCY_S = 1.0  # `--emulate`'s tasks take 0.5-1.5 s, as real ones take longer


def plan(
    manifest: Manifest,
    *,
    out: str | os.PathLike[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Plan:
    """Validate and expand ``manifest``: jobs, images and estimated cost per provider and
    sweep variant. Sends nothing; raises ``ManifestError``."""
    # The batch lives only for this call: made, counted and freed with collections paused,
    # its million objects are never scanned by a collection that could find nothing.
    with _gc.paused():
        return make_plan(load_manifest(manifest, out=out, base_dir=base_dir))


def status(out: str | os.PathLike[str], *, state: str | None = None) -> BatchStatus:
    """The progress and spend of the batch whose output is ``out`` (its state: ``state``,
    else ``$PIPELINE_STATE_URL``, else ``out/state.db``). Raises ``UsageError`` when
    there is no batch there."""
    from pipeline.ledger import read_status
    from pipeline.store import state_location

    output = os.fspath(out)
    doc = read_status(state_location(state, output), output)
    return BatchStatus(**doc)


def report(
    out: str | os.PathLike[str],
    *,
    rows: str | None = None,
    cols: str | None = None,
    state: str | None = None,
) -> Path:
    """Write ``out/report.html``, the batch's contact sheet, and return its path (for an
    object-store ``out``: in the batch's local home, beside a copy of its images).
    ``rows`` / ``cols``: the axes, comma-separated (``prompt``, ``provider``, a sweep axis
    or template variable). ``state`` (or ``$PIPELINE_STATE_URL``): draw it from the run
    state there (as it is now, also mid-run) instead of ``out/ledger.json``. Raises
    ``UsageError`` (no batch, an unknown axis...)."""
    from pipeline._home import is_object_url, local_home
    from pipeline.gallery import write_report
    from pipeline.store import STATE_ENV

    output = os.fspath(out)
    ledger = None
    if state is not None or os.environ.get(STATE_ENV):
        ledger = _ledger_from_state(state, output)
    if not is_object_url(output):
        return write_report(output, rows=rows, cols=cols, ledger=ledger)
    # An object store's batch: drawn in its local home, from a copy of its images.
    from pipeline._mirror import mirror_images, read_ledger
    from pipeline.outputs import open_output

    store = open_output(output)
    ledger = ledger if ledger is not None else read_ledger(store)
    home = local_home(output)
    mirror_images(store, home, ledger)
    return write_report(home, rows=rows, cols=cols, ledger=ledger)


def export(
    out: str | os.PathLike[str],
    format: str,
    to: str | os.PathLike[str],
    *,
    state: str | None = None,
    shard_samples: int = 10_000,
    shard_bytes: int = 1_000_000_000,
) -> ExportResult:
    """Write the completed images of the batch at ``out`` (a folder or an object-store
    URL) to the new or empty directory ``to``, as a ``format`` dataset: ``imagefolder``,
    ``webdataset`` or ``parquet`` (one metadata record per image; the README gives the
    layouts). Each image is checked against its recorded sha256 first. Blocking.
    ``shard_samples`` / ``shard_bytes`` cap a shard (webdataset, parquet). Raises
    ``UsageError``, having left nothing behind (no batch, nothing completed, ``to`` not
    empty, an image missing or changed)."""
    from pipeline.ledger import export_batch

    return export_batch(
        os.fspath(out),
        format,
        os.fspath(to),
        state=state,
        shard_samples=shard_samples,
        shard_bytes=shard_bytes,
    )


def _ledger_from_state(state: str | None, output: str) -> bytes:
    """The batch's ledger.json as its run state holds it now."""
    from pipeline.clock import utcnow
    from pipeline.ledger import LedgerHeader, encode_document, ledger_document
    from pipeline.store import read_state, state_location

    snap = read_state(state_location(state, output), output)
    meta = snap.meta
    header = LedgerHeader(
        meta.get("name", ""), meta.get("manifest", ""), meta.get("started_at", ""), utcnow(), False
    )
    doc = ledger_document(header, snap.records, snap.counters)
    return "".join(encode_document(doc)).encode()


@asynccontextmanager
async def emulated(config: Any = None, **options: Any) -> AsyncIterator[str]:
    """Serve the provider emulator (both APIs) on 127.0.0.1 for the block and yield its
    base URL. ``config``: an ``EmulatorConfig``; else one built from ``options`` (e.g.
    ``latency_s=0.2``, ``faults=FaultProfile(...)``)."""
    from pipeline.emulator import EmulatorConfig, serve

    if config is None:
        config = EmulatorConfig(**options)
    async with serve(config) as server:
        yield server.base_url


def run(manifest: Manifest, **options: Any) -> RunResult:
    """Run (or resume) a batch and wait for it: ``arun`` in an event loop of its own.
    Same options, same result, same errors."""
    import anyio

    result: RunResult = anyio.run(_arun_kw, manifest, options, backend="asyncio")
    return result


async def _arun_kw(manifest: Manifest, options: dict[str, Any]) -> RunResult:
    return await arun(manifest, **options)


async def arun(
    manifest: Manifest,
    *,
    out: str | os.PathLike[str] | None = None,
    emulate: bool | Any = False,
    max_usd: float | None = None,
    retry_failed: bool = False,
    state: str | None = None,
    api_keys: Mapping[str, str] | None = None,
    base_urls: Mapping[str, str] | None = None,
    progress: bool = False,
    base_dir: str | os.PathLike[str] | None = None,
    handle_signals: bool = False,
    lease_s: float = 30.0,
    clock: Clock | None = None,
) -> RunResult:
    """Run (or resume) the batch ``manifest`` (a YAML or CSV path, or a mapping with the
    manifest's schema, its ``prompts_file`` found in ``base_dir``) inside a running
    anyio/asyncio event loop. Rerunning the same manifest and output resumes it.

    Options mirror the command line: ``out`` (default: the manifest's ``output_dir``,
    else ``out/<name>``), ``emulate`` (True, or an ``EmulatorConfig``: run against the
    built-in emulator, no keys needed), ``max_usd``, ``retry_failed``, ``state`` (where
    the run state lives), ``api_keys`` and ``base_urls`` (per provider; default: the
    environment), ``progress`` (live progress on stderr), ``handle_signals`` (the first
    SIGINT/SIGTERM stops the run with its state kept: ``interrupted``, exit code 130),
    ``lease_s`` (with a shared state: how long this process's jobs stay its own after its
    last heartbeat; then others take them over).

    Raises ``ManifestError`` (its ``.issues`` carry file, line, field and message) or
    ``UsageError`` (a missing key, a bad option) before anything is sent. Cancelling the
    call stops the run with its state committed; a rerun resumes it.
    """
    from pipeline.clock import SystemClock
    from pipeline.engine import RunOptions, exit_code, resolve_endpoints, run_batch

    with _gc.paused(keep=True):  # the batch lives for the run: no collection rescans it
        batch = load_manifest(manifest, out=out, base_dir=base_dir)
    if max_usd is not None and not max_usd > 0:
        raise UsageError("max_usd must be > 0")
    async with AsyncExitStack() as stack:
        if emulate is not False and emulate is not None:
            base_urls, api_keys = await _start_emulator(stack, emulate, progress)
        options = RunOptions(
            max_usd=max_usd,
            retry_failed=retry_failed,
            base_urls=base_urls,
            api_keys=api_keys,
            state=state,
            handle_signals=handle_signals,
            log_to_stderr=progress,
            clock=clock or SystemClock(),
            lease_s=lease_s,
            # The emulator's accounts have no tiers: only limits the manifest states.
            tier_defaults=emulate is False or emulate is None,
        )
        resolve_endpoints(batch, options)  # a missing key: before anything else happens
        if progress:
            report_ = await _run_with_progress(batch, options)
        else:
            report_ = await run_batch(batch, options)
    outcome, ledger = report_.outcome, report_.ledger
    totals: Mapping[str, Any] = ledger["totals"]  # type: ignore[assignment]
    reasons = [outcome.stop_reason] if outcome.stop_reason else []
    reasons += [f"{name}: {why}" for name, why in outcome.lane_stops.items()]
    return RunResult(
        name=batch.name,
        out=batch.output_dir,
        ledger_path=os.path.join(batch.output_dir, "ledger.json"),
        jobs=totals["jobs"],
        completed=totals["completed"],
        failed=totals["failed"],
        pending=totals["pending"],
        images=totals["images"],
        cost_usd=totals["cost_usd"],
        credits=totals["credits"],
        interrupted=report_.interrupted,
        exit_code=exit_code(outcome, report_.interrupted),
        aborted_reason="; ".join(reasons) or None,
        providers=ledger["providers"],  # type: ignore[arg-type]
    )


async def _start_emulator(
    stack: AsyncExitStack, emulate: Any, progress: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """Serve the emulator for the run; every provider points at it, with its key."""
    from pipeline.emulator import EMULATOR_KEY, EmulatorConfig, serve
    from pipeline.providers.specs import SPECS

    config = emulate
    if not isinstance(config, EmulatorConfig):
        config = EmulatorConfig(latency_s=EMULATOR_LATENCY_S, latency_jitter=0.5)
    server = await stack.enter_async_context(serve(config))
    if progress:
        print(f"emulator: serving both providers at {server.base_url}", file=sys.stderr)
    return {n: server.base_url for n in SPECS}, {n: EMULATOR_KEY for n in SPECS}


async def _run_with_progress(batch: Batch, options: RunOptions) -> RunReport:
    from dataclasses import replace

    import anyio

    from pipeline.cli import Progress
    from pipeline.engine import LaneView, run_batch

    async with anyio.create_task_group() as tg:

        def on_start(view: LaneView) -> None:
            tg.start_soon(Progress(view, sys.stderr, clock=options.clock).run)

        report_ = await run_batch(batch, replace(options, on_start=on_start))
        tg.cancel_scope.cancel()
    return report_
