"""The command line: parse, call the library, print for humans (the only place that does).

A thin client of ``pipeline``'s public API: ``run`` is ``pipeline.run(...,
handle_signals=True, progress=not --quiet)``, ``status`` is ``pipeline.status``, and so
on. Exit codes (design.md): 0 all jobs completed; 1 finished with failures; 2 bad input
or usage, nothing sent; 3 aborted (credentials, credit, budget); 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import anyio

from pipeline import _gc
from pipeline.cli._parser import EXIT_USAGE, build_parser
from pipeline.errors import ManifestError, StateError, StorageFailed, UsageError

if TYPE_CHECKING:
    from pipeline._library import RunResult

EXIT_OK, EXIT_FAILED, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 3, 130
MAX_ISSUES_SHOWN = 50


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = _dispatch(args)
        _gc.spare_at_exit()  # what the command built dies with the process
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
        import pipeline

        print(pipeline.report(args.dir, rows=args.rows, cols=args.cols, state=args.state))
        return EXIT_OK
    if args.command == "export":
        return _export(args)
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
    if isinstance(exc, StorageFailed):  # the output refused (outside a run's own report)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ABORTED
    if isinstance(exc, UsageError | StateError):
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, OSError):
        # An output folder that cannot be written: the user's to fix, so a message and
        # no traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        reason = exc.strerror or str(exc)
        print(f"error: {where}{reason}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return None


def _run(args: argparse.Namespace) -> int:
    import pipeline

    emulate: Any = False
    if args.emulate:
        from pipeline.emulator import EmulatorConfig

        emulate = EmulatorConfig(latency_s=args.emulate_latency, latency_jitter=0.5)
    if args.max_usd is not None and args.max_usd <= 0:
        raise UsageError("--max-usd must be > 0")
    if not args.lease_s > 0:
        raise UsageError("--lease-s must be > 0")
    _route_retries_to_the_run_log()
    result = pipeline.run(
        args.manifest,
        out=args.out,
        emulate=emulate,
        max_usd=args.max_usd,
        retry_failed=args.retry_failed,
        state=args.state,
        lease_s=args.lease_s,
        progress=not args.quiet,
        handle_signals=True,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "exit_code": result.exit_code,
                    "output_dir": result.out,
                    "totals": _totals(result),
                    "providers": result.providers,
                    "aborted_reason": result.aborted_reason,
                },
                indent=2,
            )
        )
    if not args.quiet:
        _print_summary(result)
    return result.exit_code


def _route_retries_to_the_run_log() -> None:
    """The command owns its process: stamina's own retry instrumentation (a warning on
    stderr per retry) is turned off; the run log has every retry."""
    import stamina.instrumentation

    stamina.instrumentation.set_on_retry_hooks([])


def _totals(r: RunResult) -> dict[str, Any]:
    return {
        "jobs": r.jobs,
        "completed": r.completed,
        "failed": r.failed,
        "pending": r.pending,
        "images": r.images,
        "cost_usd": r.cost_usd,
        "credits": r.credits,
    }


def _print_summary(r: RunResult) -> None:
    err = sys.stderr
    credits = f", {r.credits:g} credits" if r.credits else ""
    print(
        f"{r.completed}/{r.jobs} jobs completed, {r.failed} failed, {r.pending} pending; "
        f"{r.images} images; ${r.cost_usd:.3f}{credits}",
        file=err,
    )
    if r.aborted_reason:
        print(f"stopped: {r.aborted_reason}; {r.pending} jobs left (rerun to continue)", file=err)
    if r.interrupted:
        print("interrupted: state saved; rerun the same command to resume", file=err)
    print(f"ledger: {r.ledger_path}", file=err)


def _plan(args: argparse.Namespace) -> int:
    import pipeline
    from pipeline.cli._views import render_plan
    from pipeline.manifest import plan_to_json

    plan = pipeline.plan(args.manifest, out=args.out)
    if args.json:
        print(json.dumps(plan_to_json(plan), indent=2))
    else:
        print(render_plan(plan))
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    import pipeline
    from pipeline.cli._views import render_status

    doc = pipeline.status(args.dir, state=args.state).as_dict()
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(render_status(doc))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    import pipeline

    done = pipeline.export(args.dir, args.format, args.to, state=args.state)
    if args.json:
        print(json.dumps(dataclasses.asdict(done), indent=2))
    else:
        print(
            f"{done.images} images exported as {done.format} to {done.destination} "
            f"({done.files} files, {done.bytes:,} bytes)"
        )
    return EXIT_OK


def _emulate(args: argparse.Namespace) -> int:
    from pipeline.emulator import EmulatorConfig, fault_profile, required_keys, serve_forever

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
