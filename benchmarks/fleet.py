"""Figure 7: a fleet of ``pipeline run`` processes on one PostgreSQL state.

1, 2 and 4 processes (``python -m pipeline run M --state URL --out DIR --quiet``, started
together, each configured at the server's limit: the fleet shares it) work one batch
against an emulator that enforces ``max_rps`` and counts requests, 429s and the tasks it
created. The rate is measured as figure 3 measures it (``benchmarks.rate``): the driver
samples the emulator's request counter every ``SAMPLE_S``, and the achieved rate is the
requests between the first sample that saw one and the first that saw the last, over the
time between them, so the processes' start and their tail are not counted.

The PostgreSQL is real (the ``pgserver`` wheel, on a unix socket in a temporary folder),
with a fresh database per fleet size. Round trips are counted by PostgreSQL itself: the
growth of ``xact_commit + xact_rollback`` in ``pg_stat_database`` for that database over
the run (read from another database, once every backend of the fleet has exited and so
flushed its counters), per job. Each transaction is at least one round trip.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.emulator_proc import EmulatorProcess, EmulatorSetup
from benchmarks.procs import ChildResult, python_module, run_child
from benchmarks.rate import TARGET, achieved_rate
from benchmarks.results import Figure, at_least, at_most, info

RPS = 20.0  # as figure 3
SIZES = (1, 2, 4)
SAMPLE_S = 0.01
REQUESTS_PER_JOB = 2  # submit + one poll: the zero-latency emulator completes at once
MAX_CONCURRENT = 32  # fleet-wide; far more than 20 req/s of instant tasks can use
PROVIDER = "wavespeed"
BENCH_KEY = "bench-key"  # not a secret: the emulator accepts any bearer
STATS = "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated FROM pg_stat_database "
STATS += "WHERE datname = %s"
BACKENDS = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"


def write_manifest(folder: Path, jobs: int) -> Path:
    """A YAML manifest of ``jobs`` single-image jobs on one provider, at ``RPS``."""
    lines = [
        "name: fleet",
        f"defaults: {{provider: {PROVIDER}}}",
        "providers:",
        f"  {PROVIDER}: {{requests_per_second: {RPS:g}, max_concurrent: {MAX_CONCURRENT}, "
        "images_per_minute: 100000}",  # the emulator: no tier (else Bronze is assumed)
        "prompts:",
    ]
    for i in range(jobs):
        prompt = json.dumps(f"fleet image {i}: a harbour at dawn, watercolour")
        lines.append(f"  - {{id: f{i:05d}, prompt: {prompt}}}")
    path = folder / "fleet.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def postgres(folder: Path) -> Iterator[Any]:
    """A PostgreSQL server (``pgserver``) with its data in ``folder``; stopped and deleted
    at the end."""
    runtime = folder / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    runtime.chmod(stat.S_IRWXU)
    before = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)  # pgserver's platformdirs asks for one
    try:
        from pgserver.postgres_server import get_server

        # "delete" (pgserver's advice for a temporary server) also drops its exit hook,
        # which would otherwise take its lock again at exit, re-creating ``runtime``.
        server = get_server(folder / "pgdata", cleanup_mode="delete")
        try:
            yield server
        finally:
            server.cleanup()
    finally:
        if before is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = before


def db_counters(admin_uri: str, db: str) -> tuple[int, int]:
    """(transactions, rows inserted + updated) so far in database ``db``, read through
    ``admin_uri`` (another database, so reading does not add to them)."""
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        row = conn.execute(STATS, (db,)).fetchone()
    if row is None:
        raise RuntimeError(f"no pg_stat_database row for {db}")
    commits, rollbacks, inserted, updated = (int(v) for v in row)
    return commits + rollbacks, inserted + updated


def wait_backends_gone(admin_uri: str, db: str, timeout_s: float = 30.0) -> None:
    """Wait until no session is connected to ``db`` (a backend flushes its statistics as
    it exits). Raises ``TimeoutError`` if sessions remain."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with psycopg.connect(admin_uri, autocommit=True) as conn:
            row = conn.execute(BACKENDS, (db,)).fetchone()
        if row is not None and int(row[0]) == 0:
            return
        time.sleep(0.1)
    raise TimeoutError(f"sessions still connected to {db}")


def _sample(emu: EmulatorProcess, stop: threading.Event, out: list[tuple[float, int]]) -> None:
    while not stop.is_set():
        out.append((time.perf_counter(), emu.stats().for_provider(PROVIDER).requests))
        time.sleep(SAMPLE_S)


