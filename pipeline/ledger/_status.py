"""``pipeline status``: progress and spend of a batch, read from its state (also mid-run)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pipeline.jobs import JobStatus
from pipeline.ledger._document import summarize
from pipeline.store import StateLocation, read_state

EXAMPLES_PER_CODE = 3


def read_status(location: StateLocation, output: str) -> dict[str, Any]:
    """Totals, per-provider figures and failures grouped by error code, as a JSON-ready
    document (what ``status --json`` prints). The totals are ledger.json's.

    Raises ``UsageError`` when there is no state of the batch writing to ``output`` at
    ``location``.
    """
    snap = read_state(location, output)
    totals, providers = summarize(snap.records, snap.counters)
    failures: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "examples": []})
    in_flight = 0
    for r in snap.records:
        if r.superseded:
            continue
        status = r.row.status
        if status in (JobStatus.INTENT, JobStatus.SUBMITTED):  # at the provider
            in_flight += 1
        elif status == JobStatus.FAILED and r.error:
            group = failures[str(r.error_code)]
            group["count"] += 1
            if len(group["examples"]) < EXAMPLES_PER_CODE:
                group["examples"].append({"id": r.id, "message": r.error.get("message")})
    done = totals["completed"] + totals["failed"]
    meta = snap.meta
    return {
        "name": meta.get("name", ""),
        "manifest": meta.get("manifest", ""),
        "started_at": meta.get("started_at", ""),
        "totals": totals,
        "in_flight": in_flight,
        "progress": round(done / totals["jobs"], 4) if totals["jobs"] else 1.0,
        "providers": providers,
        "failures": dict(failures),
    }
