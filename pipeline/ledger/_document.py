"""ledger.json: the user-facing account of a batch, derived from the state table.

Written atomically by the output (``Output.write_atomic``): a reader never sees half a ledger.
The file is one JSON document: the header, totals and providers indented, then one job
per line. Each job's line is spliced from the JSON text the state table already holds
(``entry_json``), so a 100k-job ledger takes no decoding and no Python-level encoding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from json.encoder import encode_basestring
from typing import Any, overload

from pipeline.jobs import JobStatus
from pipeline.store import JobRecord, TallyRow, spent_texts, tally_records

_CHUNK = 2000  # job lines joined per write
# How a stored job document begins when it is in the ledger's shape (store/_edits.py).
_DOCUMENT_START = '{"provider": '
LEDGER_NAME = "ledger.json"


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
        "status": r.status.shown,
        "remote_id": r.remote_id,
        "attempts": r.row.attempts,
        "submitted_at": r.row.submitted_at,
        "completed_at": r.row.completed_at,
        "latency_s": r.row.latency_s,
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


_STATUS_TEXT = {status.value: encode_basestring(status.shown) for status in JobStatus}


def entry_json(r: JobRecord) -> str:
    """``job_entry(r)`` as JSON text, spliced from the stored text (equal once parsed)."""
    # This runs for every job of every ledger write: the stored texts are spliced in.
    row = r.row
    doc = row.job_json
    if not doc.startswith(_DOCUMENT_START):  # not in the ledger's shape: the long way
        return json.dumps(job_entry(r), ensure_ascii=False)
    extra = ""
    if row.flags_json != "[]" and r.flags:
        extra += f', "flags": {row.flags_json}'
    if row.duplicate_cost_json and r.duplicate_cost:
        extra += f', "possible_duplicate_cost": {row.duplicate_cost_json}'
    shown = _STATUS_TEXT.get(row.status) or encode_basestring(row.status)
    latency = row.latency_s
    return (
        f'{{"id": {encode_basestring(row.id)}, {doc[1:-1]}, "status": {shown}, '
        f'"remote_id": {_text(row.remote_id)}, "attempts": {row.attempts}, '
        f'"submitted_at": {_text(row.submitted_at)}, '
        f'"completed_at": {_text(row.completed_at)}, '
        f'"latency_s": {"null" if latency is None else _number(latency)}, '
        f'"images": {row.images_json}, "cost": {row.cost_json or "null"}, '
        f'"usage": {row.usage_json}, "error": {row.error_json or "null"}{extra}}}'
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


_COUNTED = ("jobs", "completed", "failed", "pending", "images")


def summarize(
    records: Iterable[JobRecord], counters: Mapping[str, tuple[int, int]]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The ledger's ``totals`` and ``providers`` of ``records`` (``summarize_tally`` of
    their tally)."""
    return summarize_tally(tally_records(records), counters)


def summarize_tally(
    tally: Iterable[TallyRow], counters: Mapping[str, tuple[int, int]]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The ledger's ``totals`` and ``providers``: the one count of a batch's outcome (the
    run's result, ledger.json and ``status`` all read it), from the store's tally (a few
    rows for a million jobs). Superseded rows (edited or removed from the manifest) are
    not part of the batch: they count only for the money they cost. Providers are listed
    by name."""
    total_usd = total_credits = 0.0
    # Per provider: usd, credits, then the _COUNTED counts.
    tallies: dict[str, list[Any]] = {}
    completed, failed = JobStatus.COMPLETED.value, JobStatus.FAILED.value
    for group in sorted(tally, key=_group_order):
        tally_ = tallies.get(group.provider)
        if tally_ is None:
            tally_ = tallies[group.provider] = [0.0, 0.0, 0, 0, 0, 0, 0]
        usd, credits = spent_texts(group.cost_json, group.duplicate_cost_json)
        usd, credits = usd * group.jobs, credits * group.jobs
        total_usd += usd
        total_credits += credits
        tally_[0] += usd
        tally_[1] += credits
        if group.superseded:
            continue
        tally_[2] += group.jobs
        status = group.status
        tally_[3 if status == completed else 4 if status == failed else 5] += group.jobs
        tally_[6] += group.images
    totals: dict[str, Any] = dict.fromkeys(_COUNTED, 0)
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


def _group_order(group: TallyRow) -> tuple[str, str, bool, str, str]:
    # A fixed order, whichever order the store grouped in: the same sums to the last bit.
    return (
        group.provider,
        group.status,
        group.superseded,
        group.cost_json or "",
        group.duplicate_cost_json or "",
    )


def ledger_head(
    header: LedgerHeader, totals: dict[str, Any], providers: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The ledger document without its ``jobs``."""
    return {
        "name": header.name,
        "manifest": header.manifest,
        "started_at": header.started_at,
        "updated_at": header.updated_at,
        "finished": header.finished,
        "totals": totals,
        "providers": providers,
    }


def ledger_document(
    header: LedgerHeader,
    records: Sequence[JobRecord],
    counters: Mapping[str, tuple[int, int]],
) -> dict[str, Any]:
    """The whole ledger document; ``jobs`` is a ``JobEntries`` (entries built on access,
    written by ``encode_document`` without decoding)."""
    totals, providers = summarize(records, counters)
    return {**ledger_head(header, totals, providers), "jobs": JobEntries(records)}


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
    if isinstance(jobs, JobEntries):
        lines: Iterator[str] = jobs.json_lines()
    else:
        lines = (json.dumps(j, ensure_ascii=False) for j in jobs)
    yield from _encode(head, _batched(lines, _CHUNK))


def encode_streamed(
    head: Mapping[str, Any], chunks: Iterable[list[JobRecord]]
) -> Generator[str, None, None]:
    """The document ``head`` plus the records of ``chunks`` as its ``jobs``, in pieces
    (``encode_document``'s text): a ledger written from a state view, one chunk of
    records held at a time."""
    return _encode(head, ([entry_json(r) for r in chunk] for chunk in chunks))


def _batched(lines: Iterator[str], n: int) -> Iterator[list[str]]:
    while chunk := list(islice(lines, n)):
        yield chunk


def _encode(head: Mapping[str, Any], batches: Iterable[list[str]]) -> Generator[str, None, None]:
    """The indented head, then ``jobs``: the lines of ``batches``, one job per line."""
    opening = json.dumps(dict(head), indent=1, ensure_ascii=False)
    pending: list[str] | None = None
    for batch in batches:
        if not batch:
            continue
        if pending is None:
            yield (opening[:-2] + ",\n" if head else "{\n") + ' "jobs": [\n'
        else:
            yield ",\n".join(pending) + ",\n"  # joined a chunk at a time: never whole
        pending = batch
    if pending is None:  # no jobs: the plain document
        yield json.dumps({**head, "jobs": []}, indent=1, ensure_ascii=False) + "\n"
        return
    yield ",\n".join(pending) + "\n ]\n}\n"


class WrittenJobs(Sequence[dict[str, Any]]):
    """A written ledger's ``jobs``, read back from the file on first access (a run's
    document never holds a million entries unless someone asks for them)."""

    __slots__ = ("_jobs", "_read")

    def __init__(self, read: Callable[[], bytes]) -> None:
        self._read = read
        self._jobs: list[dict[str, Any]] | None = None

    def _all(self) -> list[dict[str, Any]]:
        if self._jobs is None:
            self._jobs = list(json.loads(self._read())["jobs"])
        return self._jobs

    def __len__(self) -> int:
        return len(self._all())

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._all()[index]

    def __repr__(self) -> str:
        return "WrittenJobs(read on access)"