def run_fleet(
    size: int, manifest: Path, state_url: str, out: Path
) -> tuple[list[ChildResult], list[tuple[float, int]], dict[str, int]]:
    """``size`` processes started together on one batch, against a fresh emulator: their
    results, the emulator's sampled request counter and its final counters."""
    argv = python_module(
        "pipeline", "run", str(manifest), "--state", state_url, "--out", str(out), "--quiet"
    )
    samples: list[tuple[float, int]] = []
    with EmulatorProcess(EmulatorSetup(max_rps=RPS)) as emu:
        env = {
            f"{PROVIDER.upper()}_BASE_URL": emu.base_url,
            f"{PROVIDER.upper()}_API_KEY": BENCH_KEY,
        }
        results: list[ChildResult | None] = [None] * size

        def one(k: int) -> None:
            results[k] = run_child(argv, env=env, timeout_s=300.0)

        stop = threading.Event()
        sampler = threading.Thread(target=_sample, args=(emu, stop, samples))
        workers = [threading.Thread(target=one, args=(k,)) for k in range(size)]
        sampler.start()
        try:
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        finally:
            stop.set()
            sampler.join()
        s = emu.stats().for_provider(PROVIDER)
    done = [r for r in results if r is not None]
    if len(done) != size:
        raise RuntimeError("a worker did not report")
    counts = {
        "requests": s.requests,
        "submits": s.submits,
        "polls": s.polls,
        "downloads": s.downloads,
        "rate_limited": s.rate_limited,
        "duplicate_submits": s.duplicate_submits,
    }
    return done, samples, counts


def measure_size(
    server: Any, size: int, manifest: Path, jobs: int, out: Path, log: Callable[[str], None]
) -> list[Figure]:
    """Figure 7 for a fleet of ``size`` processes, on a fresh database."""
    db = f"fleet_{size}"
    admin = server.get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}".encode())
    xacts0, tuples0 = db_counters(admin, db)
    children, samples, counts = run_fleet(size, manifest, server.get_uri(db), out)
    codes = [c.exit_code for c in children]
    if any(codes):
        worst = next(c for c in children if c.exit_code != 0)
        raise RuntimeError(f"fleet of {size}: exit codes {codes}\n{worst.stderr[-3000:]}")
    wait_backends_gone(admin, db)
    xacts1, tuples1 = db_counters(admin, db)
    ledger = json.loads((out / "ledger.json").read_text())
    completed = int(ledger["totals"]["completed"])
    rate, counted, span = achieved_rate(samples)
    xacts, tuples = xacts1 - xacts0, tuples1 - tuples0
    once = counts["submits"] == jobs and completed == jobs and counts["duplicate_submits"] == 0
    log(
        f"  {size} process(es), {jobs} jobs: exit codes {codes}; {counts['requests']} API "
        f"requests, {counted} in {span:.2f} s = {rate:.2f}/s of {RPS:g}/s allowed; "
        f"{counts['rate_limited']} answered 429; {counts['submits']} tasks created, "
        f"{completed} completed in the ledger; {xacts} transactions ({xacts / jobs:.2f}/job), "
        f"{tuples} rows inserted+updated ({tuples / jobs:.2f}/job); walls "
        + ", ".join(f"{c.wall_s:.1f}" for c in children)
        + " s, CPU "
        + ", ".join(f"{c.cpu_s:.1f}" for c in children)
        + " s"
    )
    details = {
        "processes": size,
        "jobs": jobs,
        "completed": completed,
        "exit_codes": codes,
        "emulator": counts,
        "counted_requests": counted,
        "span_s": span,
        "achieved_rps": rate,
        "allowed_rps": RPS,
        "transactions": xacts,
        "tuples_inserted_updated": tuples,
        "worker_wall_s": [c.wall_s for c in children],
        "worker_cpu_s": [c.cpu_s for c in children],
    }
    n = f"7. {size} process{'es' if size > 1 else ''}"
    return [
        at_least(
            f"fleet_{size}_rate",
            f"{n}: achieved / allowed at {RPS:g} req/s",
            rate / RPS,
            "",
            TARGET,
            details=details,
        ),
        at_most(f"fleet_{size}_429s", f"{n}: 429 answers", counts["rate_limited"], "", 0),
        Figure(
            f"fleet_{size}_once",
            f"{n}: tasks created / jobs (all completed)",
            counts["submits"] / jobs,
            "",
            "= 1",
            once,
        ),
        info(
            f"fleet_{size}_xacts",
            f"{n}: DB transactions / job",
            xacts / jobs,
            "",
            details={"tuples_per_job": tuples / jobs},
        ),
        info(f"fleet_{size}_tuples", f"{n}: rows inserted+updated / job", tuples / jobs, ""),
    ]


def measure(seconds: float, log: Callable[[str], None]) -> list[Figure]:
    """Figure 7 for every size in ``SIZES``: enough jobs for ``seconds`` of requests."""
    jobs = round(seconds * RPS / REQUESTS_PER_JOB)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        folder = Path(tmp)
        manifest = write_manifest(folder, jobs)
        with postgres(folder) as server:
            for size in SIZES:
                out = folder / f"out-{size}"
                figures += measure_size(server, size, manifest, jobs, out, log)
    return figures
