"""Image files follow their job's id when an edit archives or restores the job."""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from pipeline.store._sqlite import JobRecord, StateStore


def _image_path(job_id: str, k: int, path: str) -> str:
    """Where the k-th image of ``job_id`` belongs (keeping the extension of ``path``)."""
    return f"images/{job_id}-{k}{os.path.splitext(path)[1]}"


def _misplaced(rec: JobRecord) -> bool:
    text = rec.images_json
    if text == "[]":
        return False
    # Without decoding: every image's path starts with this job's own name. (Files are
    # only ever named `<job id>-<k>`, by the downloader or by the move below.)
    paths = text.count('"path": ')
    if paths and paths == text.count(f'"path": "images/{rec.id}-'):
        return False
    return any(
        str(img.get("path", "")) != _image_path(rec.id, k, str(img.get("path", "")))
        for k, img in enumerate(rec.images, start=1)
    )


async def keep_files_with_their_jobs(
    state: StateStore, root: Path, records: dict[str, JobRecord]
) -> None:
    """Images are named after their job's id; when an edit archived a job under a new id
    (``<id>~<fingerprint>``) or restored it, move its files along so the new job's images
    never overwrite the old one's. Superseded jobs move first, freeing the names."""
    misplaced = [r for r in records.values() if _misplaced(r)]
    misplaced.sort(key=lambda r: "superseded" not in r.flags)
    for rec in misplaced:
        moved = []
        for k, img in enumerate(rec.images, start=1):
            path = str(img.get("path", ""))
            wanted = _image_path(rec.id, k, path)
            if path != wanted and (root / path).is_file() and not (root / wanted).exists():
                await anyio.Path(root / path).rename(root / wanted)
                img = {**img, "path": wanted}
            moved.append(img)
        if moved != rec.images:
            await state.set_images(rec.id, moved)
