"""``pipeline status``: progress and spend of a batch, read from its state (also mid-run)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from pipeline.jobs import JobStatus
from pipeline.ledger._document import summarize_tally
from pipeline.store import StateLocation, read_summary

EXAMPLES_PER_CODE = 3


def read_status(location: StateLocation, output: str) -> dict[str, Any]:
    """Totals, per-provider figures and failures grouped by error code, as a JSON-ready
    document (what ``status --json`` prints). The totals are ledger.json's.

    Raises ``UsageError`` when there is no state of the batch writing to ``output`` at
    ``location``.
    """
    summary = read_summary(location, output)
    totals, providers = summarize_tally(summary.tally, summary.counters)
    at_provider = (JobStatus.INTENT, JobStatus.SUBMITTED)
    in_flight = sum(g.jobs for g in summary.tally if g.status in at_provider and not g.superseded)
    failures: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "examples": []})
    for job_id, error_json in summary.failed:
        error = json.loads(error_json)
        if not error:
            continue
        code = error.get("code")
        group = failures[str(code)]
        group["count"] += 1
        if len(group["examples"]) < EXAMPLES_PER_CODE:
            group["examples"].append({"id": job_id, "message": error.get("message")})
    done = totals["completed"] + totals["failed"]
    meta = summary.meta
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
