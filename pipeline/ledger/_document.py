"""ledger.json: the user-facing account of a batch, derived from the state table.

Written atomically (temporary file, fsync, rename) so a reader never sees half a ledger.
The file is one JSON document: the header, totals and providers indented, then one job
per line. Each job's line is spliced from the JSON text the state table already holds
(``entry_json``), so a 100k-job ledger takes no decoding and no Python-level encoding.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, overload

from pipeline.store._sqlite import JobRecord

# The ledger's statuses (design.md); 'intent' is shown as submitted with no remote id:
# the request may have reached the provider.
_LEDGER_STATUS = {
    "pending": "pending",
    "intent": "submitted",
    "submitted": "submitted",
    "completed": "completed",
    "failed": "failed",
}
_CHUNK = 2000  # job lines joined per write
# How a stored job document begins when it is in the ledger's shape (edits.py).
_DOCUMENT_START = '{"provider": '


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


def _text(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


_STATUS_TEXT = {status: encode_basestring(shown) for status, shown in _LEDGER_STATUS.items()}


def entry_json(r: JobRecord) -> str:
    """``job_entry(r)`` as JSON text, spliced from the stored text (equal once parsed)."""
    # The row's columns (records.COLUMNS) taken at once: this runs for every job of
    # every ledger write.
    row = r.row
    status, remote_id, attempts, submitted_at, completed_at, latency = row[4:10]
    doc, images, cost, usage, error, flags, duplicate_cost = row[10:17]
    if not doc.startswith(_DOCUMENT_START):  # not in the ledger's shape: the long way
        return json.dumps(job_entry(r), ensure_ascii=False)
    extra = ""
    if flags != "[]" and r.flags:
        extra += f', "flags": {flags}'
    if duplicate_cost and r.duplicate_cost:
        extra += f', "possible_duplicate_cost": {duplicate_cost}'
    shown = _STATUS_TEXT.get(status) or encode_basestring(status)
    return (
        f'{{"id": {encode_basestring(row[0])}, {doc[1:-1]}, "status": {shown}, '
        f'"remote_id": {_text(remote_id)}, "attempts": {attempts}, '
        f'"submitted_at": {_text(submitted_at)}, "completed_at": {_text(completed_at)}, '
        f'"latency_s": {"null" if latency is None else _number(latency)}, '
        f'"images": {images}, "cost": {cost or "null"}, '
        f'"usage": {usage}, "error": {error or "null"}{extra}}}'
    )


def _number(x: float) -> str:
    return repr(x) if math.isfinite(x) else json.dumps(x)


class JobEntries(Sequence[dict[str, Any]]):
    """A ledger's ``jobs``: one entry per record, built when read (read-only)."""

    __slots__ = ("_records",)

    def __init__(self, records: Sequence[JobRecord]) -> None:
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [job_entry(r) for r in self._records[index]]
        return job_entry(self._records[index])

    def json_lines(self) -> Iterator[str]:
        """Each entry as one line of JSON text."""
        return map(entry_json, self._records)

    def __repr__(self) -> str:
        return f"JobEntries({len(self._records)} jobs)"


def spent(r: JobRecord) -> tuple[float, float]:
    """USD and credits a job has cost, counting possible duplicate charges."""
    cost = r.cost or {}
    dup = r.duplicate_cost or {}
    usd = (cost.get("usd") or 0.0) + (dup.get("usd") or 0.0)
    credits = (cost.get("credits") or 0.0) + (dup.get("credits") or 0.0)
    return usd, credits


_COUNTED = ("jobs", "completed", "failed", "pending", "images")


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


