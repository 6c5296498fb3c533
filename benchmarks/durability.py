"""Figure 8: what the durable intent costs on the local state (sqlite).

A job's intent is committed with ``synchronous=FULL`` (fsynced before its submit is
sent), the other writes with NORMAL (``pipeline/store/_commit.py``). The workload goes
through the real store API: ``sync_batch`` of the jobs, then ``WRITERS`` concurrent tasks,
each doing ``mark_intent``, ``mark_submitted`` and ``mark_completed`` for its share of
the jobs, one job after the other. It runs as shipped and with intents not durable (a
subclass whose ``_commit`` queues every write with ``durable=False``; only ``mark_intent``
asks for durability, so the statements and the rest of the code are the same),
alternating, ``ROUNDS`` times each, each round on a new state file; the best round of each
side counts, and only the writes are timed (not ``sync_batch``). Both sides count the
transactions (``store.commits``) and those that ran with ``synchronous=FULL`` (traced on
the connection): each of those fsyncs the WAL as it commits (with NORMAL, the WAL is
fsynced only at checkpoints).

The same comparison end to end: figure 1's zero-latency pipeline run (2,000 jobs, a fresh
emulator each run), each in its own process, once as shipped and once with the child's
``SqliteStore._commit`` swapped for the non-durable one
(``python -m benchmarks.durability WORKLOAD_JSON volatile``).
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import anyio

from benchmarks.emulator_proc import EmulatorProcess, EmulatorSetup
from benchmarks.procs import python_module, run_child
from benchmarks.results import Figure, info
from benchmarks.workload import Workload, WorkResult
from pipeline.jobs import Job, JobParams, JobStatus
from pipeline.store._lock import StateLock
from pipeline.store._sqlite import SqliteStore

Kind = Literal["durable", "volatile"]
WRITERS = 64
ROUNDS = 3  # durable, volatile, durable, ...: the best round of each side counts
MODELS = {"wavespeed": "kling-image-o3"}
AT = "2026-01-01T00:00:00Z"
IMAGE = {"path": "images/x-1.png", "sha256": "0" * 64, "bytes": 70, "width": 1, "height": 1}
COST = {"usd": 0.028, "credits": None, "basis": "price_table"}
Op = Callable[[sqlite3.Connection], object]
_shipped_commit = SqliteStore._commit


class TracedStore(SqliteStore):
    """The store as shipped, counting the transactions committed with
    ``synchronous=FULL`` (``_commit.py`` sets it for each batch holding an intent)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, lock: StateLock | None) -> None:
        super().__init__(conn, path, lock)
        self.full_commits = 0
        conn.set_trace_callback(self._trace)

    def _trace(self, sql: str) -> None:
        if sql == "PRAGMA synchronous=FULL":
            self.full_commits += 1


async def volatile_commit(store: SqliteStore, op: Op, *, durable: bool = False) -> None:
    """``SqliteStore._commit`` with every write queued as not durable (only
    ``mark_intent`` asks for ``durable``: the statements are the shipped ones)."""
    await _shipped_commit(store, op, durable=False)


class VolatileIntents(TracedStore):
    """Intents committed like every other write (``synchronous=NORMAL``)."""

    async def _commit(self, op: Op, *, durable: bool = False) -> None:
        await volatile_commit(self, op, durable=durable)


@dataclass(frozen=True, slots=True)
class StoreRun:
    """One round of the store workload."""

    kind: str
    jobs: int
    seconds: float  # the writes only
    writes: int
    commits: int
    full_commits: int


def build_jobs(n: int) -> list[Job]:
    return [
        Job(
            id=f"d{i:06d}",
            prompt_id=f"d{i:06d}",
            provider="wavespeed",
            prompt=f"durability {i}: a lighthouse at dusk",
            params=JobParams(),
        )
        for i in range(n)
    ]


async def _write_all(store: SqliteStore, jobs: Sequence[Job]) -> None:
    async def writer(share: Sequence[Job]) -> None:
        for job in share:
            await store.mark_intent(job.id)
            await store.mark_submitted(job.id, f"r-{job.id}", AT, {})
            await store.mark_completed(
                job.id, at=AT, latency_s=1.0, images=[IMAGE], cost=COST, usage={}
            )

    async with anyio.create_task_group() as tg:
        for k in range(WRITERS):
            tg.start_soon(writer, jobs[k::WRITERS])


async def store_run(kind: Kind, path: Path, jobs: Sequence[Job]) -> StoreRun:
    """One round on a new state at ``path``. Raises ``RuntimeError`` if a job did not end
    completed."""
    cls = TracedStore if kind == "durable" else VolatileIntents
    store = await cls.open(path)
    assert isinstance(store, TracedStore)
    try:
        await store.sync_batch(jobs, MODELS)
        writes, commits, full = store.writes, store.commits, store.full_commits
        t0 = time.perf_counter()
        await _write_all(store, jobs)
        seconds = time.perf_counter() - t0
        done = sum(r.row.status == JobStatus.COMPLETED for r in await store.records())
    finally:
        await store.close()
    if done != len(jobs):
        raise RuntimeError(f"{kind}: {done} of {len(jobs)} jobs completed")
    return StoreRun(
        kind,
        len(jobs),
        seconds,
        store.writes - writes,
        store.commits - commits,
        store.full_commits - full,
    )


