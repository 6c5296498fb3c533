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

from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.errors import ErrorCode
from pipeline.jobs import Batch, Flag, Job, JobStatus
from pipeline.store import JobRecord


@dataclass(slots=True)
class WorkItem:
    """A job to run. ``remote_id``: reattach to that task. ``unknown``: an earlier submit
    may have created a task (the process died before recording the reply)."""

    job: Job
    remote_id: str | None = None
    flags: tuple[str, ...] = ()
    unknown: bool = False


def to_check(batch: Batch, records: Mapping[str, JobRecord]) -> list[tuple[str, str]]:
    """The completed jobs of ``batch`` whose files a rerun must find: (id, images as
    stored) each, for ``Output.missing``."""
    out = []
    for job in batch.jobs:
        rec = records.get(job.id)
        if rec is not None and rec.row.status == JobStatus.COMPLETED:
            out.append((rec.id, rec.row.images_json))
    return out


def plan_work(
    batch: Batch,
    records: Mapping[str, JobRecord],
    broken: set[str],
    *,
    retry_failed: bool,
) -> list[WorkItem]:
    """What this run must do, given what earlier runs recorded (the resume rules) and
    ``broken``: the completed jobs whose files are not all there."""
    work: list[WorkItem] = []
    reattach: list[WorkItem] = []
    for job in batch.jobs:
        rec = records.get(job.id)
        if rec is None:
            work.append(WorkItem(job))
            continue
        status = rec.row.status
        if status == JobStatus.COMPLETED:
            if rec.id not in broken:
                continue
            if rec.remote_id:
                reattach.append(WorkItem(job, rec.remote_id, flags=(Flag.REDOWNLOADED,)))
            else:
                work.append(WorkItem(job, flags=(Flag.REGENERATED,)))
        elif status == JobStatus.PENDING:
            work.append(WorkItem(job))
        elif status == JobStatus.SUBMITTED and rec.remote_id:
            reattach.append(WorkItem(job, remote_id=rec.remote_id))
        elif status == JobStatus.INTENT:
            work.append(WorkItem(job, unknown=True))
        elif status == JobStatus.FAILED and retry_failed:
            if rec.remote_id and rec.error_code == ErrorCode.DOWNLOAD:
                reattach.append(WorkItem(job, rec.remote_id, flags=(Flag.REDOWNLOADED,)))
            else:
                work.append(WorkItem(job))
    # Tasks already running at the provider come first: they are paid for.
    return reattach + work
