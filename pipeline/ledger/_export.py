"""Dataset export (``pipeline export``): a batch's completed images, as a dataset.

:func:`export_batch` writes every image of the batch's completed jobs (superseded jobs
left out), in the batch's order, each with one metadata record::

    file_name, job_id, prompt_id, prompt, provider, model, params, variant,
    sha256, width, height, cost_usd, credits

``file_name`` is the image's name in the batch's ``images/``; ``params`` are the job's
resolved settings and ``variant`` its sweep axes and template variables.

Formats (DEST is the destination):

- ``imagefolder``: ``DEST/train/<file_name>`` and ``DEST/train/metadata.jsonl`` (a JSON
  object a line, ``file_name`` relative to ``train/``), which
  ``datasets.load_dataset("imagefolder", data_dir=DEST)`` loads as a ``train`` split.
- ``webdataset``: ``DEST/shard-000000.tar``, ``shard-000001.tar``, ..., each of at most
  ``shard_samples`` samples and ``shard_bytes`` bytes (a bigger sample gets a shard to
  itself); per sample ``<key>.<ext>`` (the image as stored) and ``<key>.json`` (its
  record, plus ``key``).
- ``parquet``: ``DEST/data-00000.parquet``, ..., cut by the same limits, a row per
  image: ``image``, the struct ``{bytes, path}`` (``path``: the file name), then the
  record's fields as columns (row groups of at most 100 rows or about 64 MiB of images).
  The schema metadata's ``huggingface`` entry makes ``load_dataset("parquet", ...)`` read
  ``image`` as an ``Image`` feature.

In the tabular formats (metadata.jsonl, Parquet) ``params`` and ``variant`` are JSON
text, so one schema fits every row whatever axes and variables each job has; the
WebDataset json holds them as objects.

**The key rule.** WebDataset cuts a member name at the first dot of its base name, and job
ids may contain dots. A key is the image's file stem (``<job id>-<k>``, ``k`` counting the
job's images from 1) with every ``.`` written ``~``: ``fox.v1--oil-2.png`` is the sample
``fox~v1--oil-2``. Job ids never contain ``~`` (the webdataset export refuses an image
name with one), so keys are as unique as the file names.

**Cost per image.** A job's recorded cost (``usd``, and ``credits`` where the provider
reports them, else null) divided evenly over its images; estimated duplicate charges of
a possibly repeated submit are not included.

**The destination** must not exist, or be an empty directory: an export is never mixed
with an earlier one (or anything else). Every file is written under a hidden temporary
name beside its final one and renamed when complete, so a crash never leaves a
half-written file under its final name (its leftovers make DEST non-empty: remove it and
export again). An export that fails removes what it wrote.

**Verification.** Each image is read through the batch's output (``Output.read_bytes``,
so an object-store output exports too) and its sha256 compared with the batch's record.

**Memory** does not grow with the batch beyond its state records (which ``status`` holds
too): images are read, checked and written one at a time, shards written as they fill,
and a Parquet file holds back only a row group's small columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.jobs import JobStatus
from pipeline.ledger._export_files import Sample, Shards, Writer
from pipeline.ledger._export_formats import (
    ImageFolder,
    ParquetShard,
    TarShard,
    parquet_name,
    tar_name,
)
from pipeline.outputs import Output, open_output
from pipeline.store import JobRecord, read_state, state_location

FORMATS = ("imagefolder", "webdataset", "parquet")
SHARD_SAMPLES = 10_000
SHARD_BYTES = 1_000_000_000
_EXTENSIONS = {"jpeg": "jpg"}  # an image format -> its usual extension, where they differ


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote: ``images`` samples in ``files`` files (the shards; for
    ``imagefolder`` the images and metadata.jsonl) of ``bytes`` bytes in all, under
    ``destination``."""

    format: str
    destination: str
    images: int
    files: int
    bytes: int


