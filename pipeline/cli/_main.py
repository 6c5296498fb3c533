"""The command line: parse, call the library, print for humans (the only place that does).

Exit codes (design.md): 0 all jobs completed; 1 finished with failures; 2 bad input or
usage, nothing sent; 3 aborted (credentials, credit, budget); 130 interrupted.
"""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack, suppress
from typing import Any

import anyio

from pipeline.errors import ManifestError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
MAX_ISSUES_SHOWN = 50


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on usage errors already
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pipeline", description="Batch image generation with a cost ledger.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run (or resume) a batch")
    run.add_argument("manifest")
    run.add_argument("--out", metavar="DIR", help="output folder (default: from the manifest)")
    run.add_argument("--emulate", action="store_true", help="run against the built-in emulator")
    run.add_argument(
        "--emulate-latency",
        type=float,
        default=1.0,
        metavar="S",
        help="mean task duration of the emulator (default 1.0 s)",
    )
    run.add_argument("--max-usd", type=float, metavar="X", help="never spend more than X USD")
    run.add_argument("--retry-failed", action="store_true", help="rerun jobs that failed")
    run.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress output")

    plan = sub.add_parser("plan", help="validate and expand a manifest; send nothing")
    plan.add_argument("manifest")
    plan.add_argument("--out", metavar="DIR")
    plan.add_argument("--json", action="store_true")

    status = sub.add_parser("status", help="progress and spend of a batch")
    status.add_argument("dir")
    status.add_argument("--json", action="store_true")

    report = sub.add_parser("report", help="write DIR/report.html, the contact sheet")
    report.add_argument("dir")
    report.add_argument(
        "--rows", metavar="AXES", help="row axes, comma-separated (default: prompt)"
    )
    report.add_argument("--cols", metavar="AXES", help="column axes (default: every sweep axis)")

    emu = sub.add_parser("emulate", help="serve the provider emulator")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=int, default=8787)
    emu.add_argument(
        "--latency",
        type=float,
        default=1.0,
        metavar="S",
        help="mean task duration in seconds (0: done at once)",
    )
    emu.add_argument(
        "--jitter",
        type=float,
        default=0.5,
        metavar="F",
        help="task durations vary uniformly by +-F x latency (default 0.5)",
    )
    emu.add_argument(
        "--image-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="scale generated image sizes (default 1.0)",
    )
    emu.add_argument("--seed", type=int, default=0)
    emu.add_argument(
        "--require-key",
        metavar="ENV",
        help="accept only the bearer key held in environment variable ENV "
        "(default: any non-empty key)",
    )
    emu.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="inject a fault, e.g. submit_5xx=0.1, rate_429=0.05, max_rps=5, "
        "max_concurrent=3, retry_after=1 (repeatable; see FaultProfile)",
    )

    sub.add_parser("schema", help="print the manifest's JSON Schema")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = _dispatch(args)
        # What the command built (100k records) dies with the process: spare the final
        # garbage collection a walk over all of it.
        gc.freeze()
        return result
    except BaseException as exc:  # sorted below into user errors and bugs
        leaf = _sole_cause(exc)
        code = _user_error(leaf)
        if code is None:
            raise
        return code


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "plan":
        return _plan(args)
    if args.command == "status":
        return _status(args)
    if args.command == "report":
        from pipeline.gallery import write_report

        print(write_report(args.dir, rows=args.rows, cols=args.cols))
        return EXIT_OK
    if args.command == "emulate":
        return _emulate(args)
    if args.command == "schema":
        from pipeline.manifest import manifest_schema

        print(json.dumps(manifest_schema(), indent=2))
        return EXIT_OK
    raise AssertionError(args.command)  # pragma: no cover


def _sole_cause(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups, or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _user_error(exc: BaseException) -> int | None:
    """Print a user-caused error without a traceback and return its exit code; None for
    anything else (a bug, which keeps its traceback)."""
    if isinstance(exc, ManifestError):
        for issue in exc.issues[:MAX_ISSUES_SHOWN]:
            print(f"error: {issue}", file=sys.stderr)
        if len(exc.issues) > MAX_ISSUES_SHOWN:
            print(f"... and {len(exc.issues) - MAX_ISSUES_SHOWN} more", file=sys.stderr)
        print("nothing was sent.", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, UsageError):
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, OSError | sqlite3.Error):
        # An output folder that cannot be written, a state.db that is not one: the
        # user's to fix, so a message and no traceback.
        where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"error: {where}{reason}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return None


