"""The export's three formats, each a writer of :class:`~._export_files.Sample` objects.

- :class:`ImageFolder`: ``train/<file_name>`` per image and ``train/metadata.jsonl``
  (written last: an export without it never finished);
- :class:`TarShard`: one WebDataset shard, ``<key>.<ext>`` and ``<key>.json`` per sample;
- :class:`ParquetShard`: one Parquet file (written by pyarrow), a row per sample, the
  image as the struct ``{bytes, path}`` and the features ``datasets`` should read in the
  schema metadata.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from contextlib import suppress
from functools import cache
from pathlib import Path
from typing import Any, Final

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from pipeline.errors import UsageError
from pipeline.ledger._export_files import (
    HF_FEATURES,
    KINDS,
    SCHEMA,
    AtomicFile,
    Sample,
    arrow_image,
    arrow_table,
    dump_json,
)

TRAIN = "train"
METADATA = "metadata.jsonl"
_TAR_FORMAT: Final = tarfile.PAX_FORMAT  # names of any length (job ids can be long)
_TAR_ENCODING = "utf-8"
_TAR_ERRORS = "surrogateescape"


def tar_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def parquet_name(index: int) -> str:
    return f"data-{index:05d}.parquet"


class ImageFolder:
    """``DEST/train/``: the images under their names in the batch, and metadata.jsonl."""

    def __init__(self, dest: Path) -> None:
        self._dir = dest / TRAIN
        self._dir.mkdir()
        try:
            self._metadata = AtomicFile(self._dir, METADATA)
        except BaseException:
            self._dir.rmdir()
            raise
        self._files = 0
        self._bytes = 0

    def __repr__(self) -> str:
        return f"ImageFolder({str(self._dir)!r}, files={self._files})"

    def add(self, sample: Sample) -> None:
        image = AtomicFile(self._dir, sample.file_name)
        try:
            image.file.write(sample.data)
            # No fsync per image (100k of them would dominate the export); metadata.jsonl,
            # renamed last, is synced.
            self._bytes += image.commit(sync=False)
        except BaseException:
            image.abort()
            raise
        self._files += 1
        self._metadata.file.write((dump_json(sample.flat()) + "\n").encode())

    def finish(self) -> tuple[int, int]:
        self._bytes += self._metadata.commit()
        return self._files + 1, self._bytes

    def abort(self) -> None:
        self._metadata.abort()
        shutil.rmtree(self._dir, ignore_errors=True)


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    return info


class TarShard:
    """``DEST/shard-NNNNNN.tar``: per sample ``<key>.<ext>`` (the image as stored) and
    ``<key>.json`` (its record, with the key)."""

    def __init__(self, dest: Path, index: int) -> None:
        self._file = AtomicFile(dest, tar_name(index))
        self._tar = tarfile.open(  # noqa: SIM115 (closed by close/abort)
            fileobj=self._file.file,
            mode="w",
            format=_TAR_FORMAT,
            encoding=_TAR_ENCODING,
            errors=_TAR_ERRORS,
        )
        self._samples = 0
        self._next: tuple[Sample, list[tuple[tarfile.TarInfo, bytes]], int] | None = None

    def __repr__(self) -> str:
        return f"TarShard({str(self._file.final)!r}, samples={self._samples})"

    @property
    def samples(self) -> int:
        return self._samples

    def _members(self, sample: Sample) -> tuple[list[tuple[tarfile.TarInfo, bytes]], int]:
        """The sample's two members and the bytes they take in the tar (headers and
        padding included); kept for the ``add`` that follows ``size_after``."""
        if self._next is not None and self._next[0] is sample:
            return self._next[1], self._next[2]
        if "~" in sample.file_name:  # the key rule (. -> ~) would not keep keys unique
            raise UsageError(f"{sample.file_name}: '~' in an image name (job ids have none)")
        text = json.dumps({"key": sample.key, **sample.record}, ensure_ascii=False).encode()
        members = [
            (_member(f"{sample.key}.{sample.ext}", len(sample.data), sample.mtime), sample.data),
            (_member(f"{sample.key}.json", len(text), sample.mtime), text),
        ]
        size = sum(
            len(info.tobuf(_TAR_FORMAT, _TAR_ENCODING, _TAR_ERRORS)) + _blocks(len(data))
            for info, data in members
        )
        self._next = (sample, members, size)
        return members, size

    def size_after(self, sample: Sample) -> int:
        # tarfile ends an archive with two zero blocks, padded to a whole record.
        _, size = self._members(sample)
        end = self._tar.offset + size + 2 * tarfile.BLOCKSIZE
        return -(-end // tarfile.RECORDSIZE) * tarfile.RECORDSIZE

    def add(self, sample: Sample) -> None:
        members, _ = self._members(sample)
        for info, data in members:
            self._tar.addfile(info, io.BytesIO(data))
        self._next = None
        self._samples += 1

    def close(self) -> int:
        self._tar.close()  # the end blocks; the file itself stays open for the commit
        return self._file.commit()

    def abort(self) -> None:
        self._file.abort()


def _blocks(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


# Parquet (columns: ``SCHEMA``): row groups of at most GROUP_ROWS rows or about GROUP_BYTES
# of images, pages of about PAGE_BYTES; no dictionary, compression (images are compressed)
# or statistics, so every byte follows from the values. The Arrow schema is not stored (the
# Parquet schema says all); the features are key-value metadata, the schema's to readers.
GROUP_ROWS = 100
GROUP_BYTES = 64 * 1024 * 1024
PAGE_BYTES = 1024 * 1024
_OPTIONS: Final = {
    "use_dictionary": False,
    "compression": "none",
    "write_statistics": False,
    "store_schema": False,
    "data_page_size": PAGE_BYTES,
}
# The bound. A page adds to its values a header (at most ~36 bytes) and its levels (a
# 4-byte length, at most 3 bytes per 8 levels and a few at the ends): at most _PAGE bytes
# and a byte per row. A page holds a value at least, any two in a row over PAGE_BYTES. The
# footer is measured (``_footer``) where its integers are short; each can take 9 bytes
# more: at most _CHUNK_INTS of them a column chunk, _GROUP_INTS a row group, _FILE_INTS.
_LEAVES = 2 + len(KINDS)  # image.bytes, image.path, the fields
_PAGE = 60
_CHUNK_INTS, _GROUP_INTS, _FILE_INTS = 16, 6, 4


def _parquet_writer(sink: Any) -> Any:
    writer = pq.ParquetWriter(sink, SCHEMA, **_OPTIONS)
    writer.add_key_value_metadata({"huggingface": HF_FEATURES})
    return writer


@cache
def _footer() -> tuple[int, int]:
    """The bytes after the data of a file without rows (footer, its length, the magic),
    and the most a row group adds to the footer: measured on files in memory."""

    def footer(*values: Any) -> int:
        sink = pa.BufferOutputStream()
        writer = _parquet_writer(sink)
        if values:
            writer.write_table(arrow_table([arrow_image(b"x")], [["x"], *([v] for v in values)]))
        writer.close()
        return int(pq.read_metadata(pa.BufferReader(sink.getvalue())).serialized_size)

    empty = footer()
    full = footer(*("x" if kind == "string" else 1 for kind in KINDS.values()))
    return empty + 8, max(full, footer(*[None] * len(KINDS))) - empty


def _varint(n: int) -> int:
    return max(1, -(-n.bit_length() // 7))


def _row(sample: Sample) -> tuple[list[Any], list[int]]:
    """The sample's path and field values, and the bytes of each of its values (as PLAIN
    encodes them: a length and UTF-8, or 8 bytes; nothing for a null), image first."""
    record = sample.flat()
    values = [sample.file_name, *(record[k] for k in KINDS)]
    sizes = [4 + len(sample.data)]
    for value, kind in zip(values, ("string", *KINDS.values()), strict=True):
        sizes.append(
            0 if value is None else 8 if kind != "string" else 4 + len(str(value).encode())
        )
    return values, sizes


class ParquetShard:
    """``DEST/data-NNNNN.parquet``: a row per sample. The open row group waits, its images
    in Arrow memory (each copied as it comes, so the caller's can go), and is written when
    ``group_rows`` are in or its images reach ``group_bytes``: a shard holds one at most."""

    def __init__(
        self,
        dest: Path,
        index: int,
        *,
        group_rows: int = GROUP_ROWS,
        group_bytes: int = GROUP_BYTES,
    ) -> None:
        self._group_rows = group_rows
        self._group_bytes = group_bytes
        self._file = AtomicFile(dest, parquet_name(index))
        self._sink: Any = None
        self._writer: Any = None
        try:  # pyarrow writes the temporary file by a (native) handle of its own
            self._sink = pa.OSFile(str(self._file.temp), "wb")
            self._writer = _parquet_writer(self._sink)
        except BaseException:
            self.abort()
            raise
        self._written = 4  # the leading magic; after a row group, the file's size
        self._groups = 0
        self._images: list[Any] = []  # the open row group's
        self._columns: list[list[Any]] = [[] for _ in range(_LEAVES - 1)]  # and its values
        self._values = [0] * _LEAVES  # the bytes of its values (as written), per column
        self._image_bytes = 0
        self.samples = 0

    def __repr__(self) -> str:
        return f"ParquetShard({str(self._file.final)!r}, rows={self.samples})"

    def size_after(self, sample: Sample) -> int:
        """At least the shard's size once ``sample`` is in and the shard is closed."""
        rows = len(self._images) + 1
        known = self._written
        for held, size in zip(self._values, _row(sample)[1], strict=True):
            pages = min(rows, 1 + 2 * (held + size) // PAGE_BYTES)
            known += pages * _PAGE + rows + held + size
        end, group = _footer()
        known += end + (self._groups + 1) * group
        ints = (self._groups + 1) * (_LEAVES * _CHUNK_INTS + _GROUP_INTS) + _FILE_INTS
        grow = 9  # bytes more per integer; each pass is a bound still, and tighter
        for _ in range(2):
            grow = _varint(2 * (known + ints * grow)) - 1  # zigzag: twice the value
        return known + ints * grow

    def add(self, sample: Sample) -> None:
        values, sizes = _row(sample)
        self._images.append(arrow_image(sample.data))
        for column, value in zip(self._columns, values, strict=True):
            column.append(value)
        self._values = [held + size for held, size in zip(self._values, sizes, strict=True)]
        self._image_bytes += len(sample.data)
        self.samples += 1
        if len(self._images) >= self._group_rows or self._image_bytes >= self._group_bytes:
            self._write_group()

    def _write_group(self) -> None:
        table = arrow_table(self._images, self._columns)
        self._writer.write_table(table, row_group_size=len(self._images))
        self._images.clear()
        for column in self._columns:
            column.clear()
        self._values = [0] * _LEAVES
        self._image_bytes = 0
        self._groups += 1
        self._written = int(self._sink.tell())

    def close(self) -> int:
        try:
            if self._images:
                self._write_group()
            self._end()
            self._sink.close()
        except BaseException:
            self.abort()
            raise
        return self._file.commit()

    def _end(self) -> None:
        """Write the footer, once: pyarrow's writer would try again when collected."""
        try:
            self._writer.close()
        finally:
            self._writer.is_open = False

    def abort(self) -> None:
        self._images = []
        with suppress(Exception):
            if self._writer is not None:
                self._end()
        with suppress(Exception):
            if self._sink is not None:
                self._sink.close()
        self._file.abort()
