"""Run state behind one protocol (:class:`RunStore`), chosen once from a URL.

``--state URL`` (or ``PIPELINE_STATE_URL``) names where a batch's state lives:

- ``sqlite:///PATH`` (``sqlite:////abs/path`` for an absolute one), or a plain path;
- nothing: ``DIR/state.db`` beside the images.

Nothing downstream branches on the backend: the engine, the ledger and ``status`` see a
:class:`RunStore` and :class:`Snapshot` only.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.store._base import Counters, RunStore, Snapshot
from pipeline.store._records import JobRecord, JobRow, spent

STATE_ENV = "PIPELINE_STATE_URL"
DEFAULT_STATE_NAME = "state.db"


@dataclass(frozen=True, slots=True)
class StateLocation:
    """A parsed ``--state``: the backend's scheme and where (a path for sqlite)."""

    scheme: str
    target: str

    def __str__(self) -> str:
        return self.target


def state_location(state: str | None, out: str) -> StateLocation:
    """Where the state of the batch whose output is ``out`` lives: ``state`` (a URL or a
    path), else ``$PIPELINE_STATE_URL``, else ``out/state.db``. Raises ``UsageError`` for
    a URL of a scheme no backend speaks."""
    given = state if state is not None else os.environ.get(STATE_ENV) or None
    if given is None:
        return StateLocation("sqlite", str(Path(out) / DEFAULT_STATE_NAME))
    scheme, sep, rest = given.partition("://")
    if not sep:
        return StateLocation("sqlite", given)
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel, sqlite:////abs
        if not path:
            raise UsageError(f"--state {given!r}: no path after sqlite:///")
        return StateLocation("sqlite", path)
    raise UsageError(f"--state: unknown scheme {scheme + '://'!r} (use sqlite:///PATH or a path)")


async def open_store(location: StateLocation) -> RunStore:
    """Open (creating it if needed) the state at ``location`` for a run.

    Raises ``UsageError`` when it cannot be opened (not a state database, a folder that
    cannot be created...)."""
    from pipeline.store._sqlite import SqliteStore

    try:
        return await SqliteStore.open(Path(location.target))
    except (OSError, sqlite3.Error) as exc:
        raise UsageError(f"{location}: cannot open the batch state: {_reason(exc)}") from exc


def read_state(location: StateLocation) -> Snapshot:
    """The state at ``location`` as it is now (also while a run writes it).

    Raises ``UsageError`` when there is no batch state there, or it cannot be read."""
    from pipeline.store._sqlite import read_snapshot

    path = Path(location.target)
    if not path.is_file():
        raise UsageError(f"{path.parent}: no batch here ({path.name} not found)")
    try:
        return read_snapshot(path)
    except sqlite3.Error as exc:
        raise UsageError(f"{path}: cannot read the batch state: {exc}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


__all__ = [
    "STATE_ENV",
    "Counters",
    "JobRecord",
    "JobRow",
    "RunStore",
    "Snapshot",
    "StateLocation",
    "open_store",
    "read_state",
    "spent",
    "state_location",
]
