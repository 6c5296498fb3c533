"""The sqlite state file's layout: its schema and versions, and the reads and the manifest
sync that run inside one of its transactions (``pipeline.store._sqlite`` holds the store).

Schema versions (``PRAGMA user_version``): 1 is the layout below. A file without a
version but with these tables (written before versions existed) is stamped 1; a newer
version than this code knows is refused (``StateError``), never guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline import _gc
from pipeline.errors import StateError
from pipeline.jobs import Flag, Job, JobStatus
from pipeline.store._base import Counters, Snapshot, Summary
from pipeline.store._edits import (
    DIGEST_KEY,
    job_fingerprints,
    jobs_digest,
    plan_sync,
    stored_documents,
)
from pipeline.store._records import JobRecord, TallyRow, sort_rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    provider TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    job TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    remote_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    submitted_at TEXT,
    completed_at TEXT,
    latency_s REAL,
    images TEXT NOT NULL DEFAULT '[]',
    cost TEXT,
    usage TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    flags TEXT NOT NULL DEFAULT '[]',
    duplicate_cost TEXT
);
CREATE TABLE IF NOT EXISTS counters (
    provider TEXT PRIMARY KEY,
    requests INTEGER NOT NULL DEFAULT 0,
    rate_limited INTEGER NOT NULL DEFAULT 0
);
"""

SCHEMA_VERSION = 1
# Steps from each version to the next (none yet: version 1 is the first).
MIGRATIONS: dict[int, str] = {}

# The columns of a JobRow, in its order.
COLUMNS = (
    "id, seq, provider, fingerprint, status, remote_id, attempts, submitted_at, completed_at, "
    "latency_s, job, images, cost, usage, error, flags, duplicate_cost, "
    "json_array_length(images)"
)
_SUPERSEDED = f"EXISTS (SELECT 1 FROM json_each(flags) WHERE value = '{Flag.SUPERSEDED}')"
ADD_FLAG = (
    "UPDATE jobs SET flags = json_insert(flags, '$[#]', ?) "
    "WHERE id = ? AND NOT EXISTS (SELECT 1 FROM json_each(flags) WHERE value = ?)"
)
DROP_FLAG = (
    "UPDATE jobs SET flags = (SELECT json_group_array(value) FROM json_each(flags) "
    "WHERE value != ?) WHERE id = ?"
)


def select_rows(
    conn: sqlite3.Connection,
    where: str = "",
    columns: str = COLUMNS,
    params: Sequence[object] = (),
) -> list[JobRecord]:
    with _gc.paused():
        cursor = conn.execute(f"SELECT {columns} FROM jobs {where}", params)
        return list(map(JobRecord, sort_rows(cursor.fetchall())))


