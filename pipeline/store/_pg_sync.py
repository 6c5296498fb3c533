"""The manifest sync on PostgreSQL: ``plan_sync`` carried out inside a transaction.

A new batch's rows go through ``COPY`` (past ``COPY_AT`` of them), spelled as they are
sent; edited jobs are archived and restored, and jobs that left the manifest flagged,
with the same statements as a run's own flag writes (``ADD_FLAG``, ``DROP_FLAG``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipeline.jobs import Flag, Job
from pipeline.store._edits import (
    DIGEST_KEY,
    job_fingerprints,
    jobs_digest,
    plan_sync,
    stored_documents,
)
from pipeline.store._pg_conn import IDENTITY, Conn

ADD_FLAG = (
    "UPDATE pipeline_jobs SET flags = (flags::jsonb || jsonb_build_array(%(flag)s::text))::text "
    "WHERE batch_id = %(b)s AND id = %(id)s AND NOT (flags::jsonb ? %(flag)s)"
)
DROP_FLAG = (
    "UPDATE pipeline_jobs SET flags = (flags::jsonb - %(flag)s)::text "
    "WHERE batch_id = %(b)s AND id = %(id)s"
)
COPY_AT = 500  # inserts past this many go through COPY
_DIGEST = "SELECT 1 FROM pipeline_meta WHERE batch_id = %s AND key = %s AND value = %s"
_SET_META = (
    "INSERT INTO pipeline_meta (batch_id, key, value) VALUES (%s, %s, %s) "
    "ON CONFLICT (batch_id, key) DO UPDATE SET value = EXCLUDED.value"
)


async def apply_sync(
    conn: Conn, batch_id: int, jobs: Sequence[Job], models: Mapping[str, str]
) -> bool:
    """Carry out ``plan_sync`` inside the caller's transaction; whether anything changed.
    Jobs whose digest the last sync stored are in line already (``jobs_digest``)."""
    digest = jobs_digest(jobs)
    cur = await conn.execute(_DIGEST, (batch_id, DIGEST_KEY, digest))
    if await cur.fetchone() is not None:
        return False
    await conn.execute(_SET_META, (batch_id, DIGEST_KEY, digest))
    cur = await conn.execute(IDENTITY, (batch_id,))
    identities = await cur.fetchall()
    existing = [(str(i), str(fp), bool(sup)) for i, fp, sup, _ in identities]
    next_seq = max((int(seq) for *_, seq in identities), default=-1) + 1
    del identities
    fingerprints = job_fingerprints(jobs)
    wanted = [(j.id, j.provider, fp) for j, fp in zip(jobs, fingerprints, strict=True)]
    plan = plan_sync(existing, wanted, next_seq)
    if not plan:
        return False
    b = batch_id
    for job_id, archived in plan.archive:
        await conn.execute(
            "UPDATE pipeline_jobs SET id = %s WHERE batch_id = %s AND id = %s",
            (archived, b, job_id),
        )
        await conn.execute(ADD_FLAG.encode(), {"b": b, "id": archived, "flag": Flag.SUPERSEDED})
    for archived, job_id in plan.restore:
        await conn.execute(
            "UPDATE pipeline_jobs SET id = %s WHERE batch_id = %s AND id = %s",
            (job_id, b, archived),
        )
        await conn.execute(DROP_FLAG.encode(), {"b": b, "id": job_id, "flag": Flag.SUPERSEDED})
    documents = stored_documents(jobs, (k for k, *_ in plan.insert), models)
    rows = (
        (b, job_id, seq, provider, fp, doc)
        for (_, job_id, seq, provider, fp), doc in zip(plan.insert, documents, strict=True)
    )
    if len(plan.insert) > COPY_AT:
        async with conn.cursor().copy(
            "COPY pipeline_jobs (batch_id, id, seq, provider, fingerprint, job) FROM STDIN"
        ) as copy:
            for row in rows:
                await copy.write_row(row)
    elif plan.insert:
        await conn.cursor().executemany(
            "INSERT INTO pipeline_jobs (batch_id, id, seq, provider, fingerprint, job) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            rows,
        )
    flag = Flag.SUPERSEDED
    for job_id in plan.retire:
        await conn.execute(ADD_FLAG.encode(), {"b": b, "id": job_id, "flag": flag})
    for job_id in plan.unretire:
        await conn.execute(DROP_FLAG.encode(), {"b": b, "id": job_id, "flag": flag})
    return True
