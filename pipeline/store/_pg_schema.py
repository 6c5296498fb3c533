"""The PostgreSQL schema of the run state, and its migrations.

One database holds any number of batches (a batch is its manifest name and its output
location); every table is keyed by the batch's id. JSON columns are stored as text, the
text a ``JobRow`` carries (the ledger splices it as it is).

Versions (the one row of ``pipeline_schema``):

1. batches, meta, jobs, counters;
2. the fleet: workers with heartbeats, each job's lease (``worker_id``), its budget
   reservation and task slot, per-provider shared limits (GCRA and tasks in flight) and
   the shared budget, kept equal to the jobs' costs and reservations by a trigger;
3. an index of the jobs holding a task slot (a few per provider): what a process looks
   through for the tasks a dead one left at the provider (``PgFleet.stale_slots``).

``migrate`` creates a new schema or upgrades an older one step by step, under an advisory
lock (workers that start together migrate once); a newer version than this code knows is
refused (``StateError``): an old worker never writes a layout it does not understand.
"""

from __future__ import annotations

import psycopg

from pipeline.errors import StateError

SCHEMA_VERSION = 3
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
    ADD COLUMN holds_slot BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN slot_key TEXT;
CREATE INDEX pipeline_jobs_open ON pipeline_jobs (batch_id, provider, seq)
    WHERE status NOT IN ('completed', 'failed');
