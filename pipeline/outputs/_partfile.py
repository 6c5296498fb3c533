"""One download's temporary ``.part`` file, and the helpers that clean ``images/`` up.

A ``PartFile`` is the fetcher's body sink. It holds the body in memory up to
``spill_bytes``; past that, the body goes to disk through aiofiles, in writes of at least
``spill_bytes`` (2.25 MiB by default), and once the image is checked the file is renamed
into place. Two paths, by size:

- *Small* (the whole body held, never spilled): one blocking call creates the file,
  writes the held chunks with ``writev`` (never joined into one copy), closes and renames
  it, reading the header from the first chunks. It runs batched with the same
  calls of concurrent downloads (``pipeline._batching``): a share of one thread hop per
  image. aiofiles would cost a hop per call (open, write, close, then the rename): at
  zero latency with tiny images those hops were most of the download's cost, which is
  why this path keeps its batch.
- *Large*: the first spill opens the file with ``aiofiles.open(..., opener=...)``, each
  spill is one ``writelines`` of the held chunks (no join, no copy), the last one and the
  close go through aiofiles too; then one batched call reads the header back and renames.
  A few hops more than a batch would take (open, the tail, close), against megabytes of
  writing each: they do not show.

The opener keeps the directory discipline: the file is created relative to a descriptor
of ``images/`` with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a random name, and locked
(``flock``) while it is ours, so a sweep by another process sharing the folder leaves it
alone; the lock is held on a descriptor of our own until the rename is done.

aiofiles runs its calls on anyio's worker threads through ``pipeline._threads`` (its
``loop`` argument, see ``_ANYIO``), not on asyncio's default executor: so they are
counted like every other thread call (a virtual clock never moves while one runs), and a
cancelled write still ends before the task goes on to close and unlink its file (an
executor future would let the write run on against a closed, maybe reused, descriptor).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar, cast

import aiofiles
import anyio
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from pipeline import _threads
from pipeline.errors import DownloadError
from pipeline.outputs._imagecheck import image_size

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_HEADER_BYTES = 256 * 1024  # of the body, enough for any header
_IOV_MAX = 1024  # buffers per writev (Linux's IOV_MAX)
_NEW_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

T = TypeVar("T")
Batch = Callable[[Callable[[], Any]], Awaitable[Any]]


class _AnyioThreads:
    """What aiofiles takes for its event loop: it only ever calls ``run_in_executor`` and
    awaits the result, which here is a counted call on anyio's worker threads."""

    __slots__ = ()

    def run_in_executor(self, executor: object, fn: Callable[[], T]) -> Awaitable[T]:
        return _threads.run_sync(fn)


_ANYIO = cast("asyncio.AbstractEventLoop", _AnyioThreads())