_IS_SUPERSEDED = f"instr(flags, '\"{Flag.SUPERSEDED}\"') > 0"
# The rows a run needs (``sync_batch(all_rows=False)``): all but the plain pending ones.
_NEEDED = (
    f"WHERE NOT (status = '{JobStatus.PENDING}' AND cost IS NULL AND duplicate_cost IS NULL "
    f"AND images = '[]' AND NOT {_IS_SUPERSEDED}) AND status != '{JobStatus.COMPLETED}'"
)
# One image (most jobs): its path and size read out in SQL, the list left behind.
DONE = (
    "SELECT id, provider, superseded, remote_id, CASE n WHEN 1 THEN '' ELSE images END, "
    "cost, duplicate_cost, n, CASE n WHEN 1 THEN CAST(images ->> '$[0].path' AS TEXT) END, "
    "CASE WHEN n = 1 AND json_type(images, '$[0].bytes') = 'integer' "
    "THEN images ->> '$[0].bytes' ELSE -1 END "
    f"FROM (SELECT *, {_IS_SUPERSEDED} AS superseded, json_array_length(images) AS n "
    f"FROM jobs WHERE status = '{JobStatus.COMPLETED}')"
)
# What a run reads of them: not what only the ledger shows (it reads its own rows): the
# job document, usage, fingerprint, completion time, latency and attempts, most of a
# row's bytes, are constants here (a JobRow of the same layout).
RUN_COLUMNS = (
    "id, seq, provider, '', status, remote_id, 0, submitted_at, NULL, NULL, '', images, "
    "cost, '{}', error, flags, duplicate_cost, json_array_length(images)"
)
_DIGEST = "SELECT 1 FROM meta WHERE key = ? AND value = ?"
_SET_META = (
    "INSERT INTO meta(key, value) VALUES (?, ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)
_IDENTITY = f"SELECT id, fingerprint, {_IS_SUPERSEDED}, seq FROM jobs"
_TALLY = (
    f"SELECT provider, status, {_IS_SUPERSEDED}, cost, duplicate_cost, count(*), "
    "total(json_array_length(images)) FROM jobs GROUP BY 1, 2, 3, 4, 5"
)
FAILED = (
    f"SELECT id, error FROM jobs WHERE status = '{JobStatus.FAILED}' AND error IS NOT NULL "
    f"AND NOT {_IS_SUPERSEDED} ORDER BY seq"
)


def tally(conn: sqlite3.Connection) -> list[TallyRow]:
    return [
        TallyRow(p, st, bool(sup), cost, dup, n, int(images))
        for p, st, sup, cost, dup, n, images in conn.execute(_TALLY)
    ]


def read_summary(path: Path) -> Summary:
    """Meta, tally, counters and failures, read from another process in one read
    transaction. Raises ``sqlite3.Error`` for a file that is not a state database."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("BEGIN")  # one snapshot for every read below
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        summary = Summary(meta, tally(conn), counters(conn), conn.execute(FAILED).fetchall())
        conn.execute("COMMIT")
        return summary
    finally:
        conn.close()


def counters(conn: sqlite3.Connection) -> Counters:
    rows = conn.execute("SELECT provider, requests, rate_limited FROM counters")
    return {p: (r, rl) for p, r, rl in rows}


def read_snapshot(path: Path) -> Snapshot:
    """Meta, records and counters, read from another process (WAL lets it run alongside a
    writer). Raises ``sqlite3.Error`` for a file that is not a state database."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return Snapshot(meta, select_rows(conn), counters(conn))
    finally:
        conn.close()


def sync(
    conn: sqlite3.Connection, jobs: Sequence[Job], models: Mapping[str, str], *, all_rows: bool
) -> tuple[list[JobRecord], bool]:
    """Carry out ``plan_sync`` for ``jobs`` in one transaction: the records after it
    (``all_rows``: every one, else those a run needs), and whether anything changed."""
    where, columns = ("", COLUMNS) if all_rows else (_NEEDED, RUN_COLUMNS)
    digest = jobs_digest(jobs)
    if conn.execute(_DIGEST, (DIGEST_KEY, digest)).fetchone() is not None:
        return select_rows(conn, where, columns), False  # the same jobs as last time
    with _gc.paused():
        identities = conn.execute(_IDENTITY).fetchall()
        existing = [(job_id, fp, bool(sup)) for job_id, fp, sup, _ in identities]
        next_seq = max((seq for *_, seq in identities), default=-1) + 1
        del identities
    fingerprints = job_fingerprints(jobs)
    wanted = [(j.id, j.provider, fp) for j, fp in zip(jobs, fingerprints, strict=True)]
    plan = plan_sync(existing, wanted, next_seq)
    del existing, wanted, fingerprints
    if not plan:  # nothing to change; noted, so the next sync of these jobs compares none
        conn.execute(_SET_META, (DIGEST_KEY, digest))
        return select_rows(conn, where, columns), False
    # Built as they are inserted: a million new rows are never all held at once.
    documents = stored_documents(jobs, (k for k, *_ in plan.insert), models)
    inserts = (
        (job_id, seq, provider, fp, doc)
        for (_, job_id, seq, provider, fp), doc in zip(plan.insert, documents, strict=True)
    )
    conn.execute("BEGIN IMMEDIATE")
    try:
        for job_id, archived in plan.archive:
            conn.execute("UPDATE jobs SET id = ? WHERE id = ?", (archived, job_id))
            conn.execute(ADD_FLAG, (Flag.SUPERSEDED, archived, Flag.SUPERSEDED))
        for archived, job_id in plan.restore:
            conn.execute("UPDATE jobs SET id = ? WHERE id = ?", (job_id, archived))
            conn.execute(DROP_FLAG, (Flag.SUPERSEDED, job_id))
        conn.executemany(
            "INSERT INTO jobs(id, seq, provider, fingerprint, job) VALUES (?,?,?,?,?)", inserts
        )
        conn.executemany(ADD_FLAG, [(Flag.SUPERSEDED, i, Flag.SUPERSEDED) for i in plan.retire])
        conn.executemany(DROP_FLAG, [(Flag.SUPERSEDED, i) for i in plan.unretire])
        conn.execute(_SET_META, (DIGEST_KEY, digest))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return select_rows(conn, where, columns), True


def insert_new(
    conn: sqlite3.Connection, jobs: Sequence[Job], models: Mapping[str, str], start: int, stop: int
) -> bool:
    """``RunStore.insert_new``: True once ``jobs[start:stop]`` are stored."""
    stop = min(stop, len(jobs))
    # Rows are only ever appended here, so the last rowid is the last job stored.
    last = conn.execute(
        "SELECT id, seq, rowid FROM jobs WHERE rowid = (SELECT max(rowid) FROM jobs)"
    ).fetchone()
    if start == 0 and last is not None:
        return False
    if start > 0 and (last is None or tuple(last) != (jobs[start - 1].id, start - 1, start)):
        return False
    part = jobs[start:stop]
    rows = zip(
        (job.id for job in part),
        range(start, stop),
        (job.provider for job in part),
        job_fingerprints(part),
        stored_documents(jobs, range(start, stop), models),
        strict=True,
    )
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT INTO jobs(id, seq, provider, fingerprint, job) VALUES (?,?,?,?,?)", rows
        )
        if stop == len(jobs):
            conn.execute(_SET_META, (DIGEST_KEY, jobs_digest(jobs)))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Create or upgrade the schema to ``SCHEMA_VERSION``; refuse a newer one."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StateError(
            f"the state was written by a newer pipeline (schema {version}; this one knows "
            f"up to {SCHEMA_VERSION}): upgrade pipeline to use it",
            location=str(path),
        )
    if version == SCHEMA_VERSION:
        return
    conn.executescript(SCHEMA)  # version 0: new, or from before versions (same tables)
    for step in range(max(version, 1), SCHEMA_VERSION):
        conn.executescript(MIGRATIONS[step])
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
