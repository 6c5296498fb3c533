"""What a run finds in its state before it sends anything, without holding every record.

A run needs a record of each job that is neither new nor done: pending with a history,
sent, at the provider, failed. Those come from the sync (``sync_batch(all_rows=False)``).
The completed jobs, most of a resumed batch, are read a chunk at a time from a view of
the state (``StateView.done``): their files are checked against the output as they come,
their counts and costs tallied, their task ids kept (reconciliation must never adopt a
task that is already a job's). What stays of each is its id, in ``done``. Only the few
whose files are missing, or sit under another job's name after an edit (moved first, as
``keep_files_with_their_jobs`` says), are read whole, into ``records``.

A large batch new to an empty state is not synced whole first: its first jobs are stored
and the rest handed to the run as ``intake`` (``pipeline.engine._intake``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import itemgetter

import anyio

from pipeline import _threads
from pipeline.engine._intake import Intake, start_intake
from pipeline.engine._relocate import keep_files_with_their_jobs, misplaced_paths
from pipeline.jobs import Batch, JobStatus
from pipeline.outputs import Output, Sizes
from pipeline.store import (
    DoneRow,
    JobRecord,
    RunStore,
    TallyRow,
    image_sizes,
    spent,
    spent_texts,
    tally_records,
)

CHUNK = 2000  # completed jobs checked at a time
_COMPLETED = JobStatus.COMPLETED.value
_PENDING = JobStatus.PENDING.value
Group = tuple[str, str, bool, str | None, str | None]  # a TallyRow's key


@dataclass(slots=True)
class Survey:
    """``records``: the jobs that are neither new (plain pending) nor done, by id in
    ``seq`` order; ``done``: the completed jobs of the batch whose files are all there;
    ``broken``: the completed ones whose files are not (their records are in
    ``records``); ``claimed``: every task id the state knows; ``done_tally``: the counts
    of every completed row (archived ones included)."""

    records: dict[str, JobRecord]
    done: set[str] = field(default_factory=set)
    broken: set[str] = field(default_factory=set)
    claimed: set[str] = field(default_factory=set)
    done_tally: list[TallyRow] = field(default_factory=list)
    intake: Intake | None = None  # a new batch still being stored (engine._intake)

    def tally(self) -> list[TallyRow]:
        """The whole state's counts, while nothing was written since the survey (a group
        may come twice, from both parts: its rows add up)."""
        held = (r for r in self.records.values() if r.row.status != JobStatus.COMPLETED)
        return [*self.done_tally, *tally_records(held)]  # completed: in done_tally

    def spent(self) -> tuple[float, float]:
        """USD and credits the batch has cost so far."""
        usd = credits = 0.0
        for t in self.done_tally:
            u, c = spent_texts(t.cost_json, t.duplicate_cost_json)
            usd, credits = usd + u * t.jobs, credits + c * t.jobs
        for r in self.records.values():
            if r.row.status != JobStatus.COMPLETED:
                u, c = spent(r)
                usd, credits = usd + u, credits + c
        return usd, credits


async def survey(
    state: RunStore, output: Output, batch: Batch, models: Mapping[str, str]
) -> Survey:
    """Sync the batch into the state and survey it (the module note)."""
    intake = await start_intake(state, batch.jobs, models)
    if intake is not None:  # a new batch: nothing to read; every job is pending
        jobs = Counter(job.provider for job in batch.jobs)
        pending = [TallyRow(p, _PENDING, False, None, None, n, 0) for p, n in jobs.items()]
        return Survey({}, done_tally=pending, intake=intake)
    records = await state.sync_batch(batch.jobs, models, all_rows=False)
    await keep_files_with_their_jobs(state, output, records.values())
    found = Survey(records)
    found.claimed.update(r.remote_id for r in records.values() if r.remote_id)
    groups: dict[Group, list[int]] = {}
    misplaced: list[str] = []
    async with state.reading() as view:
        # One chunk after the other: reading the next while checking this one was
        # slower (both hold the GIL most of the time).
        chunks = view.done(CHUNK)
        try:
            while (chunk := await _threads.run_sync(next, chunks, None)) is not None:
                _count(groups, chunk)
                found.claimed.update(row.remote_id for row in chunk if row.remote_id)
                check = _to_check(chunk, misplaced)
                missing = await output.missing(check)
                found.broken |= missing
                found.done.update(job_id for job_id, _ in check if job_id not in missing)
        finally:  # left early (an error, a cancel): closed in a worker thread, as read
            with anyio.CancelScope(shield=True):
                await _threads.run_sync(chunks.close)
        moved = await view.records_of(misplaced) if misplaced else []
    if moved:  # after an edit: files follow their job, then are checked where they are
        await keep_files_with_their_jobs(state, output, moved)
        async with state.reading() as view:
            moved = await view.records_of([r.id for r in moved])
        current = [r for r in moved if not r.superseded]
        missing = await output.missing([(r.id, image_sizes(r.row.images_json)) for r in current])
        found.broken |= missing
        found.done.update(r.id for r in current if r.id not in missing)
    if found.broken:
        async with state.reading() as view:
            for rec in await view.records_of(sorted(found.broken)):
                found.records[rec.id] = rec
    # The batch's plain pending jobs: every one neither done nor held (each has a row).
    for job in batch.jobs:
        if job.id not in found.done and job.id not in records:
            group = groups.setdefault((job.provider, _PENDING, False, None, None), [0, 0])
            group[0] += 1
    found.done_tally = [TallyRow(*key, n, images) for key, (n, images) in groups.items()]
    return found


def _to_check(chunk: list[DoneRow], misplaced: list[str]) -> list[tuple[str, Sizes]]:
    """The files to check of a chunk of completed rows: (id, its images' paths and
    sizes) for each current row whose files lie under its own name; the ids of those
    that do not go to ``misplaced``. (Inlined: it runs for every completed job.)"""
    check: list[tuple[str, Sizes]] = []
    for row in chunk:
        job_id, images_json = row.id, row.images_json
        if images_json:  # not one image: the list (``DoneRow``)
            if misplaced_paths(job_id, images_json):
                misplaced.append(job_id)
            elif not row.superseded:
                check.append((job_id, image_sizes(images_json)))
            continue
        path = row.first_path or ""
        # Files are only ever named `<job id>-<k>` (see ``misplaced_paths``).
        if not path.startswith(f"images/{job_id}-"):
            misplaced.append(job_id)
        elif not row.superseded:  # archived rows' files are not checked
            check.append((job_id, ((path, row.first_bytes),)))
    return check


_GROUP_OF = itemgetter(1, 2, 5, 6)  # provider, superseded, cost, duplicate cost


def _count(groups: dict[Group, list[int]], chunk: list[DoneRow]) -> None:
    """Tally a chunk of completed rows (counted in C: a million rows are a second)."""
    jobs = Counter(map(_GROUP_OF, chunk))
    extra: Counter[tuple[str, bool, str | None, str | None]] = Counter()
    for row in chunk:
        if row.image_count != 1:  # images = jobs, but for these
            extra[_GROUP_OF(row)] += row.image_count - 1
    for (provider, superseded, cost, dup), n in jobs.items():
        key = (provider, _COMPLETED, bool(superseded), cost, dup)
        group = groups.setdefault(key, [0, 0])
        group[0] += n
        group[1] += n + extra[provider, superseded, cost, dup]
