"""One measured run in its own process: ``python -m benchmarks.worker WORKLOAD_JSON``.

Runs the floor or the real pipeline (``pipeline.runner.run_batch``) on the workload and
prints a :class:`WorkResult` as one JSON line. With ``profile_path`` the pipeline run is
profiled with cProfile (main thread only: sqlite work in worker threads shows up as the
time the event loop waits for it) and the stats are dumped there.
"""

from __future__ import annotations

import cProfile
import sys
import time

import anyio

from benchmarks.floor import run_floor
from benchmarks.workload import BENCH_KEY, Workload, WorkResult, build_batch
from pipeline.runner import RunOptions, run_batch


async def run_pipeline(w: Workload) -> WorkResult:
    """Run the workload through the real pipeline; its wall time and job counts."""
    batch = build_batch(w)
    options = RunOptions(
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
    elif w.profile_path is None:
        result = anyio.run(run_pipeline, w, backend="asyncio")
    else:
        profiler = cProfile.Profile()
        profiler.enable()
        result = anyio.run(run_pipeline, w, backend="asyncio")
        profiler.disable()
        profiler.dump_stats(w.profile_path)
    print(result.model_dump_json(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