CREATE TABLE pipeline_limits (
    provider TEXT NOT NULL,
    key_id TEXT NOT NULL,
    configured DOUBLE PRECISION NOT NULL,
    rate DOUBLE PRECISION NOT NULL,
    tat DOUBLE PRECISION NOT NULL DEFAULT 0,
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

-- A job's money: its cost plus the possible duplicate charges of lost submit replies.
CREATE FUNCTION pipeline_money(cost TEXT, dup TEXT, field TEXT) RETURNS DOUBLE PRECISION
    LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE((cost::json ->> field)::float8, 0) + COALESCE((dup::json ->> field)::float8, 0)
$$;

-- The budget row and the providers' tasks in flight follow every job row, in the same
-- transaction as the write that changes it: spent = what the jobs cost, reserved = what
-- they hold, in_flight = the jobs holding a task slot. A dead process's reservations and
-- slots stay with its jobs until whoever takes them over settles them.
CREATE FUNCTION pipeline_jobs_follow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    du DOUBLE PRECISION := pipeline_money(NEW.cost, NEW.duplicate_cost, 'usd');
    dc DOUBLE PRECISION := pipeline_money(NEW.cost, NEW.duplicate_cost, 'credits');
    ru DOUBLE PRECISION := NEW.reserved_usd;
    rc DOUBLE PRECISION := NEW.reserved_credits;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        du := du - pipeline_money(OLD.cost, OLD.duplicate_cost, 'usd');
        dc := dc - pipeline_money(OLD.cost, OLD.duplicate_cost, 'credits');
        ru := ru - OLD.reserved_usd;
        rc := rc - OLD.reserved_credits;
        IF OLD.holds_slot AND NOT NEW.holds_slot THEN
            UPDATE pipeline_limits SET in_flight = in_flight - 1
                WHERE provider = OLD.provider AND key_id = OLD.slot_key;
        ELSIF NEW.holds_slot AND NOT OLD.holds_slot THEN
            UPDATE pipeline_limits SET in_flight = in_flight + 1
                WHERE provider = NEW.provider AND key_id = NEW.slot_key;
        END IF;
    END IF;
    IF du <> 0 OR dc <> 0 OR ru <> 0 OR rc <> 0 THEN
        UPDATE pipeline_budget SET spent_usd = spent_usd + du, spent_credits = spent_credits + dc,
            reserved_usd = reserved_usd + ru, reserved_credits = reserved_credits + rc
            WHERE batch_id = NEW.batch_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER pipeline_jobs_follow_update
    AFTER UPDATE OF cost, duplicate_cost, reserved_usd, reserved_credits, holds_slot
    ON pipeline_jobs FOR EACH ROW EXECUTE FUNCTION pipeline_jobs_follow();

-- A budget reservation for one job, checked and taken under the budget row's lock, so
-- that any number of processes can never reserve past a cap together. ``base_*`` is the
-- job's estimate; the batch's learned price scale of the provider multiplies it. With
-- ``probe``, a provider whose price is not learned yet gets one reservation at a time.
CREATE FUNCTION pipeline_reserve(
    p_batch BIGINT, p_job TEXT, p_provider TEXT, p_usd DOUBLE PRECISION,
    p_credits DOUBLE PRECISION, p_cap_usd DOUBLE PRECISION, p_cap_credits DOUBLE PRECISION,
    p_probe BOOLEAN
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    bud pipeline_budget%ROWTYPE;
    held_usd DOUBLE PRECISION;
    held_credits DOUBLE PRECISION;
    scale DOUBLE PRECISION;
BEGIN
    SELECT * INTO bud FROM pipeline_budget WHERE batch_id = p_batch FOR UPDATE;
    SELECT reserved_usd, reserved_credits INTO held_usd, held_credits
        FROM pipeline_jobs WHERE batch_id = p_batch AND id = p_job FOR UPDATE;
    IF held_usd IS NULL THEN
        RETURN 'gone';
    END IF;
    scale := COALESCE((bud.scales::json ->> p_provider)::float8, 1.0);
    IF p_probe AND NOT (bud.scales::jsonb ? p_provider) AND EXISTS (
        SELECT 1 FROM pipeline_jobs WHERE batch_id = p_batch AND provider = p_provider
            AND id <> p_job AND (reserved_usd > 0 OR reserved_credits > 0)
    ) THEN
        RETURN 'wait';
    END IF;
    IF p_cap_usd IS NOT NULL AND bud.spent_usd + bud.reserved_usd - held_usd
            + p_usd * scale > p_cap_usd + 1e-9 THEN
        RETURN 'budget';
    END IF;
    IF p_cap_credits IS NOT NULL AND bud.spent_credits + bud.reserved_credits - held_credits
            + p_credits * scale > p_cap_credits + 1e-9 THEN
        RETURN 'budget';
    END IF;
    UPDATE pipeline_jobs SET reserved_usd = p_usd * scale, reserved_credits = p_credits * scale
        WHERE batch_id = p_batch AND id = p_job;
    RETURN 'ok';
END $$;

-- A task slot for one job, taken under its provider's limits row lock.
CREATE FUNCTION pipeline_take_slot(
    p_batch BIGINT, p_job TEXT, p_provider TEXT, p_key TEXT, p_limit INTEGER
) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    held BOOLEAN;
    n INTEGER;
BEGIN
    SELECT holds_slot INTO held FROM pipeline_jobs
        WHERE batch_id = p_batch AND id = p_job FOR UPDATE;
    IF held IS NULL OR held THEN
        RETURN held IS NOT NULL;
    END IF;
    SELECT in_flight INTO n FROM pipeline_limits
        WHERE provider = p_provider AND key_id = p_key FOR UPDATE;
    IF n >= p_limit THEN
        RETURN false;
    END IF;
    UPDATE pipeline_jobs SET holds_slot = true, slot_key = p_key
        WHERE batch_id = p_batch AND id = p_job;
    RETURN true;
END $$;

-- Batches from schema 1 start with what their jobs have cost so far.
INSERT INTO pipeline_budget (batch_id, spent_usd, spent_credits)
    SELECT batch_id, sum(pipeline_money(cost, duplicate_cost, 'usd')),
           sum(pipeline_money(cost, duplicate_cost, 'credits'))
    FROM pipeline_jobs GROUP BY batch_id
    ON CONFLICT (batch_id) DO NOTHING;
""",
    3: """
CREATE INDEX pipeline_jobs_holding ON pipeline_jobs (batch_id, provider) WHERE holds_slot;
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
