"""The PostgreSQL schema of the run state, and its migrations.

One database holds any number of batches (a batch is its manifest name and its output
location); every table is keyed by the batch's id. JSON columns are stored as text, the
text a ``JobRow`` carries (the ledger splices it as it is).

Versions (the one row of ``pipeline_schema``):

1. batches, meta, jobs, counters;
2. the fleet: workers with heartbeats, each job's lease (``worker_id``), its budget
   reservation and task slot, per-provider shared limits (GCRA and tasks in flight) and
   the shared budget.

``migrate`` creates a new schema or upgrades an older one step by step, under an advisory
lock (workers that start together migrate once); a newer version than this code knows is
refused (``StateError``): an old worker never writes a layout it does not understand.
"""

from __future__ import annotations

import psycopg

from pipeline.errors import StateError

SCHEMA_VERSION = 2
_MIGRATION_LOCK = 0x706970656C696E65  # "pipeline": one advisory lock for all migrations

STEPS: dict[int, str] = {
    1: """
CREATE TABLE pipeline_batches (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    output TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (output, name)
);
CREATE TABLE pipeline_meta (
    batch_id BIGINT NOT NULL REFERENCES pipeline_batches(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (batch_id, key)
);
CREATE TABLE pipeline_jobs (
    batch_id BIGINT NOT NULL REFERENCES pipeline_batches(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    provider TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    job TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    remote_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    submitted_at TEXT,
    completed_at TEXT,
    latency_s DOUBLE PRECISION,
    images TEXT NOT NULL DEFAULT '[]',
    cost TEXT,
    usage TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    flags TEXT NOT NULL DEFAULT '[]',
    duplicate_cost TEXT,
    image_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, id)
);
CREATE INDEX pipeline_jobs_seq ON pipeline_jobs (batch_id, seq);
CREATE TABLE pipeline_counters (
    batch_id BIGINT NOT NULL REFERENCES pipeline_batches(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    rate_limited BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, provider)
);
""",
    2: """
CREATE TABLE pipeline_workers (
    id BIGSERIAL PRIMARY KEY,
    batch_id BIGINT NOT NULL REFERENCES pipeline_batches(id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    lease_s DOUBLE PRECISION NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat TIMESTAMPTZ NOT NULL DEFAULT now(),
    stopped BOOLEAN NOT NULL DEFAULT false
);
ALTER TABLE pipeline_jobs
    ADD COLUMN worker_id BIGINT,
    ADD COLUMN reserved_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    ADD COLUMN reserved_credits DOUBLE PRECISION NOT NULL DEFAULT 0,
    ADD COLUMN holds_slot BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX pipeline_jobs_open ON pipeline_jobs (batch_id, provider, seq)
    WHERE status NOT IN ('completed', 'failed');
CREATE TABLE pipeline_limits (
    provider TEXT NOT NULL,
    key_id TEXT NOT NULL,
    tat DOUBLE PRECISION NOT NULL DEFAULT 0,
    rate DOUBLE PRECISION NOT NULL,
    paused_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    in_flight INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, key_id)
);
CREATE TABLE pipeline_budget (
    batch_id BIGINT PRIMARY KEY REFERENCES pipeline_batches(id) ON DELETE CASCADE,
    spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    spent_credits DOUBLE PRECISION NOT NULL DEFAULT 0,
    reserved_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    reserved_credits DOUBLE PRECISION NOT NULL DEFAULT 0,
    scales TEXT NOT NULL DEFAULT '{}'
);
""",
}


async def schema_version(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
    """The database's schema version (0: no pipeline schema yet)."""
    cur = await conn.execute("SELECT to_regclass('pipeline_schema') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute("SELECT version FROM pipeline_schema")
    row = await cur.fetchone()
    return int(str(row[0])) if row is not None else 0


async def migrate(
    conn: psycopg.AsyncConnection[tuple[object, ...]], location: str, *, upto: int = 0
) -> int:
    """Create or upgrade the schema (to ``upto``, default the newest) in one transaction;
    returns the version it is at. Raises ``StateError`` for a newer schema."""
    target = upto or SCHEMA_VERSION
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        version = await schema_version(conn)
        if version > SCHEMA_VERSION:
            raise StateError(
                f"the state was written by a newer pipeline (schema {version}; this one "
                f"knows up to {SCHEMA_VERSION}): upgrade pipeline to use it",
                location=location,
            )
        if version == 0:
            await conn.execute("CREATE TABLE pipeline_schema (version INTEGER NOT NULL)")
            await conn.execute("INSERT INTO pipeline_schema VALUES (0)")
        for step in range(version + 1, target + 1):
            await conn.execute(STEPS[step].encode())
            await conn.execute("UPDATE pipeline_schema SET version = %s", (step,))
        return max(version, target)
