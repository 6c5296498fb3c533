"""Run state behind one protocol (:class:`RunStore`), chosen once from a URL.

``--state URL`` (or ``PIPELINE_STATE_URL``) names where a batch's state lives:

- ``sqlite:///PATH`` (``sqlite:////abs/path`` for an absolute one), or a plain path; one
  run at a time holds it (a second one stops, naming the holder);
- ``postgresql://user:pass@host:port/db`` (also ``postgres://``): a shared database, where
  any number of processes on any hosts work one batch together;
- nothing: ``DIR/state.db`` beside the images.

Nothing downstream branches on the backend: the engine, the ledger and ``status`` see a
:class:`RunStore` and a :class:`Snapshot` only. A database URL's password never appears in
a message (``StateLocation`` prints it as ``***``).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline._home import local_home
from pipeline.errors import StateError, UsageError
from pipeline.store._base import (
    BudgetRow,
    Counters,
    Fleet,
    RunStore,
    Snapshot,
    StateView,
    Summary,
)
from pipeline.store._lock import BatchInUse
from pipeline.store._records import (
    DoneRow,
    JobRecord,
    JobRow,
    TallyRow,
    image_sizes,
    spent,
    spent_texts,
    tally_records,
)

STATE_ENV = "PIPELINE_STATE_URL"
DEFAULT_STATE_NAME = "state.db"
_POSTGRES = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class StateLocation:
    """A parsed ``--state``: the backend, and where (a path for sqlite, a URL for
    postgres). ``str()`` is safe to print: a URL's password is masked."""

    scheme: str
    target: str = field(repr=False)

    def __str__(self) -> str:
        return redact_url(self.target) if self.scheme == "postgres" else self.target

    def __repr__(self) -> str:
        return f"StateLocation({self.scheme!r}, {str(self)!r})"


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def state_location(state: str | None, out: str) -> StateLocation:
    """Where the state of the batch whose output is ``out`` lives: ``state`` (a URL or a
    path), else ``$PIPELINE_STATE_URL``, else ``out/state.db``. Raises ``UsageError`` for
    a URL of a scheme no backend speaks."""
    given = state if state is not None else os.environ.get(STATE_ENV) or None
    if given is None:
        return StateLocation("sqlite", str(local_home(out) / DEFAULT_STATE_NAME))
    scheme, sep, rest = given.partition("://")
    if not sep:
        return StateLocation("sqlite", given)
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel, sqlite:////abs
        if not path:
            raise UsageError(f"--state {given!r}: no path after sqlite:///")
        return StateLocation("sqlite", path)
    if scheme in _POSTGRES:
        return StateLocation("postgres", given)
    raise UsageError(
        f"--state: unknown scheme {scheme + '://'!r} "
        "(use sqlite:///PATH, a path, or postgresql://user:pass@host:port/db)"
    )


async def open_store(location: StateLocation, *, name: str, output: str) -> RunStore:
    """Open (creating or upgrading it if needed) the state at ``location`` of the batch
    ``name`` writing to ``output``, for a run.

    Raises ``BatchInUse`` (a ``UsageError``) when another run holds a sqlite state,
    ``StateError`` for an unreachable or refusing database or a state of a newer schema,
    ``UsageError`` when a sqlite state cannot be opened (not a state database, a folder
    that cannot be created...)."""
    if location.scheme == "postgres":
        from pipeline.store._pg_conn import connect
        from pipeline.store._postgres import PostgresStore

        pg = await connect(location.target, str(location), name=name, output=output)
        return PostgresStore(pg)
    from pipeline.store._sqlite import SqliteStore

    try:
        return await SqliteStore.open(Path(location.target), exclusive=True)
    except (OSError, sqlite3.Error) as exc:
        raise UsageError(f"{location}: cannot open the batch state: {_reason(exc)}") from exc


def read_state(location: StateLocation, output: str) -> Snapshot:
    """The state at ``location`` of the batch writing to ``output``, as it is now (also
    while a run writes it).

    Raises ``UsageError`` when there is no batch state there, ``StateError`` when it
    cannot be read."""
    snapshot: Snapshot = _read(location, output, "read_snapshot")
    return snapshot


def read_summary(location: StateLocation, output: str) -> Summary:
    """The counts of that batch as they are now (``read_state`` without the records: a
    million jobs are counted by the database). Raises as ``read_state``."""
    summary: Summary = _read(location, output, "read_summary")
    return summary


def _read(location: StateLocation, output: str, reader: str) -> Any:
    """``reader`` of the backend's module (imported now: a sqlite reader never loads
    psycopg)."""
    if location.scheme == "postgres":
        from pipeline.store import _pg_conn

        try:
            return getattr(_pg_conn, reader)(location.target, str(location), output)
        except StateError as exc:
            raise UsageError(str(exc)) from exc
    path = Path(location.target)
    if not path.is_file():
        raise UsageError(f"{path.parent}: no batch here ({path.name} not found)")
    from pipeline.store import _sqlite_layout

    try:
        return getattr(_sqlite_layout, reader)(path)
    except sqlite3.Error as exc:
        raise UsageError(f"{path}: cannot read the batch state: {exc}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


__all__ = [
    "STATE_ENV",
    "BatchInUse",
    "BudgetRow",
    "Counters",
    "DoneRow",
    "Fleet",
    "JobRecord",
    "JobRow",
    "RunStore",
    "Snapshot",
    "StateLocation",
    "StateView",
    "Summary",
    "TallyRow",
    "image_sizes",
    "open_store",
    "read_state",
    "read_summary",
    "redact_url",
    "spent",
    "spent_texts",
    "state_location",
    "tally_records",
]
