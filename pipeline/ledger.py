"""ledger.json: the user-facing account of a batch, derived from the state table.

Written atomically (temporary file, fsync, rename) so a reader never sees half a ledger.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.state import JobRecord

# The ledger's statuses (design.md); 'intent' is shown as submitted with no remote id:
# the request may have reached the provider.
_LEDGER_STATUS = {
    "pending": "pending",
    "intent": "submitted",
    "submitted": "submitted",
    "completed": "completed",
    "failed": "failed",
}


@dataclass(frozen=True, slots=True)
class LedgerHeader:
    name: str
    manifest: str
    started_at: str
    updated_at: str
    finished: bool


def _money(x: float) -> float:
    return round(x, 6)


def job_entry(r: JobRecord) -> dict[str, Any]:
    """One job as the ledger shows it."""
    doc = r.job
    entry: dict[str, Any] = {
        "id": r.id,
        "provider": r.provider,
        "model": doc.get("model"),
        "prompt_id": doc.get("prompt_id"),
        "prompt": doc.get("prompt"),
        "params": doc.get("params", {}),
        "variant": doc.get("variant", {}),
        "status": _LEDGER_STATUS.get(r.status, r.status),
        "remote_id": r.remote_id,
        "attempts": r.attempts,
        "submitted_at": r.submitted_at,
        "completed_at": r.completed_at,
        "latency_s": r.latency_s,
        "images": r.images,
        "cost": r.cost,
        "usage": r.usage,
        "error": r.error,
    }
    if r.flags:
        entry["flags"] = list(r.flags)
    if r.duplicate_cost:
        entry["possible_duplicate_cost"] = r.duplicate_cost
    return entry


def spent(r: JobRecord) -> tuple[float, float]:
    """USD and credits a job has cost, counting possible duplicate charges."""
    cost = r.cost or {}
    dup = r.duplicate_cost or {}
    usd = (cost.get("usd") or 0.0) + (dup.get("usd") or 0.0)
    credits = (cost.get("credits") or 0.0) + (dup.get("credits") or 0.0)
    return usd, credits


def _empty_totals() -> dict[str, Any]:
    return {
        "jobs": 0,
        "completed": 0,
        "failed": 0,
        "pending": 0,
        "images": 0,
        "cost_usd": 0.0,
        "credits": 0.0,
    }


def build_ledger(
    header: LedgerHeader,
    records: Iterable[JobRecord],
    counters: Mapping[str, tuple[int, int]],
) -> dict[str, Any]:
    """The whole ledger document. Superseded rows (edited-away jobs) are listed but do
    not count toward the totals of the current batch, except for money they cost."""
    totals = _empty_totals()
    providers: dict[str, dict[str, Any]] = {}
    jobs = []
    for r in records:
        entry = job_entry(r)
        jobs.append(entry)
        p = providers.setdefault(r.provider, {**_empty_totals(), "requests": 0, "rate_limited": 0})
        usd, credits = spent(r)
        for bucket in (totals, p):
            bucket["cost_usd"] += usd
            bucket["credits"] += credits
        if "superseded" in r.flags:
            continue
        status = entry["status"]
        for bucket in (totals, p):
            bucket["jobs"] += 1
            bucket["images"] += len(r.images)
            if status == "completed":
                bucket["completed"] += 1
            elif status == "failed":
                bucket["failed"] += 1
            else:
                bucket["pending"] += 1
    for name, p in providers.items():
        p["requests"], p["rate_limited"] = counters.get(name, (0, 0))
    for bucket in (totals, *providers.values()):
        bucket["cost_usd"] = _money(bucket["cost_usd"])
        bucket["credits"] = _money(bucket["credits"])
    return {
        "name": header.name,
        "manifest": header.manifest,
        "started_at": header.started_at,
        "updated_at": header.updated_at,
        "finished": header.finished,
        "totals": totals,
        "providers": providers,
        "jobs": jobs,
    }


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``path`` so readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
