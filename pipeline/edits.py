"""Syncing a manifest's jobs into the state table: new, edited and edited-back jobs.

A job is known by its id; what it asks for, by its fingerprint. A known id whose
fingerprint changed (the manifest was edited) is archived under ``<id>~<old fingerprint>``
with the ``superseded`` flag, and the id starts afresh; an id edited back to an archived
version gets that row (and its work) back. Archived rows stay listed in the ledger.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.records import JobRecord, select_rows

_INSERT = "INSERT INTO jobs(id, seq, provider, fingerprint, job) VALUES (?,?,?,?,?)"
_ARCHIVE = "UPDATE jobs SET id = ?, flags = json_insert(flags, '$[#]', 'superseded') WHERE id = ?"
_RESTORE = (
    "UPDATE jobs SET id = ?, flags = (SELECT json_group_array(value) "
    "FROM json_each(flags) WHERE value != 'superseded') WHERE id = ?"
)


def sync_rows(
    conn: sqlite3.Connection, wanted: Sequence[tuple[str, str, str]], document: Callable[[int], str]
) -> tuple[dict[str, JobRecord], bool]:
    """Bring the table in line with ``wanted``, (id, provider, fingerprint) per job, in
    one transaction; ``document(k)`` is the stored text of the k-th job (only new jobs
    need one). Returns every record keyed by id in ``seq`` order, and whether anything
    changed. Runs in the store's worker thread."""
    rows = select_rows(conn)
    existing = {r[0]: r[3] for r in rows}  # id -> fingerprint, archived ids included
    next_seq = rows[-1][1] + 1 if rows else 0
    steps: list[tuple[str, list[tuple[Any, ...]]]] = []

    def step(sql: str, args: tuple[Any, ...]) -> None:
        if steps and steps[-1][0] == sql == _INSERT:
            steps[-1][1].append(args)  # consecutive inserts go in one executemany
        else:
            steps.append((sql, [args]))

    for k, (job_id, provider, fp) in enumerate(wanted):
        old_fp = existing.get(job_id)
        if old_fp == fp:
            continue
        if old_fp is not None:
            step(_ARCHIVE, (f"{job_id}~{old_fp[:8]}", job_id))
        archived = f"{job_id}~{fp[:8]}"
        if archived in existing:
            # Edited back to an earlier version: its work is still good.
            step(_RESTORE, (job_id, archived))
            continue
        step(_INSERT, (job_id, next_seq + k, provider, fp, document(k)))
    if not steps:
        return {r[0]: JobRecord(r) for r in rows}, False
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, args in steps:
            conn.executemany(sql, args)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {r[0]: JobRecord(r) for r in select_rows(conn)}, True
