"""The resume rules: what a run must do, given what earlier runs recorded in state.db.

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

import os
import stat
from dataclasses import dataclass

from pipeline.jobs import Batch, Job
from pipeline.state import JobRecord


@dataclass(slots=True)
class WorkItem:
    """A job to run. ``remote_id``: reattach to that task. ``unknown``: an earlier submit
    may have created a task (the process died before recording the reply)."""

    job: Job
    remote_id: str | None = None
    flags: tuple[str, ...] = ()
    unknown: bool = False


def plan_work(batch: Batch, records: dict[str, JobRecord], *, retry_failed: bool) -> list[WorkItem]:
    """What this run must do, given what earlier runs recorded (the resume rules)."""
    work: list[WorkItem] = []
    reattach: list[WorkItem] = []
    for job in batch.jobs:
        rec = records.get(job.id)
        if rec is None or rec.status == "pending":
            work.append(WorkItem(job))
        elif rec.status == "submitted" and rec.remote_id:
            reattach.append(WorkItem(job, remote_id=rec.remote_id))
        elif rec.status == "intent":
            work.append(WorkItem(job, unknown=True))
        elif rec.status == "failed" and retry_failed:
            if rec.remote_id and (rec.error or {}).get("code") == "download":
                reattach.append(WorkItem(job, remote_id=rec.remote_id, flags=("redownloaded",)))
            else:
                work.append(WorkItem(job))
        elif rec.status == "completed" and not _files_present(batch, rec):
            if rec.remote_id:
                reattach.append(WorkItem(job, remote_id=rec.remote_id, flags=("redownloaded",)))
            else:
                work.append(WorkItem(job, flags=("regenerated",)))
    # Tasks already running at the provider come first: they are paid for.
    return reattach + work


def _files_present(batch: Batch, rec: JobRecord) -> bool:
    # os.path on strings: this runs once per image of a 100k-job resume.
    root = batch.output_dir
    for img in rec.images:
        try:
            info = os.lstat(os.path.join(root, str(img.get("path", ""))))
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_size != img.get("bytes"):
            return False
    return bool(rec.images)
