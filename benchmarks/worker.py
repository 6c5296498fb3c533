"""One measured run in its own process: ``python -m benchmarks.worker WORKLOAD_JSON``.

Runs the floor or the real pipeline (``pipeline.engine._runner.run_batch``) on the workload and
prints a :class:`WorkResult` as one JSON line. (Figure 2 profiles this process from
outside, with py-spy.)
"""

from __future__ import annotations

import sys
import time

import anyio

import pipeline.engine._scheduler  # noqa: F401  (see below)
from benchmarks.floor import run_floor
from benchmarks.workload import BENCH_KEY, Workload, WorkResult, build_batch
from pipeline.engine._runner import RunOptions, run_batch

# `pipeline run` imports the scheduler, lanes and adapters only once it has work to send
# (a resume with nothing to send never loads them). Both sides are timed from after their
# imports, so the scheduler is imported here, as the floor's aiohttp is.


async def run_pipeline(w: Workload) -> WorkResult:
    """Run the workload through the real pipeline; its wall time and job counts."""
    batch = build_batch(w)
    options = RunOptions(
        tier_defaults=False,  # the emulator's accounts have no tiers
        base_urls={p: w.base_url for p in w.providers},
        api_keys={p: BENCH_KEY for p in w.providers},
    )
    start = time.perf_counter()
    outcome, _, _ = await run_batch(batch, options)
    return WorkResult(
        seconds=time.perf_counter() - start, completed=outcome.completed, failed=outcome.failed
    )


def main(raw: str) -> None:
    w = Workload.model_validate_json(raw)
    if w.mode == "floor":
        result = anyio.run(run_floor, w, backend="asyncio")
    else:
        result = anyio.run(run_pipeline, w, backend="asyncio")
    print(result.model_dump_json(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