def _run(args: argparse.Namespace) -> int:
    from pipeline.engine._runner import RunOptions, check_keys_or_raise, exit_code
    from pipeline.manifest import load_manifest
    from pipeline.store._records import gc_paused

    with gc_paused(promote=True):  # the batch lives as long as the process
        batch = load_manifest(args.manifest, output_dir=args.out)
    if args.max_usd is not None and args.max_usd <= 0:
        raise UsageError("--max-usd must be > 0")
    options = RunOptions(max_usd=args.max_usd, retry_failed=args.retry_failed)
    if not args.emulate:
        check_keys_or_raise(batch, options)
    outcome, ledger, interrupted = anyio.run(_run_async, batch, options, args, backend="asyncio")
    totals = ledger["totals"]
    assert isinstance(totals, dict)
    if args.json:
        print(
            json.dumps(
                {
                    "exit_code": exit_code(outcome, interrupted),
                    "output_dir": batch.output_dir,
                    "totals": totals,
                    "providers": ledger["providers"],
                    "stop_reason": outcome.stop_reason,
                    "lane_stops": outcome.lane_stops,
                },
                indent=2,
            )
        )
    if not args.quiet:
        _print_summary(batch.output_dir, totals, outcome, interrupted)
    return exit_code(outcome, interrupted)


async def _run_async(batch: Any, options: Any, args: argparse.Namespace) -> Any:
    from pipeline.engine._runner import RunOptions, run_batch

    async with AsyncExitStack() as stack:
        if args.emulate:
            from pipeline.emulator import EmulatorConfig, serve
            from pipeline.providers.specs import SPECS

            config = EmulatorConfig(latency_s=args.emulate_latency, latency_jitter=0.5)
            server = await stack.enter_async_context(serve(config))
            options = RunOptions(
                max_usd=options.max_usd,
                retry_failed=options.retry_failed,
                base_urls={name: server.base_url for name in SPECS},
                api_keys={name: "emulator-key" for name in SPECS},
            )
            if not args.quiet:
                print(f"emulator: serving both providers at {server.base_url}", file=sys.stderr)
        if args.quiet:
            return await run_batch(batch, options)
        from pipeline.cli._progress import Progress

        async with anyio.create_task_group() as tg:

            def on_start(scheduler: Any) -> None:
                tg.start_soon(Progress(scheduler.lanes, sys.stderr).run)

            result = await run_batch(batch, options, on_start=on_start)
            tg.cancel_scope.cancel()
        return result


def _print_summary(out: str, totals: dict[str, Any], outcome: Any, interrupted: bool) -> None:
    err = sys.stderr
    print(
        f"{totals['completed']}/{totals['jobs']} jobs completed, {totals['failed']} failed, "
        f"{totals['pending']} pending; {totals['images']} images; "
        f"${totals['cost_usd']:.3f}"
        + (f", {totals['credits']:g} credits" if totals["credits"] else ""),
        file=err,
    )
    for name, reason in outcome.lane_stops.items():
        print(f"{name}: stopped: {reason}", file=err)
    if outcome.stop_reason:
        print(
            f"stopped submitting: {outcome.stop_reason}; {totals['pending']} jobs left "
            "(rerun to continue)",
            file=err,
        )
    if interrupted:
        print("interrupted: state saved; rerun the same command to resume", file=err)
    print(f"ledger: {out}/ledger.json", file=err)


def _plan(args: argparse.Namespace) -> int:
    from pipeline.cli._views import render_plan
    from pipeline.manifest import load_manifest
    from pipeline.manifest._plan import make_plan, plan_to_json

    batch = load_manifest(args.manifest, output_dir=args.out)
    plan = make_plan(batch)
    if args.json:
        print(json.dumps(plan_to_json(plan), indent=2))
    else:
        print(render_plan(plan))
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from pipeline.cli._views import render_status
    from pipeline.ledger._status import read_status

    doc = read_status(args.dir)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(render_status(doc))
    return EXIT_OK


def _emulate(args: argparse.Namespace) -> int:
    from pipeline.emulator import EmulatorConfig, serve_forever
    from pipeline.emulator._options import fault_profile, required_keys

    try:
        config = EmulatorConfig(
            latency_s=args.latency,
            latency_jitter=args.jitter,
            image_scale=args.image_scale,
            seed=args.seed,
            faults=fault_profile(args.fault),
            api_keys=required_keys(args.require_key),
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"emulate: {exc}") from exc

    def ready(url: str) -> None:
        print(f"emulator: serving wavespeed and skills_video at {url}", file=sys.stderr, flush=True)

    with suppress(KeyboardInterrupt):
        anyio.run(serve_forever, config, args.host, args.port, ready, backend="asyncio")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
