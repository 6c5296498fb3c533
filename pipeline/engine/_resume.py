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

import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.jobs import Batch, Job
from pipeline.store._sqlite import JobRecord

_CHUNK = 2000  # records whose images are decoded at once


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
    found = [(job, records.get(job.id)) for job in batch.jobs]
    done = [rec for _, rec in found if rec is not None and rec.status == "completed"]
    broken = files_missing(batch.output_dir, done)
    work: list[WorkItem] = []
    reattach: list[WorkItem] = []
    for job, rec in found:
        if rec is None:
            work.append(WorkItem(job))
            continue
        status = rec.status
        if status == "completed":
            if rec.id not in broken:
                continue
            if rec.remote_id:
                reattach.append(WorkItem(job, remote_id=rec.remote_id, flags=("redownloaded",)))
            else:
                work.append(WorkItem(job, flags=("regenerated",)))
        elif status == "pending":
            work.append(WorkItem(job))
        elif status == "submitted" and rec.remote_id:
            reattach.append(WorkItem(job, remote_id=rec.remote_id))
        elif status == "intent":
            work.append(WorkItem(job, unknown=True))
        elif status == "failed" and retry_failed:
            if rec.remote_id and (rec.error or {}).get("code") == "download":
                reattach.append(WorkItem(job, remote_id=rec.remote_id, flags=("redownloaded",)))
            else:
                work.append(WorkItem(job))
    # Tasks already running at the provider come first: they are paid for.
    return reattach + work


def files_missing(root: str, records: Sequence[JobRecord]) -> set[str]:
    """Ids of the records whose image files are not all present (a record without images
    counts as missing them): each must be a regular file (not a link) of the recorded
    size, at its path relative to ``root``."""
    missing: set[str] = set()
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return {rec.id for rec in records}
    try:
        for start in range(0, len(records), _CHUNK):
            chunk = records[start : start + _CHUNK]
            # One decode for many rows: a 100k-job resume pays the parser's setup once per
            # chunk, not per row (and keeps no decoded image once checked).
            decoded = json.loads("[" + ",".join(rec.images_json for rec in chunk) + "]")
            for rec, images in zip(chunk, decoded, strict=True):
                if not images or not _all_present(root_fd, images):
                    missing.add(rec.id)
    finally:
        os.close(root_fd)
    return missing


def _all_present(root_fd: int, images: list[dict[str, Any]]) -> bool:
    for img in images:
        try:
            # A path relative to root_fd, as os.lstat(os.path.join(root, path)) would
            # see it, without building the joined string.
            info = os.stat(str(img.get("path", "")), dir_fd=root_fd, follow_symlinks=False)
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_size != img.get("bytes"):
            return False
    return True
