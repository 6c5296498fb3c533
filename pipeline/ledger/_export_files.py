"""What the export's formats share: a sample, its record as Arrow data, files renamed into
place, shards that roll.

A :class:`Sample` is one image with its metadata record. Every file of an export is
written under a hidden temporary name beside its final one (``.NAME.part``) and renamed
only once complete (:class:`AtomicFile`), so a crash never leaves a half-written file
under its final name. :class:`Shards` starts a new shard when the next sample would take
the open one past its sample count or its size.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pyarrow as pa  # type: ignore[import-untyped]

from pipeline.errors import UsageError

# The metadata record of an image, in order (the Parquet columns, the JSON keys).
FIELDS = (
    "file_name",
    "job_id",
    "prompt_id",
    "prompt",
    "provider",
    "model",
    "params",
    "variant",
    "sha256",
    "width",
    "height",
    "cost_usd",
    "credits",
)
NESTED = ("params", "variant")  # JSON objects; JSON text in the tabular formats
# Each field's type as a column ("string", "int64" or "double"; params and variant as text).
_NUMERIC = {"width": "int64", "height": "int64", "cost_usd": "double", "credits": "double"}
KINDS = {name: _NUMERIC.get(name, "string") for name in FIELDS}
_DTYPES = {"string": "string", "int64": "int64", "double": "float64"}
# How ``datasets`` describes the image and these columns (``Features.to_dict()``);
# ``load_dataset`` reads it from a Parquet file's schema metadata under "huggingface", so
# ``image`` loads as an Image feature.
HF_FEATURES = json.dumps(
    {
        "info": {
            "features": {
                "image": {"_type": "Image"},
                **{n: {"dtype": _DTYPES[k], "_type": "Value"} for n, k in KINDS.items()},
            }
        }
    }
)


# The record as Arrow data, after the image (the Parquet columns), every column nullable.
# Arrays are built from their buffers: pyarrow's conversion of Python objects (pa.array,
# from_pylist) would first import pandas where it is installed, seconds and some 30 MB.
_ARROW = {"string": pa.string(), "int64": pa.int64(), "double": pa.float64()}
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMA = pa.schema([("image", IMAGE), *((name, _ARROW[kind]) for name, kind in KINDS.items())])


def arrow_image(data: bytes) -> Any:
    """``data`` as a binary array of one value, copied into Arrow memory."""
    buffer = pa.allocate_buffer(len(data))
    pa.FixedSizeBufferWriter(buffer).write(data)
    return pa.Array.from_buffers(pa.binary(), 1, [None, _buffer("i", [0, len(data)]), buffer])


def arrow_table(images: list[Any], columns: list[list[Any]]) -> Any:
    """Rows of ``SCHEMA``: the ``images`` (from ``arrow_image``, left where they are),
    then a list of values (None: null) per column, the images' paths first."""
    paths = _column("string", columns[0])
    parts = [
        pa.StructArray.from_arrays([image, paths.slice(i, 1)], fields=list(IMAGE))
        for i, image in enumerate(images)
    ]
    fields = [_column(kind, v) for kind, v in zip(KINDS.values(), columns[1:], strict=True)]
    return pa.Table.from_arrays([pa.chunked_array(parts, type=IMAGE), *fields], schema=SCHEMA)


