"""A job's row in the state table, decoded, and the job's identity (fingerprint)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.jobs import Job


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


def fingerprint(doc: dict[str, Any]) -> str:
    """Identity of what a job asks for; a changed fingerprint means a changed job."""
    keyed = {k: doc[k] for k in ("provider", "prompt", "params")}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One row of the state table, decoded."""

    id: str
    seq: int
    provider: str
    fingerprint: str
    job: dict[str, Any]
    status: str
    remote_id: str | None
    attempts: int
    submitted_at: str | None
    completed_at: str | None
    latency_s: float | None
    images: list[dict[str, Any]] = field(default_factory=list)
    cost: dict[str, Any] | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    flags: list[str] = field(default_factory=list)
    # Estimated cost of submits that may have been charged twice (unknown outcomes).
    duplicate_cost: dict[str, Any] | None = None


COLUMNS = (
    "id, seq, provider, fingerprint, job, status, remote_id, attempts, submitted_at, "
    "completed_at, latency_s, images, cost, usage, error, flags, duplicate_cost"
)


def decode(row: tuple[Any, ...]) -> JobRecord:
    return JobRecord(
        id=row[0],
        seq=row[1],
        provider=row[2],
        fingerprint=row[3],
        job=json.loads(row[4]),
        status=row[5],
        remote_id=row[6],
        attempts=row[7],
        submitted_at=row[8],
        completed_at=row[9],
        latency_s=row[10],
        images=json.loads(row[11]),
        cost=json.loads(row[12]) if row[12] else None,
        usage=json.loads(row[13]),
        error=json.loads(row[14]) if row[14] else None,
        flags=json.loads(row[15]),
        duplicate_cost=json.loads(row[16]) if row[16] else None,
    )
