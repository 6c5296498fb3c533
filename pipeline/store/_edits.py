"""Syncing a manifest's jobs into the run state: new, edited, edited-back and removed jobs.

A job is known by its id; what it asks for, by its fingerprint (defined here, with the
document stored for each job). A known id whose fingerprint changed (the manifest was
edited) is archived under ``<id>~<old fingerprint>`` with the ``superseded`` flag, and the
id starts afresh; an id edited back to an archived version gets that row (and its work)
back. A job that left the manifest keeps its id and is flagged ``superseded``, and loses
the flag when it comes back. Superseded rows stay listed in the ledger (with their cost)
but are not part of the batch: every count of the batch leaves them out.

``plan_sync`` decides; each backend carries the plan out in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any

from pipeline.jobs import Job, JobParams


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


def stored_documents(
    jobs: Sequence[Job], indices: Iterable[int], models: Mapping[str, str]
) -> Iterator[str]:
    """``stored_document(job_document(jobs[k], models[provider]))`` for each ``k``, the
    same text spelled out directly, each ``params`` and ``variant`` object once (the jobs
    of a manifest share them): a million new jobs are stored in a fraction of the time.
    """
    params: dict[int, str] = {}  # id -> text; the jobs keep the objects alive
    variants: dict[int, str] = {}
    for k in indices:
        job = jobs[k]
        p, v = job.params, job.variant
        p_text = params.get(id(p))
        if p_text is None:
            p_text = params[id(p)] = json.dumps(p.as_dict())
        v_text = variants.get(id(v))
        if v_text is None:
            v_text = variants[id(v)] = json.dumps(dict(v))
        yield (
            f'{{"provider": {_ascii(job.provider)}, "model": {_ascii(models[job.provider])}, '
            f'"prompt_id": {_ascii(job.prompt_id)}, "prompt": {_ascii(job.prompt)}, '
            f'"params": {p_text}, "variant": {v_text}}}'
        )


def _ascii(text: str | None) -> str:
    return "null" if text is None else encode_basestring_ascii(text)


def fingerprint(doc: dict[str, Any]) -> str:
    """Identity of what a job asks for; a changed fingerprint means a changed job."""
    keyed = {k: doc[k] for k in ("provider", "prompt", "params")}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def job_fingerprints(jobs: Sequence[Job]) -> list[str]:
    """``fingerprint(job_document(job, ...))`` of each job, without building documents.

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


DIGEST_KEY = "jobs_digest"  # meta: the digest of the jobs the last sync brought in line
_DIGEST_CHUNK = 10_000


def jobs_digest(jobs: Sequence[Job]) -> str:
    """One digest of every job's id, provider, prompt and params, in order: equal to the
    one the last sync stored, the stored rows already match ``jobs`` (only a sync changes
    ids, fingerprints and the superseded flag), so there is nothing to compare. A few
    big hashes, not a million small ones."""
    digest = hashlib.sha256(b"pipeline jobs 1\n")
    heads: dict[int, str] = {}
    for start in range(0, len(jobs), _DIGEST_CHUNK):
        parts = []
        for job in jobs[start : start + _DIGEST_CHUNK]:
            p = job.params
            head = heads.get(id(p))
            if head is None:
                head = heads[id(p)] = _params_text(p)
            parts.append(f"{job.id}\x1f{job.provider}\x1f{head}\x1f{job.prompt}\x1e")
        digest.update("".join(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


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


@dataclass(slots=True)
class SyncPlan:
    """What a sync changes, in the order it must be done (archives free their ids first).

    ``archive``: (id, archived id) pairs; ``restore``: (archived id, id) pairs;
    ``insert``: (index in the batch, id, seq, provider, fingerprint); ``retire`` /
    ``unretire``: ids that left the manifest / came back unchanged."""

    archive: list[tuple[str, str]] = field(default_factory=list)
    restore: list[tuple[str, str]] = field(default_factory=list)
    insert: list[tuple[int, str, int, str, str]] = field(default_factory=list)
    retire: list[str] = field(default_factory=list)
    unretire: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.archive or self.restore or self.insert or self.retire or self.unretire)


def archived_id(job_id: str, fp: str) -> str:
    return f"{job_id}~{fp[:8]}"


def plan_sync(
    existing: Iterable[tuple[str, str, bool]],
    wanted: Sequence[tuple[str, str, str]],
    next_seq: int,
) -> SyncPlan:
    """The changes that bring stored rows, (id, fingerprint, superseded) each archived
    rows included, in line with ``wanted``, (id, provider, fingerprint) per job of the
    batch. New rows get ``seq`` from ``next_seq`` on (in batch order)."""
    stored = {job_id: (fp, superseded) for job_id, fp, superseded in existing}
    plan = SyncPlan()
    current: set[str] = set()
    for k, (job_id, provider, fp) in enumerate(wanted):
        current.add(job_id)
        old = stored.get(job_id)
        if old is not None and old[0] == fp:
            if old[1]:  # it had left the manifest and is back as it was
                plan.unretire.append(job_id)
            continue
        if old is not None:
            plan.archive.append((job_id, archived_id(job_id, old[0])))
        archived = archived_id(job_id, fp)
        if archived in stored:
            # Edited back to an earlier version: its work is still good.
            plan.restore.append((archived, job_id))
            continue
        plan.insert.append((k, job_id, next_seq + k, provider, fp))
    for job_id, (_, superseded) in stored.items():
        if not superseded and job_id not in current:
            plan.retire.append(job_id)
    return plan