class PartFile:
    """The temp file ``name`` in the directory ``open_dir()`` returns a descriptor of.

    ``finish`` hands its blocking last step to ``batch`` (``Batcher.call``)."""

    __slots__ = (
        "_batch",
        "_open_dir",
        "created",
        "dir_fd",
        "fd",
        "file",
        "held",
        "held_bytes",
        "name",
        "spill_bytes",
    )

    def __init__(
        self, name: str, open_dir: Callable[[], int], batch: Batch, spill_bytes: int
    ) -> None:
        self.name = name
        self._open_dir = open_dir
        self._batch = batch
        self.spill_bytes = spill_bytes
        self.dir_fd: int | None = None
        self.fd: int | None = None  # ours: holds the lock until the rename
        self.file: AsyncBufferedIOBase | None = None  # aiofiles' (large bodies only)
        self.created = False  # a file of ours exists under ``name``
        self.held: list[bytes] = []
        self.held_bytes = 0

    def __repr__(self) -> str:
        return f"PartFile({self.name!r}, held={self.held_bytes}, created={self.created})"

    def hold(self, chunk: bytes) -> int:
        """Keep ``chunk`` for the next write; returns the bytes now held."""
        self.held.append(chunk)
        self.held_bytes += len(chunk)
        return self.held_bytes

    def _take(self) -> list[bytes]:
        held = self.held
        self.held = []
        self.held_bytes = 0
        return held

    async def spill(self) -> None:
        """Write the held bytes out (one aiofiles call), opening the file first."""
        if self.file is None:
            self.file = await aiofiles.open(self.name, "xb", opener=self._opener, loop=_ANYIO)
        await self.file.writelines(self._take())

    async def finish(self, final: str, fmt: str) -> tuple[int, int]:
        """Write the rest, read the header (width and height) and rename the file to
        ``final``, replacing a symlink there, never following it. Raises
        ``DownloadError`` (not an image) or ``OSError``."""
        last = self._store_held
        if self.file is not None:
            if self.held:
                await self.file.writelines(self._take())
            file, self.file = self.file, None
            await file.close()  # flushes; the lock stays with ``self.fd``
            last = self._rename_spilled
        size: tuple[int, int] = await self._batch(partial(last, final, fmt))
        return size

    async def abandon(self) -> None:
        """Drop what is held, close the files and unlink the temp file if it is ours.
        Never raises; finishes even in a cancelled task."""
        self.held.clear()
        self.held_bytes = 0
        if self.file is not None:
            file, self.file = self.file, None
            with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
                await file.close()
        self._release()

    # -- blocking: the opener, and the two last steps (in a worker thread) ----------------

    def _opener(self, path: str, flags: int) -> int:
        """aiofiles' opener: creates the file and returns a second descriptor of it, for
        aiofiles to close (``open``'s own flags are ignored: ours are stricter)."""
        self._create()
        assert self.fd is not None
        return os.dup(self.fd)

    def _create(self) -> None:
        """Create and lock the temp file. Raises ``DownloadError`` (``images/`` is not a
        real directory) or ``OSError``."""
        self.dir_fd = self._open_dir()
        self.fd = os.open(self.name, _NEW_FILE_FLAGS, 0o644, dir_fd=self.dir_fd)
        self.created = True
        # Held while the file is ours: a sweep by another process on the same folder
        # leaves it alone (the kernel drops the lock when this process dies).
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def _store_held(self, final: str, fmt: str) -> tuple[int, int]:
        chunks = self._take()
        size = _held_image_size(chunks, fmt)
        self._create()
        assert self.fd is not None
        write_chunks(self.fd, chunks)
        self._rename(final)
        return size

    def _rename_spilled(self, final: str, fmt: str) -> tuple[int, int]:
        assert self.fd is not None
        with open(os.dup(self.fd), "rb") as f:  # Pillow reads it from the start
            size = image_size(f, fmt)
        self._rename(final)
        return size

    def _rename(self, final: str) -> None:
        assert self.dir_fd is not None
        os.replace(self.name, final, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        self.created = False
        self._release()

    def _release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.dir_fd is not None:
            if self.created:
                discard_entry(self.dir_fd, self.name)
                self.created = False
            os.close(self.dir_fd)
            self.dir_fd = None


def _held_image_size(chunks: list[bytes], fmt: str) -> tuple[int, int]:
    """The header read from the first chunks (a few hundred KiB cover every header we
    accept), the whole body only if that is not enough: the body is never joined."""
    head: list[bytes] = []
    held = 0
    for chunk in chunks:
        if held >= _HEADER_BYTES:
            break
        head.append(chunk)
        held += len(chunk)
    try:
        return image_size(io.BytesIO(b"".join(head)), fmt)
    except DownloadError:
        if len(head) == len(chunks):
            raise
        return image_size(io.BytesIO(b"".join(chunks)), fmt)


def write_chunks(
    fd: int, chunks: list[bytes], writev: Callable[[int, list[memoryview]], int] = os.writev
) -> None:
    """Write ``chunks`` to ``fd`` with ``writev`` (up to ``IOV_MAX`` buffers a call),
    going on after a short write."""
    views = [memoryview(c) for c in chunks if c]
    start = 0
    while start < len(views):
        written = writev(fd, views[start : start + _IOV_MAX])
        while start < len(views) and written >= len(views[start]):
            written -= len(views[start])
            start += 1
        if written:
            views[start] = views[start][written:]


def sweep_parts(dir_fd: int) -> None:
    """Unlink leftover ``*.part`` entries (files or links; directories are left alone):
    those no live process holds (each writer keeps a lock on its own), so a process
    sharing the folder never loses a download in progress."""
    try:
        names = os.listdir(dir_fd)
    except OSError:
        return
    for name in names:
        if name.endswith(".part") and not _in_use(dir_fd, name):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)


def _in_use(dir_fd: int, name: str) -> bool:
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd
        )
    except OSError:
        return False  # a link or gone: nobody writes through it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def discard_entry(dir_fd: int, name: str) -> None:
    """Unlink ``name`` in the directory (the entry itself, never a link's target)."""
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)
