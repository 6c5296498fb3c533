"""One run at a time on a local state file: an exclusive ``flock`` beside the database.

A second ``pipeline run`` on the same batch (a cron job that starts while yesterday's
still runs, a second terminal) would submit the same pending jobs again: paid twice. So
a run on a sqlite state holds an exclusive lock on ``<state>.lock`` for its whole life,
and a run that finds it held stops before anything is sent, naming the holder (host, pid,
since when) from the lock file.

The kernel drops a ``flock`` when its holder's process ends, however it ends (kill -9
included): a dead holder never blocks the batch, and its stale details are overwritten by
the next holder. (``flock`` is per host: a state file on a network share shared by several
hosts needs a PostgreSQL state instead, see the README's "Scale out".)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path

from pipeline.clock import utcnow
from pipeline.errors import UsageError


class BatchInUse(UsageError):
    """Another process is running this batch (on this state)."""

    def __init__(self, state: str, host: str, pid: int | None, since: str) -> None:
        self.host = host
        self.pid = pid
        self.since = since
        who = f"pid {pid} on {host}" if pid is not None else f"a process on {host}"
        super().__init__(
            f"{state}: the batch is in use by {who} since {since}; wait for that run to "
            "finish (or stop it), then run again"
        )


class StateLock:
    """The held lock (release with ``release``)."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def acquire(state: Path) -> StateLock:
    """Take the lock of the state at ``state`` (blocking I/O, no waiting). Raises
    ``BatchInUse`` when another process holds it, ``OSError`` when it cannot be made."""
    path = state.with_name(state.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        os.close(fd)
        pid = holder.get("pid")
        raise BatchInUse(
            str(state),
            str(holder.get("host", "?")),
            pid if isinstance(pid, int) else None,
            str(holder.get("since", "an unknown time")),
        ) from None
    except BaseException:
        os.close(fd)
        raise
    info = {"host": socket.gethostname(), "pid": os.getpid(), "since": utcnow()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return StateLock(path, fd)


def _read(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
