"""``python -m benchmarks`` (``make bench``): run every figure, print the table, save JSON.

Options: ``--only 1,3`` runs some figures; ``--quick`` shrinks every workload for a
smoke test (its figures are not the issue's); ``--scale`` runs figures 12-14 (a
million jobs: plan; run, Ctrl-C and status; resume and ledger), like ``--only 12,13,14``
(a plain run includes figure 12 only); ``--out`` moves the JSON file;
``--strict`` exits 1 when a target is missed. Exit 2 when a figure could not be measured.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import (
    durability,
    fleet,
    memory,
    overhead,
    planscale,
    polling,
    rate,
    realsize,
    runscale,
    scale,
    sdk,
    streaming,
)
from benchmarks.procs import REPO, cores
from benchmarks.results import Figure, environment, render_table, write_results

DEFAULT_OUT = REPO / "out" / "bench" / "results.json"
SCALE = (12, 13, 14)  # the figures --scale runs (a million jobs each)
RESUME_1M_S = 15.0


def log(line: str) -> None:
    print(line, flush=True)


def _suite(quick: bool, out: Path) -> dict[int, tuple[str, Callable[[], list[Figure]]]]:
    q = 10 if quick else 1  # --quick divides the workloads
    return {
        1: (
            "overhead vs the floor, throughput, profile (figures 1-2)",
            lambda: overhead.measure(2000 // q, out.parent, log),
        ),
        3: ("rate-limit fidelity (figure 3)", lambda: rate.measure(15.0 / q, log)),
        4: ("polling efficiency (figure 4)", lambda: polling.measure(20_000 // q, 100, log)),
        5: ("scale (figure 5)", lambda: scale.measure(100_000 // q, log)),
        6: ("memory under load (figure 6)", lambda: memory.measure(5000 // q, log)),
        7: ("a fleet on one PostgreSQL state (figure 7)", lambda: fleet.measure(15.0 / q, log)),
        8: (
            "what the durable intent costs (figure 8)",
            lambda: durability.measure(10_000 // q, 2000 // q, log),
        ),
        9: (
            "streamed tasks against polled ones (figure 9)",
            lambda: streaming.measure(200 // q, log),
        ),
        10: (
            "polling against the official WaveSpeed SDK (figure 10)",
            lambda: sdk.measure(12 if quick else 48, log, large=2000 // q),
        ),
        11: (
            "real-size images, local and S3 (figure 11)",
            lambda: realsize.measure(2000 // q, 2000 // q, log),
        ),
        12: (
            "pipeline plan at a million jobs (figure 12)",
            lambda: planscale.measure(planscale.JOBS // q, log),
        ),
        13: (
            "pipeline run of a million new jobs, Ctrl-C, status (figure 13)",
            lambda: runscale.measure(runscale.JOBS // q, log, runscale.WINDOW_S / q),
        ),
        14: (
            "figure 5 at a million jobs: resume, ledger (figure 14)",
            lambda: scale.measure(
                1_000_000 // q, log, number=14, bounds=(15.0, 400.0, RESUME_1M_S, 20.0)
            ),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated figure numbers (1 = 1-2)")
    parser.add_argument("--quick", action="store_true", help="smaller workloads (smoke test)")
    parser.add_argument(
        "--scale", action="store_true", help="figures 12-14: a million jobs (about 15 min)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    suite = _suite(args.quick, args.out)
    wanted = [int(x) for x in args.only.split(",") if x.strip()]
    if args.scale:
        wanted += [n for n in SCALE if n not in wanted]
    wanted = wanted or [n for n in suite if n not in SCALE or n == SCALE[0]]
    unknown = [n for n in wanted if n not in suite]
    if unknown:
        parser.error(f"no figure {unknown}; choose from {sorted(suite)} (1 covers 1-2)")
    env = environment()
    log(
        f"pipeline benchmarks on {cores()} cores, Python {env['python']}, load average "
        f"{env['load_average_at_start'][0]:.2f}"
        + (" (--quick: not the issue's sizes)" if args.quick else "")
    )
    figures: list[Figure] = []
    started = time.perf_counter()
    for n in wanted:
        title, run = suite[n]
        log(f"\n== {title}")
        t0 = time.perf_counter()
        try:
            figures += run()
        except Exception as exc:  # one broken figure must not hide the others
            log(traceback.format_exc())
            figures.append(
                Figure(
                    f"error_{n}",
                    f"{n}. {title}: ERROR",
                    float("nan"),
                    "",
                    "runs",
                    False,
                    {"error": repr(exc)},
                )
            )
        log(f"   ({time.perf_counter() - t0:.0f} s)")
    log(
        f"\n{cores()} cores; ratios are measured within this run "
        f"(total {time.perf_counter() - started:.0f} s)\n"
    )
    log(render_table(figures))
    write_results(args.out, env, figures)
    log(f"\nresults: {args.out}")
    if any(f.key.startswith("error_") for f in figures):
        return 2
    return 1 if args.strict and any(f.ok is False for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