def export_batch(
    out: str,
    fmt: str,
    to: str,
    *,
    state: str | None = None,
    shard_samples: int = SHARD_SAMPLES,
    shard_bytes: int = SHARD_BYTES,
) -> ExportResult:
    """Write the completed images of the batch whose output is ``out`` to ``to`` as a
    ``fmt`` dataset (one of ``FORMATS``; the layouts are in this module's docstring).
    Blocking. ``state``: where the batch's state lives (a URL or path as ``--state``;
    default ``out/state.db``). ``shard_samples``/``shard_bytes`` cap a shard (webdataset
    and parquet).

    Raises ``UsageError``, having written nothing (or removed what it wrote), for an
    unknown format or a shard cap below 1; when there is no batch at ``out`` or it has no
    completed image; when ``to`` exists and is not an empty directory, or cannot be
    created or written; and, naming the file, when an image is missing or unreadable or
    its sha256 differs from the batch's record.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r} (use one of {', '.join(FORMATS)})")
    if shard_samples < 1 or shard_bytes < 1:
        raise UsageError(f"shard limits must be at least 1 (got {shard_samples}, {shard_bytes})")
    jobs = [r for r in read_state(state_location(state, out), out).records if _exported(r)]
    if not jobs:
        raise UsageError(f"{out}: nothing to export (the batch has no completed image)")
    dest = Path(to)
    created = _prepare(dest)
    writer: Writer | None = None
    images = 0
    try:
        writer = _writer(fmt, dest, shard_samples, shard_bytes)
        for sample in _samples(_released(jobs), open_output(out)):
            writer.add(sample)
            images += 1
            del sample  # before the next image is read: one image in memory, not two
        files, size = writer.finish()
    except BaseException as exc:
        if writer is not None:
            writer.abort()
        if created:
            with suppress(OSError):
                dest.rmdir()
        if isinstance(exc, OSError):  # reading is translated in _samples: this is DEST
            raise UsageError(f"{dest}: cannot write the export: {_reason(exc)}") from exc
        raise
    return ExportResult(fmt, str(dest), images, files, size)


def _exported(r: JobRecord) -> bool:
    return r.row.status == JobStatus.COMPLETED and not r.superseded and r.row.image_count > 0


def _released(jobs: list[JobRecord]) -> Iterator[JobRecord]:
    """``jobs`` in order, emptying the list: each record (and the JSON it decoded, which a
    record keeps) is let go once its images are written."""
    jobs.reverse()
    while jobs:
        yield jobs.pop()


def _prepare(dest: Path) -> bool:
    """Check that ``dest`` is new (then create it) or an empty directory; whether it was
    created."""
    try:
        if dest.is_dir():
            if next(dest.iterdir(), None) is not None:
                raise UsageError(
                    f"{dest}: not empty (an export goes to a new or empty directory,"
                    " never over an earlier one)"
                )
            return False
        if dest.exists() or dest.is_symlink():
            raise UsageError(f"{dest}: exists and is not a directory")
        dest.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"{dest}: cannot export there: {_reason(exc)}") from exc
    return True


def _writer(fmt: str, dest: Path, shard_samples: int, shard_bytes: int) -> Writer:
    if fmt == "imagefolder":
        return ImageFolder(dest)
    if fmt == "webdataset":
        return Shards(
            partial(TarShard, dest),
            lambda i: dest / tar_name(i),
            max_samples=shard_samples,
            max_bytes=shard_bytes,
        )
    return Shards(
        partial(ParquetShard, dest),
        lambda i: dest / parquet_name(i),
        max_samples=shard_samples,
        max_bytes=shard_bytes,
    )


def _samples(jobs: Iterable[JobRecord], output: Output) -> Iterator[Sample]:
    """Each image of ``jobs``, read and verified, with its record; one at a time."""
    for r in jobs:
        doc = r.job
        images = r.images
        usd, credits = _per_image(r.cost, len(images))
        mtime = _epoch(r.row.completed_at)
        for image in images:
            path = str(image["path"])
            where = f"{output.location}/{path}"
            data = _read(output, path, where)
            if hashlib.sha256(data).hexdigest() != image.get("sha256"):
                raise UsageError(
                    f"{where}: its sha256 differs from the batch's record"
                    " (the file changed after the run stored it)"
                )
            name = path.rpartition("/")[2]
            stem, dot, ext = name.rpartition(".")
            if not dot:
                fmt = str(image.get("format", ""))
                stem, ext = name, _EXTENSIONS.get(fmt, fmt)
            key = stem.replace(".", "~")
            record: dict[str, Any] = {  # in FIELDS order (the Parquet columns)
                "file_name": name,
                "job_id": r.id,
                "prompt_id": doc.get("prompt_id"),
                "prompt": doc.get("prompt"),
                "provider": r.provider,
                "model": doc.get("model"),
                "params": doc.get("params", {}),
                "variant": doc.get("variant", {}),
                "sha256": image["sha256"],
                "width": image.get("width"),
                "height": image.get("height"),
                "cost_usd": usd,
                "credits": credits,
            }
            yield Sample(key, name, ext, data, record, mtime)
            del data, record  # (see export_batch)


def _read(output: Output, path: str, where: str) -> bytes:
    try:
        return output.read_bytes(path)
    except FileNotFoundError as exc:
        raise UsageError(f"{where}: missing (the batch records it as completed)") from exc
    except OSError as exc:
        raise UsageError(f"{where}: cannot read it: {_reason(exc)}") from exc


def _per_image(cost: dict[str, Any] | None, images: int) -> tuple[float | None, float | None]:
    """The job's cost (USD, credits) divided over its ``images``; None where unknown."""
    usd = (cost or {}).get("usd")
    credits = (cost or {}).get("credits")
    return (
        None if usd is None else usd / images,
        None if credits is None else credits / images,
    )


def _epoch(at: str | None) -> int:
    """An ISO 8601 time as whole seconds since the epoch (UTC unless it says); 0 if none."""
    try:
        when = datetime.fromisoformat(at) if at else None
    except ValueError:
        return 0
    if when is None:
        return 0
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
