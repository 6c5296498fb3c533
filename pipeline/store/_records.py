"""A job's row in the state table, and pausing the collector while building many.

A :class:`JobRecord` keeps its JSON columns as the text sqlite holds and decodes each one
the first time it is read: a resume of 100k completed jobs decodes hardly any (the file
check decodes the images of many rows at once, the ledger splices the stored text as it
is, and costs repeat: their decoded values are shared).
"""

from __future__ import annotations

import gc
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

# In the order of JobRecord's properties; sqlite counts the images, so totals need no
# decoding.
COLUMNS = (
    "id, seq, provider, fingerprint, status, remote_id, attempts, submitted_at, completed_at, "
    "latency_s, job, images, cost, usage, error, flags, duplicate_cost, "
    "json_array_length(images)"
)


def select_rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """Every job row as ``COLUMNS``, in ``seq`` order."""
    rows = conn.execute(f"SELECT {COLUMNS} FROM jobs").fetchall()
    # Sorted here, not by sqlite: its sorter copies each whole row (a 100k-job table
    # took 0.3 s more), while rows come almost in seq order, which Timsort merely checks.
    rows.sort(key=itemgetter(1))
    return rows


_UNSET: Any = object()
# Index of each JSON column in a row, and of its decoded value in a record's cache.
_JSON_COLUMNS = ("job", "images", "cost", "usage", "error", "flags", "duplicate_cost")
_FIRST_JSON = 10
# Columns whose texts repeat across rows (the same price, the same usage object): their
# decoded values are shared, so 100k rows cost a few parses, not 100k.
_SHARED = frozenset({2, 3, 4, 6})
_MEMO_SIZE = 4096
_memo: dict[str, Any] = {}


def _loads(text: str | None) -> Any:
    # Most rows hold these defaults; skipping the parser for them is most of a resume.
    if not text:
        return None
    if text == "[]":
        return []
    if text == "{}":
        return {}
    return json.loads(text)


def _loads_shared(text: str | None) -> Any:
    if not text:
        return None
    try:
        return _memo[text]
    except KeyError:
        if len(_memo) >= _MEMO_SIZE:
            _memo.clear()
        value = _memo[text] = json.loads(text)
        return value


@contextmanager
def gc_paused(*, promote: bool = False) -> Iterator[None]:
    """Pause the cyclic garbage collector while building many long-lived objects.

    With 100k jobs the heap holds millions of objects; building records or decoding
    their columns triggers full collections that rescan all of it and find no garbage
    (about a third of a resume's time). Only cycles wait longer to be freed.

    ``promote``: what was built lives on (for the whole run, say): it is moved to the
    collector's oldest generation on the way out, before the collector runs again.
    Otherwise the next young collections each scan all of it once more, for nothing;
    now only a full collection does. Garbage cycles made meanwhile wait for that full
    collection too, so promote once per run, not in a loop. Nothing is promoted while
    objects are frozen (``gc.freeze``): the unfreeze it takes would release them.
    """
    if not gc.isenabled():  # paused already (nested, or by another thread)
        yield
        return
    gc.disable()
    try:
        yield
        if promote and gc.get_freeze_count() == 0:
            gc.freeze()  # every tracked object to the permanent generation,
            gc.unfreeze()  # and back into the oldest one: no scan either way
    finally:
        gc.enable()


class JobRecord:
    """One row of the state table, as selected by ``COLUMNS`` (read-only).

    The scalar columns are properties; each JSON column is both its stored text
    (``images_json``, spliced as is into the ledger) and its value (``images``), decoded
    on first use and kept. Decoded values are shared (between reads, and between records
    holding the same text): treat them as read-only. A plain class with slots: a resume
    makes one per job, and a record that is never decoded holds nothing but its row.
    """

    __slots__ = ("_cache", "row")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row
        self._cache: list[Any] | None = None  # decoded JSON columns, once one is read

    def __repr__(self) -> str:
        return f"JobRecord(row={self.row!r})"

    def _json(self, k: int) -> Any:
        cache = self._cache
        if cache is None:
            cache = self._cache = [_UNSET] * len(_JSON_COLUMNS)
        value = cache[k]
        if value is _UNSET:
            text = self.row[_FIRST_JSON + k]
            value = cache[k] = _loads_shared(text) if k in _SHARED else _loads(text)
        return value

    # -- scalar columns ---------------------------------------------------------------

    @property
    def id(self) -> str:
        value: str = self.row[0]
        return value

    @property
    def seq(self) -> int:
        value: int = self.row[1]
        return value

    @property
    def provider(self) -> str:
        value: str = self.row[2]
        return value

    @property
    def fingerprint(self) -> str:
        value: str = self.row[3]
        return value

    @property
    def status(self) -> str:
        value: str = self.row[4]
        return value

    @property
    def remote_id(self) -> str | None:
        value: str | None = self.row[5]
        return value

    @property
    def attempts(self) -> int:
        value: int = self.row[6]
        return value

    @property
    def submitted_at(self) -> str | None:
        value: str | None = self.row[7]
        return value

    @property
    def completed_at(self) -> str | None:
        value: str | None = self.row[8]
        return value

    @property
    def latency_s(self) -> float | None:
        value: float | None = self.row[9]
        return value

    @property
    def image_count(self) -> int:
        """``len(self.images)``, counted by sqlite."""
        value: int = self.row[17]
        return value

    # -- JSON columns: stored text ----------------------------------------------------

    @property
    def job_json(self) -> str:
        value: str = self.row[10]
        return value

    @property
    def images_json(self) -> str:
        value: str = self.row[11]
        return value

    @property
    def cost_json(self) -> str | None:
        value: str | None = self.row[12] or None
        return value

    @property
    def usage_json(self) -> str:
        value: str = self.row[13]
        return value

    @property
    def error_json(self) -> str | None:
        value: str | None = self.row[14] or None
        return value

    @property
    def flags_json(self) -> str:
        value: str = self.row[15]
        return value

    @property
    def duplicate_cost_json(self) -> str | None:
        value: str | None = self.row[16] or None
        return value

    # -- JSON columns: decoded --------------------------------------------------------

    @property
    def job(self) -> dict[str, Any]:
        value: dict[str, Any] = self._json(0)
        return value

    @property
    def images(self) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = self._json(1)
        return value

    @property
    def cost(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._json(2)
        return value

    @property
    def usage(self) -> dict[str, Any]:
        value: dict[str, Any] = self._json(3)
        return value

    @property
    def error(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._json(4)
        return value

    @property
    def flags(self) -> list[str]:
        value: list[str] = self._json(5)
        return value

    @property
    def duplicate_cost(self) -> dict[str, Any] | None:
        """Estimated cost of submits that may have been charged twice (unknown outcomes)."""
        value: dict[str, Any] | None = self._json(6)
        return value
