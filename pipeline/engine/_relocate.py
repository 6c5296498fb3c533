"""Image files follow their job's id when an edit archives or restores the job."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable

from pipeline.outputs import Output
from pipeline.store import JobRecord, RunStore


def _image_path(job_id: str, k: int, path: str) -> str:
    """Where the k-th image of ``job_id`` belongs (keeping the extension of ``path``)."""
    return f"images/{job_id}-{k}{posixpath.splitext(path)[1]}"


def misplaced_paths(job_id: str, images_json: str) -> bool:
    """Whether the images stored as ``images_json`` lie anywhere but under ``job_id``."""
    if images_json == "[]":
        return False
    # Without decoding: every image's path starts with this job's own name. (Files are
    # only ever named `<job id>-<k>`, by the downloader or by the move below.)
    paths = images_json.count('"path": ')
    if paths and paths == images_json.count(f'"path": "images/{job_id}-'):
        return False
    images = json.loads(images_json)
    return any(
        str(img.get("path", "")) != _image_path(job_id, k, str(img.get("path", "")))
        for k, img in enumerate(images, start=1)
    )


def _misplaced(rec: JobRecord) -> bool:
    return misplaced_paths(rec.id, rec.row.images_json)


async def keep_files_with_their_jobs(
    state: RunStore, output: Output, records: Iterable[JobRecord]
) -> None:
    """Images are named after their job's id; when an edit archived a job under a new id
    (``<id>~<fingerprint>``) or restored it, move its files along so the new job's images
    never overwrite the old one's. Superseded jobs move first, freeing the names."""
    misplaced = [r for r in records if _misplaced(r)]
    misplaced.sort(key=lambda r: not r.superseded)
    for rec in misplaced:
        moved = []
        for k, img in enumerate(rec.images, start=1):
            path = str(img.get("path", ""))
            wanted = _image_path(rec.id, k, path)
            if path != wanted and await output.move(path, wanted):
                img = {**img, "path": wanted}
            moved.append(img)
        if moved != rec.images:
            await state.set_images(rec.id, moved)
