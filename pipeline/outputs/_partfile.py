"""One download's temporary ``.part`` file, and the helpers that clean ``images/`` up.

A ``PartFile`` holds the body in memory until a spill, creates the file on the first
write (``O_CREAT | O_EXCL | O_NOFOLLOW`` under a random name, relative to a descriptor
of ``images/``), and renames it into place once the image is checked. ``spill`` and
``finish`` block: run them in a worker thread, one call each. ``abandon`` cleans up
after a failure with a few syscalls and never raises.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
from collections.abc import Callable

from pipeline.outputs._imagecheck import image_size

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class PartFile:
    """The temp file ``name`` in the directory ``open_dir()`` returns a descriptor of."""

    __slots__ = ("_open_dir", "created", "dir_fd", "fd", "held", "held_bytes", "name")

    def __init__(self, name: str, open_dir: Callable[[], int]) -> None:
        self.name = name
        self._open_dir = open_dir
        self.dir_fd: int | None = None
        self.fd: int | None = None
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

    def spill(self) -> None:
        """Write the held bytes out, creating the file first. Blocking."""
        if self.fd is None:
            self.dir_fd = self._open_dir()
            self.fd = os.open(self.name, _NEW_FILE_FLAGS, 0o644, dir_fd=self.dir_fd)
            # Held while the file is ours: a sweep by another process on the same folder
            # leaves it alone (the kernel drops the lock when this process dies).
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            self.created = True
        data = memoryview(b"".join(self.held))
        self.held.clear()
        self.held_bytes = 0
        while data:
            data = data[os.write(self.fd, data) :]

    def finish(self, final: str, fmt: str) -> tuple[int, int]:
        """Read the header (width and height, from memory when nothing was spilled yet),
        write the rest and rename the file to ``final``, replacing a symlink there, never
        following it. Blocking. Raises ``DownloadError`` (not an image) or ``OSError``."""
        if self.fd is None:
            size = image_size(io.BytesIO(b"".join(self.held)), fmt)
            self.spill()
        else:
            self.spill()
            with open(os.dup(self.fd), "rb") as f:  # Pillow reads it from the start
                size = image_size(f, fmt)
        assert self.fd is not None
        assert self.dir_fd is not None
        os.close(self.fd)
        self.fd = None
        os.replace(self.name, final, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        self.created = False
        os.close(self.dir_fd)
        self.dir_fd = None
        return size

    def abandon(self) -> None:
        """Drop what is held, close the files and unlink the temp file if it is ours."""
        self.held.clear()
        self.held_bytes = 0
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.dir_fd is not None:
            if self.created:
                discard_entry(self.dir_fd, self.name)
                self.created = False
            os.close(self.dir_fd)
            self.dir_fd = None


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