def summarize(
    records: Iterable[JobRecord], counters: Mapping[str, tuple[int, int]]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The ledger's ``totals`` and ``providers``. Superseded rows (edited-away jobs) do
    not count toward the totals of the current batch, except for money they cost."""
    total_usd = total_credits = 0.0
    # Per provider: usd, credits, then the _COUNTED counts.
    tallies: dict[str, list[Any]] = {}
    money: dict[tuple[str | None, str | None], tuple[float, float]] = {}
    for r in records:
        row = r.row  # records.COLUMNS: provider, status, cost, flags, duplicate_cost, images
        provider, status, flags, key = row[2], row[4], row[15], (row[12], row[16])
        tally = tallies.get(provider)
        if tally is None:
            tally = tallies[provider] = [0.0, 0.0, 0, 0, 0, 0, 0]
        spent_here = money.get(key)
        if spent_here is None:  # a batch's jobs repeat a few costs
            spent_here = money[key] = spent(r)
        usd, credits = spent_here
        total_usd += usd
        total_credits += credits
        tally[0] += usd
        tally[1] += credits
        if flags != "[]" and "superseded" in r.flags:
            continue
        tally[2] += 1
        shown = _LEDGER_STATUS.get(status, status)
        tally[3 if shown == "completed" else 4 if shown == "failed" else 5] += 1
        tally[6] += row[17]
    totals = _empty_totals()
    totals["cost_usd"], totals["credits"] = _money(total_usd), _money(total_credits)
    providers: dict[str, dict[str, Any]] = {}
    for name, (usd, credits, *counts) in tallies.items():
        requests, rate_limited = counters.get(name, (0, 0))
        p = providers[name] = {
            **dict(zip(_COUNTED, counts, strict=True)),
            "cost_usd": _money(usd),
            "credits": _money(credits),
            "requests": requests,
            "rate_limited": rate_limited,
        }
        for field in _COUNTED:
            totals[field] += p[field]
    return totals, providers


def ledger_document(
    header: LedgerHeader,
    records: Sequence[JobRecord],
    counters: Mapping[str, tuple[int, int]],
) -> dict[str, Any]:
    """The whole ledger document; ``jobs`` is a ``JobEntries`` (entries built on access,
    written by ``write_json_atomic`` without decoding)."""
    totals, providers = summarize(records, counters)
    return {
        "name": header.name,
        "manifest": header.manifest,
        "started_at": header.started_at,
        "updated_at": header.updated_at,
        "finished": header.finished,
        "totals": totals,
        "providers": providers,
        "jobs": JobEntries(records),
    }


def build_ledger(
    header: LedgerHeader,
    records: Iterable[JobRecord],
    counters: Mapping[str, tuple[int, int]],
) -> dict[str, Any]:
    """The whole ledger document, every job entry a plain dict."""
    rows = list(records)
    doc = ledger_document(header, rows, counters)
    doc["jobs"] = [job_entry(r) for r in rows]
    return doc


def encode_document(document: Mapping[str, Any]) -> Iterator[str]:
    """``document`` as JSON text, in pieces: indented, except its ``jobs``, one per line.

    Uses the C encoder throughout (``json.dump(indent=...)`` of a large document runs
    the pure-Python one), and a ``JobEntries`` is written without decoding any job.
    """
    jobs = document.get("jobs")
    if not isinstance(jobs, Sequence) or isinstance(jobs, str) or not jobs:
        yield json.dumps(document, indent=1, ensure_ascii=False) + "\n"
        return
    head = {k: v for k, v in document.items() if k != "jobs"}
    lines = (
        jobs.json_lines()
        if isinstance(jobs, JobEntries)
        else (json.dumps(j, ensure_ascii=False) for j in jobs)
    )
    yield json.dumps(head, indent=1, ensure_ascii=False)[:-2] + ",\n" if head else "{\n"
    yield ' "jobs": [\n'
    # Joined in chunks: the text of a 100k-job ledger is never held whole.
    chunk = list(islice(lines, _CHUNK))
    while chunk:
        following = list(islice(lines, _CHUNK))
        yield ",\n".join(chunk) + (",\n" if following else "\n")
        chunk = following
    yield " ]\n}\n"


def write_text_atomic(path: Path, pieces: Iterable[str]) -> None:
    """Write the text ``pieces`` to ``path`` so readers see the old or the new file, never
    half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for piece in pieces:
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` (see ``encode_document``) to ``path`` atomically."""
    write_text_atomic(path, encode_document(document))
