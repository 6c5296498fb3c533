"""Syncing a manifest's jobs into the state table: new, edited and edited-back jobs.

A job is known by its id; what it asks for, by its fingerprint (defined here, with the
document stored for each job). A known id whose fingerprint changed (the manifest was
edited) is archived under ``<id>~<old fingerprint>`` with the ``superseded`` flag, and the
id starts afresh; an id edited back to an archived version gets that row (and its work)
back. Archived rows stay listed in the ledger.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from pipeline.jobs import Job, JobParams
from pipeline.store._records import JobRecord, select_rows


def job_document(job: Job, model: str) -> dict[str, Any]:
    """The job as stored (what the ledger shows of it)."""
    return {
        "provider": job.provider,
        "model": model,
        "prompt_id": job.prompt_id,
        "prompt": job.prompt,
        "params": job.params.as_dict(),
        "variant": dict(job.variant),
    }


def stored_document(doc: dict[str, Any]) -> str:
    """The text stored for ``doc``: exactly the ledger's view of it, keys in ledger order.

    The ledger splices this text into each job's entry, so it must hold what
    ``ledger.job_entry`` would show: ``provider`` and the other keys, missing ones null
    (``params`` and ``variant``: empty objects).
    """
    shown = {
        "provider": doc["provider"],
        "model": doc.get("model"),
        "prompt_id": doc.get("prompt_id"),
        "prompt": doc.get("prompt"),
        "params": doc.get("params", {}),
        "variant": doc.get("variant", {}),
    }
    return json.dumps(shown)


def fingerprint(doc: dict[str, Any]) -> str:
    """Identity of what a job asks for; a changed fingerprint means a changed job."""
    keyed = {k: doc[k] for k in ("provider", "prompt", "params")}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def job_fingerprint(job: Job) -> str:
    """``fingerprint(job_document(job, ...))`` without building the document."""
    return job_fingerprints([job])[0]


def job_fingerprints(jobs: Sequence[Job]) -> list[str]:
    """``job_fingerprint`` of each job.

    A resume fingerprints every job of the manifest; this spells out the same canonical
    JSON (sorted keys, ASCII, default separators) about five times faster, and spells
    each ``params`` object once (the jobs of a manifest share them).
    """
    heads: dict[int, str] = {}  # id(params) -> its text; the jobs keep them alive
    out: list[str] = []
    for job in jobs:
        p = job.params
        head = heads.get(id(p))
        if head is None:
            head = heads[id(p)] = _params_text(p)
        text = (
            f'{head}"prompt": {encode_basestring_ascii(job.prompt)}, '
            f'"provider": {encode_basestring_ascii(job.provider)}}}'
        )
        out.append(hashlib.sha256(text.encode()).hexdigest()[:16])
    return out


def _params_text(p: JobParams) -> str:
    """How ``fingerprint`` spells a job's document up to its ``prompt``."""
    urls = (
        '"image_urls": [' + ", ".join(map(encode_basestring_ascii, p.image_urls)) + "], "
        if p.image_urls
        else ""
    )
    n = str(p.n) if type(p.n) is int else json.dumps(p.n)
    return (
        f'{{"params": {{"aspect_ratio": {encode_basestring_ascii(p.aspect_ratio)}, {urls}'
        f'"n": {n}, "output_format": {encode_basestring_ascii(p.output_format)}, '
        f'"resolution": {encode_basestring_ascii(p.resolution)}}}, '
    )


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
