"""The command line's arguments: every command, its options and their help."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_USAGE = 2  # argparse's own code for a usage error, and ours for bad input


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
    _state_option(run)
    run.add_argument(
        "--lease-s",
        type=float,
        default=30.0,
        metavar="S",
        help="with a shared state: how long this process's jobs stay its own after its "
        "last heartbeat (default 30)",
    )
    run.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress output")

    plan = sub.add_parser("plan", help="validate and expand a manifest; send nothing")
    plan.add_argument("manifest")
    plan.add_argument("--out", metavar="DIR")
    plan.add_argument("--json", action="store_true")

    status = sub.add_parser("status", help="progress and spend of a batch")
    status.add_argument("dir")
    status.add_argument("--json", action="store_true")
    _state_option(status)

    report = sub.add_parser("report", help="write DIR/report.html, the contact sheet")
    report.add_argument("dir")
    report.add_argument(
        "--rows", metavar="AXES", help="row axes, comma-separated (default: prompt)"
    )
    report.add_argument("--cols", metavar="AXES", help="column axes (default: every sweep axis)")
    _state_option(report)

    export = sub.add_parser("export", help="write a batch's completed images as a dataset")
    export.add_argument("dir")
    export.add_argument("--format", required=True, choices=("imagefolder", "webdataset", "parquet"))
    export.add_argument("--to", required=True, metavar="DEST", help="a new or empty directory")
    export.add_argument("--json", action="store_true", help="print what was written as JSON")
    _state_option(export)

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


def _state_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        metavar="URL",
        help="where the run state lives: sqlite:///PATH or a path "
        "(default: $PIPELINE_STATE_URL, else DIR/state.db)",
    )