def _column(kind: str, values: list[Any]) -> Any:
    valid = bytearray(-(-len(values) // 8))
    for i, value in enumerate(values):
        if value is not None:
            valid[i // 8] |= 1 << i % 8
    if kind == "string":
        data = [b"" if v is None else str(v).encode() for v in values]
        rest = [_buffer("i", accumulate(map(len, data), initial=0)), pa.py_buffer(b"".join(data))]
    elif kind == "int64":
        rest = [_buffer("q", (0 if v is None else int(v) for v in values))]
    else:
        rest = [_buffer("d", (0.0 if v is None else float(v) for v in values))]
    buffers = [pa.py_buffer(valid), *rest]
    return pa.Array.from_buffers(_ARROW[kind], len(values), buffers, values.count(None))


def _buffer(code: str, values: Any) -> Any:
    return pa.py_buffer(array(code, values))


@dataclass(frozen=True, slots=True)
class Sample:
    """One verified image and its metadata record (``FIELDS``, JSON-ready).

    ``file_name`` is the image's name in the batch's output; ``key`` its dot-free
    WebDataset key; ``ext`` its extension (``png``, ``jpg``, ``webp``); ``mtime`` when
    its job completed (seconds since the epoch; 0 when unknown)."""

    key: str
    file_name: str
    ext: str
    data: bytes
    record: dict[str, Any]
    mtime: int = 0

    def flat(self) -> dict[str, Any]:
        """The record with ``params`` and ``variant`` as JSON text (one schema for every
        row, whatever axes and variables each job has)."""
        return {k: (dump_json(v) if k in NESTED else v) for k, v in self.record.items()}


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class AtomicFile:
    """``folder/name``, written as ``folder/.name.part`` and renamed when committed.

    ``file`` is the temporary file, created here (never over an existing one); a writer
    may as well write ``temp`` by a handle of its own, closed before the commit."""

    __slots__ = ("file", "final", "temp")

    def __init__(self, folder: Path, name: str) -> None:
        self.final = folder / name
        self.temp = folder / f".{name}.part"
        self.file: BinaryIO = open(self.temp, "xb")  # noqa: SIM115 (closed by commit/abort)

    def __repr__(self) -> str:
        return f"AtomicFile({str(self.final)!r})"

    def commit(self, *, sync: bool = True) -> int:
        """Close and rename into place (after an fsync when ``sync``); the file's size.
        Raises ``UsageError`` when the final name is taken (never replaced)."""
        self.file.flush()
        if sync:
            os.fsync(self.file.fileno())  # the file's data, by whichever handle written
        size = os.fstat(self.file.fileno()).st_size
        self.file.close()
        if os.path.lexists(self.final):
            self.abort()
            raise UsageError(f"{self.final}: already in the export (two images of that name)")
        os.replace(self.temp, self.final)
        return size

    def abort(self) -> None:
        """Close and remove the temporary file. Never raises."""
        with suppress(OSError):
            self.file.close()
        with suppress(OSError):
            self.temp.unlink()


class Writer(Protocol):
    """One format's writer: samples in, then ``finish`` (or ``abort`` on failure)."""

    def add(self, sample: Sample) -> None: ...

    def finish(self) -> tuple[int, int]:
        """Complete the export: the files written and their bytes."""
        ...

    def abort(self) -> None:
        """Remove everything written (temporary files included). Never raises."""
        ...


class Shard(Protocol):
    """One open shard file."""

    @property
    def samples(self) -> int: ...

    def size_after(self, sample: Sample) -> int:
        """The shard's size once ``sample`` is in and the shard is closed."""
        ...

    def add(self, sample: Sample) -> None: ...

    def close(self) -> int:
        """Complete the shard under its final name; its size in bytes."""
        ...

    def abort(self) -> None: ...


class Shards:
    """A :class:`Writer` cutting samples into shards ``open_shard(0)``, ``open_shard(1)``,
    ... of at most ``max_samples`` samples and ``max_bytes`` bytes each (a sample larger
    than ``max_bytes`` gets a shard of its own). ``name(i)`` is shard ``i``'s final path.
    """

    def __init__(
        self,
        open_shard: Callable[[int], Shard],
        name: Callable[[int], Path],
        *,
        max_samples: int,
        max_bytes: int,
    ) -> None:
        self._open = open_shard
        self._name = name
        self._max_samples = max_samples
        self._max_bytes = max_bytes
        self._shard: Shard | None = None
        self._closed = 0
        self._bytes = 0

    def __repr__(self) -> str:
        return f"Shards(closed={self._closed}, bytes={self._bytes})"

    def add(self, sample: Sample) -> None:
        shard = self._shard
        if shard is not None and (
            shard.samples >= self._max_samples or shard.size_after(sample) > self._max_bytes
        ):
            self._close()
            shard = None
        if shard is None:
            shard = self._shard = self._open(self._closed)
        shard.add(sample)

    def _close(self) -> None:
        assert self._shard is not None
        shard, self._shard = self._shard, None
        try:
            self._bytes += shard.close()
        except BaseException:
            shard.abort()  # (its temporary file; abort never raises)
            raise
        self._closed += 1

    def finish(self) -> tuple[int, int]:
        if self._shard is not None:
            self._close()
        return self._closed, self._bytes

    def abort(self) -> None:
        if self._shard is not None:
            self._shard.abort()
            self._shard = None
        for i in range(self._closed):
            with suppress(OSError):
                self._name(i).unlink()