def e2e_run(kind: Kind, jobs: int, out: Path) -> float:
    """Figure 1's pipeline run, its intents as ``kind``, on a fresh zero-latency
    emulator, into the new folder ``out``: its seconds. Raises ``RuntimeError`` if it
    failed."""
    with EmulatorProcess(EmulatorSetup()) as emu:
        w = Workload(mode="pipeline", base_url=emu.base_url, out_dir=str(out), jobs=jobs)
        argv = python_module("benchmarks.durability", w.model_dump_json(), kind)
        child = run_child(argv, timeout_s=300.0)
    if child.exit_code != 0:
        raise RuntimeError(f"{kind} run failed:\n{child.stderr[-3000:]}")
    result = WorkResult.model_validate_json(child.stdout.strip().splitlines()[-1])
    if result.completed != jobs:
        raise RuntimeError(f"{kind} run completed {result.completed} of {jobs} jobs")
    return result.seconds


def _alternate(rounds: int) -> Iterator[tuple[int, Kind]]:
    for r in range(1, rounds + 1):
        yield r, "durable"
        yield r, "volatile"


def measure(jobs: int, e2e_jobs: int, log: Callable[[str], None]) -> list[Figure]:
    """Figure 8: seconds per 1,000 jobs of store writes with durable and with volatile
    intents, their ratio and transactions; the same ratio for a whole pipeline run."""
    batch = build_jobs(jobs)
    runs: dict[str, list[StoreRun]] = {"durable": [], "volatile": []}
    e2e: dict[str, list[float]] = {"durable": [], "volatile": []}
    with tempfile.TemporaryDirectory(prefix="bench-durability-") as tmp:
        folder = Path(tmp)
        for r, kind in _alternate(ROUNDS):
            run = anyio.run(store_run, kind, folder / f"{kind}-{r}.db", batch, backend="asyncio")
            runs[kind].append(run)
            log(
                f"  round {r} {kind:8}: {run.seconds:6.2f} s for {jobs} jobs "
                f"({1000 * run.seconds / jobs:.3f} s per 1,000), {run.writes} writes in "
                f"{run.commits} transactions, {run.full_commits} with synchronous=FULL"
            )
        if e2e_jobs:
            for r, kind in _alternate(ROUNDS):
                seconds = e2e_run(kind, e2e_jobs, folder / f"e2e-{kind}-{r}")
                e2e[kind].append(seconds)
                log(f"  end to end, round {r} {kind:8}: {seconds:6.2f} s for {e2e_jobs} jobs")
    best = {k: min(rs, key=lambda x: x.seconds) for k, rs in runs.items()}
    per_k = {k: 1000 * b.seconds / jobs for k, b in best.items()}
    details = {
        "jobs": jobs,
        "writers": WRITERS,
        "runs": [asdict(x) for v in runs.values() for x in v],
    }
    figures = [
        info(
            "durable_intent_s_per_1000",
            f"8. store writes, durable intents (shipped), {jobs:,} jobs",
            per_k["durable"],
            "s / 1,000 jobs",
            details=details,
        ),
        info(
            "volatile_intent_s_per_1000",
            "8. same, intents not durable",
            per_k["volatile"],
            "s / 1,000 jobs",
        ),
        info(
            "durable_intent_ratio",
            "8. durable / not durable",
            per_k["durable"] / per_k["volatile"],
            "x",
        ),
        info(
            "durable_intent_commits",
            "8. transactions, durable intents",
            best["durable"].commits,
            "",
            details={
                "full_commits": best["durable"].full_commits,
                "writes": best["durable"].writes,
            },
        ),
        info(
            "durable_intent_full_commits",
            "8. of them fsynced (synchronous=FULL)",
            best["durable"].full_commits,
            "",
        ),
        info(
            "volatile_intent_commits",
            "8. transactions, intents not durable",
            best["volatile"].commits,
            "",
        ),
    ]
    if e2e_jobs:
        d, v = min(e2e["durable"]), min(e2e["volatile"])
        figures.append(
            info(
                "durable_intent_e2e_ratio",
                f"8. figure 1's run, {e2e_jobs:,} jobs: durable / not",
                d / v,
                "x",
                details={"durable_s": e2e["durable"], "volatile_s": e2e["volatile"]},
            )
        )
    return figures


def _child_main(raw: str, kind: str) -> None:
    from benchmarks.worker import run_pipeline

    if kind == "volatile":  # a benchmark fixture, in this child only (module docstring)
        SqliteStore._commit = volatile_commit  # type: ignore[method-assign, assignment]
    w = Workload.model_validate_json(raw)
    result: WorkResult = anyio.run(run_pipeline, w, backend="asyncio")
    print(result.model_dump_json(), flush=True)


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
