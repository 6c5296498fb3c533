"""One image body between the download and the upload: in memory, then in a nameless file.

The fetcher hands the body over chunk by chunk (``BodySink``); up to ``spill_bytes`` of it
is held in memory, and each time that much has arrived it is written to an anonymous
temporary file (``tempfile.TemporaryFile``: ``O_TMPFILE``, or unlinked at creation), so a
body of any size costs at most ``spill_bytes`` of memory while it streams, and a killed
process leaves no file behind. Once the body is checked it is read back for the upload:
whole for a single put, or a part at a time for a multipart upload.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from typing import BinaryIO

from pipeline import _threads
from pipeline.outputs._imagecheck import image_size


class SpilledBody:
    """A ``BodySink`` that spills to an anonymous file. The blocking methods (``read*``,
    ``dimensions`` once spilled) run in worker threads; ``close`` never raises."""

    __slots__ = ("_file", "_held", "_held_bytes", "spill_bytes")

    def __init__(self, spill_bytes: int) -> None:
        self.spill_bytes = spill_bytes
        self._file: BinaryIO | None = None
        self._held: list[bytes] = []
        self._held_bytes = 0

    def __repr__(self) -> str:
        return f"SpilledBody(held={self._held_bytes}, spilled={self._file is not None})"

    @property
    def spilled(self) -> bool:
        """Whether part of the body is in the temporary file."""
        return self._file is not None

    def hold(self, chunk: bytes) -> int:
        self._held.append(chunk)
        self._held_bytes += len(chunk)
        return self._held_bytes

    async def spill(self) -> None:
        await _threads.run_sync(self._write_held)

    def _write_held(self) -> None:
        if self._file is None:
            # Kept open across calls; ``close`` closes it.
            self._file = tempfile.TemporaryFile(prefix="pipeline-image-")  # noqa: SIM115
        self._file.write(b"".join(self._held))
        self._held.clear()
        self._held_bytes = 0

    async def dimensions(self, fmt: str) -> tuple[int, int]:
        """Width and height from the header (``image_size``; raises ``DownloadError``).
        Read from memory when nothing was spilled, else from the file, in a thread."""
        if self._file is None:
            return image_size(io.BytesIO(b"".join(self._held)), fmt)
        return await _threads.run_sync(self._file_dimensions, fmt)

    def _file_dimensions(self, fmt: str) -> tuple[int, int]:
        self._write_held()
        assert self._file is not None
        self._file.seek(0)
        return image_size(self._file, fmt)

    async def read_all(self) -> bytes:
        """The whole body (for a single put)."""
        if self._file is None:
            return b"".join(self._held)
        return await _threads.run_sync(self._read_file)

    def _read_file(self) -> bytes:
        self._write_held()
        assert self._file is not None
        self._file.seek(0)
        return self._file.read()

    async def rewind(self) -> None:
        """Start reading parts (``read``) from the beginning of the body."""
        await _threads.run_sync(self._rewind_file)

    def _rewind_file(self) -> None:
        self._write_held()
        assert self._file is not None
        self._file.seek(0)

    async def read(self, size: int) -> bytes:
        """The next ``size`` bytes of a spilled body (b"" at its end); after ``rewind``."""
        assert self._file is not None
        return await _threads.run_sync(self._file.read, size)

    def close(self) -> None:
        """Drop what is held and close (and so remove) the temporary file."""
        self._held.clear()
        self._held_bytes = 0
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
