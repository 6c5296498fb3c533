"""``pipeline status DIR``: progress and spend, read from state.db (also mid-run)."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.ledger._document import summarize
from pipeline.store._sqlite import read_snapshot

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
    totals, providers = summarize(records, counters)
    failures: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "examples": []})
    in_flight = 0
    for r in records:
        if "superseded" in r.flags:
            continue
        if r.status in ("intent", "submitted"):  # shown as submitted in the ledger
            in_flight += 1
        if r.status == "failed" and r.error:
            group = failures[str(r.error.get("code"))]
            group["count"] += 1
            if len(group["examples"]) < EXAMPLES_PER_CODE:
                group["examples"].append({"id": r.id, "message": r.error.get("message")})
    done = totals["completed"] + totals["failed"]
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
