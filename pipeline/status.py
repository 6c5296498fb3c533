"""``pipeline status DIR``: progress and spend, read from state.db (also mid-run)."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.ledger import LedgerHeader, build_ledger
from pipeline.state import read_snapshot

EXAMPLES_PER_CODE = 3


def read_status(directory: str) -> dict[str, Any]:
    """Totals, per-provider figures and failures grouped by error code.

    The totals are computed exactly as ledger.json's. Raises ``UsageError`` when the
    folder holds no batch state.
    """
    db = Path(directory) / "state.db"
    if not db.is_file():
        raise UsageError(f"{directory}: no batch here (state.db not found)")
    try:
        meta, records, counters = read_snapshot(db)
    except sqlite3.Error as exc:
        raise UsageError(f"{db}: cannot read the batch state: {exc}") from exc
    header = LedgerHeader(
        name=meta.get("name", ""),
        manifest=meta.get("manifest", ""),
        started_at=meta.get("started_at", ""),
        updated_at=meta.get("started_at", ""),
        finished=False,
    )
    ledger = build_ledger(header, records, counters)
    failures: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "examples": []})
    in_flight = 0
    for job in ledger["jobs"]:
        if "superseded" in job.get("flags", []):
            continue
        if job["status"] == "submitted":
            in_flight += 1
        if job["status"] == "failed" and job["error"]:
            group = failures[str(job["error"].get("code"))]
            group["count"] += 1
            if len(group["examples"]) < EXAMPLES_PER_CODE:
                group["examples"].append({"id": job["id"], "message": job["error"].get("message")})
    totals = ledger["totals"]
    done = totals["completed"] + totals["failed"]
    return {
        "name": ledger["name"],
        "manifest": ledger["manifest"],
        "started_at": ledger["started_at"],
        "totals": totals,
        "in_flight": in_flight,
        "progress": round(done / totals["jobs"], 4) if totals["jobs"] else 1.0,
        "providers": ledger["providers"],
        "failures": dict(failures),
    }
