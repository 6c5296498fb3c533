"""The ledger as plain dicts (the slow path), to compare the fast one against."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.ledger._document import LedgerHeader, job_entry, ledger_document
from pipeline.store import JobRecord


def build_ledger(
    header: LedgerHeader,
    records: Iterable[JobRecord],
    counters: Mapping[str, tuple[int, int]],
) -> dict[str, Any]:
    """The whole ledger document, every job entry a plain dict built by ``job_entry``."""
    rows = list(records)
    doc = ledger_document(header, rows, counters)
    doc["jobs"] = [job_entry(r) for r in rows]
    return doc
