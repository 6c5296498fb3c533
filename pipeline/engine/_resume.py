"""The resume rules: what a run must do, given what earlier runs recorded in its state.

| recorded status            | this run                                                  |
|----------------------------|-----------------------------------------------------------|
| none / pending             | submit                                                    |
| intent (reply never seen)  | reconcile with the provider first, else resubmit flagged   |
|                            | ``possible_duplicate`` with the possible double charge     |
| submitted (remote id)      | poll by remote id; never resubmitted                       |
| completed, files intact    | nothing                                                   |
| completed, a file missing  | poll again by remote id and re-download (``redownloaded``), |
| or of the wrong size       | or regenerate when no remote id is known (``regenerated``)  |
| failed                     | nothing, unless ``--retry-failed``: then submitted again,  |
|                            | except a paid task whose images failed to download: that  |
|                            | one is polled by remote id and re-downloaded               |

Tasks already running at the provider come first: they are paid for. A file counts as
present only if it is a regular file of the recorded size (a planted symlink does not).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import datetime

from pipeline.errors import ErrorCode
from pipeline.jobs import Batch, Flag, Job, JobStatus
from pipeline.store import JobRecord


@dataclass(slots=True)
class WorkItem:
    """A job to run. ``remote_id``: reattach to that task. ``unknown``: an earlier submit
    may have created a task (the process died before recording the reply). ``since``:
    when the task was submitted (or the intent written), epoch seconds, if known."""

    job: Job
    remote_id: str | None = None
    flags: tuple[str, ...] = ()
    unknown: bool = False
    since: float | None = None


def work_for(
    job: Job, rec: JobRecord | None, broken: set[str], *, retry_failed: bool
) -> WorkItem | None:
    """What this run must do for ``job`` given its record (the table above); None:
    nothing. ``broken``: the completed jobs whose files are not all there."""
    if rec is None:
        return WorkItem(job)
    status = rec.row.status
    if status == JobStatus.COMPLETED and rec.id not in broken:
        return None  # most of a resumed batch: nothing to read further
    since = _epoch(rec.row.submitted_at)
    if status == JobStatus.COMPLETED:
        if rec.remote_id:
            return WorkItem(job, rec.remote_id, flags=(Flag.REDOWNLOADED,), since=since)
        return WorkItem(job, flags=(Flag.REGENERATED,))
    if status == JobStatus.PENDING:
        return WorkItem(job)
    if status == JobStatus.SUBMITTED and rec.remote_id:
        return WorkItem(job, remote_id=rec.remote_id, since=since)
    if status == JobStatus.INTENT:
        return WorkItem(job, unknown=True, since=since)
    if status == JobStatus.FAILED and retry_failed:
        if rec.remote_id and rec.error_code == ErrorCode.DOWNLOAD:
            return WorkItem(job, rec.remote_id, flags=(Flag.REDOWNLOADED,), since=since)
        return WorkItem(job)
    return None


def _epoch(stamp: str | None) -> float | None:
    """A ledger timestamp (``2026-01-01T12:00:00.000Z``) as epoch seconds."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def plan_work(
    batch: Batch,
    records: Mapping[str, JobRecord],
    broken: set[str],
    *,
    retry_failed: bool,
    done: Container[str] = (),
) -> list[WorkItem]:
    """What this run must do, given what earlier runs recorded (the resume rules) and
    ``broken``: the completed jobs whose files are not all there. ``done``: ids of
    completed jobs with every file in place, whose records the caller did not keep."""
    if not records and not done:  # a new batch: every job, as it is
        return list(map(WorkItem, batch.jobs))
    work: list[WorkItem] = []
    reattach: list[WorkItem] = []
    for job in batch.jobs:
        if job.id in done:
            continue
        item = work_for(job, records.get(job.id), broken, retry_failed=retry_failed)
        if item is not None:
            (work if item.remote_id is None else reattach).append(item)
    # Tasks already running at the provider come first: they are paid for.
    return reattach + work
