"""A job's row in the run state, as every backend hands it out.

A :class:`JobRecord` keeps its JSON columns as the text the store holds and decodes each
one the first time it is read: a resume of 100k completed jobs decodes hardly any (the
file check decodes the images of many rows at once, the ledger splices the stored text as
it is, and costs repeat: their decoded values are shared).

The row layout (:class:`JobRow`) is the one contract between the backends and their
readers: a backend selects exactly these columns, in this order, and readers use the
field names, never positions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import partial
from operator import attrgetter
from typing import Any, NamedTuple

from pipeline.jobs import Flag, JobStatus


class JobRow(NamedTuple):
    """One job row: scalar columns, then the JSON columns as stored text."""

    id: str
    seq: int
    provider: str
    fingerprint: str
    status: str  # a JobStatus value
    remote_id: str | None
    attempts: int
    submitted_at: str | None
    completed_at: str | None
    latency_s: float | None
    job_json: str  # the job document: what the ledger shows of the job
    images_json: str
    cost_json: str | None
    usage_json: str
    error_json: str | None
    flags_json: str
    duplicate_cost_json: str | None
    image_count: int  # counted by the store, so totals need no decoding


as_row = partial(tuple.__new__, JobRow)  # a plain tuple of the columns -> JobRow, in C


def sort_rows(rows: Iterable[tuple[Any, ...]]) -> list[JobRow]:
    """Rows as ``JobRow``, in ``seq`` order."""
    out = list(map(as_row, rows))
    # Sorted here, not by the database: sqlite's sorter copies each whole row (a 100k-job
    # table took 0.3 s more), while rows come almost in seq order, which Timsort checks.
    out.sort(key=_SEQ)
    return out


_SEQ = attrgetter("seq")
_UNSET: Any = object()
# The JSON columns in row order, and whether their texts repeat across rows (the same
# price, the same usage object): repeated ones are decoded once and shared.
_JSON_FIELDS = JobRow._fields[10:17]
_SHARED = frozenset({"cost_json", "usage_json", "error_json", "duplicate_cost_json"})
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


_SUPERSEDED_TEXT = f'"{Flag.SUPERSEDED}"'
_DECODERS = tuple(_loads_shared if f in _SHARED else _loads for f in _JSON_FIELDS)


class JobRecord:
    """One job of the run state (read-only).

    ``row`` holds the columns; the properties give each JSON column decoded, on first use
    (and kept). Decoded values are shared, between reads and between records holding the
    same text: treat them as read-only. A plain class with slots: a resume makes one per
    job, and a record that is never decoded holds nothing but its row.
    """

    __slots__ = ("_cache", "row")

    def __init__(self, row: JobRow) -> None:
        self.row = row
        self._cache: list[Any] | None = None  # decoded JSON columns, once one is read

    def __repr__(self) -> str:
        return f"JobRecord({self.row.id!r}, {self.row.status})"

    def _json(self, k: int) -> Any:
        cache = self._cache
        if cache is None:
            cache = self._cache = [_UNSET] * len(_JSON_FIELDS)
        value = cache[k]
        if value is _UNSET:
            text: str | None = self.row[10 + k]  # type: ignore[assignment]
            value = cache[k] = _DECODERS[k](text)
        return value

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def provider(self) -> str:
        return self.row.provider

    @property
    def status(self) -> JobStatus:
        return JobStatus(self.row.status)

    @property
    def remote_id(self) -> str | None:
        return self.row.remote_id

    @property
    def superseded(self) -> bool:
        """Edited or removed from the manifest: kept for the record (and its cost), not
        part of the batch any more."""
        # On the stored text (a JSON list of flag names): no decoding, no list per row.
        return _SUPERSEDED_TEXT in self.row.flags_json

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

    @property
    def error_code(self) -> str | None:
        error = self.error
        code = error.get("code") if error else None
        return str(code) if code is not None else None


def spent(r: JobRecord) -> tuple[float, float]:
    """USD and credits a job has cost, counting possible duplicate charges."""
    return spent_texts(r.row.cost_json, r.row.duplicate_cost_json)


def spent_texts(cost_json: str | None, duplicate_cost_json: str | None) -> tuple[float, float]:
    """``spent`` of a job whose cost columns hold these texts."""
    cost = _loads_shared(cost_json) or {}
    dup = _loads_shared(duplicate_cost_json) or {}
    usd = (cost.get("usd") or 0.0) + (dup.get("usd") or 0.0)
    credits = (cost.get("credits") or 0.0) + (dup.get("credits") or 0.0)
    return usd, credits


class TallyRow(NamedTuple):
    """How many jobs of a provider share one status and one cost (and their images): a
    batch's counts, grouped by the store so that counting a million jobs reads a few
    rows. ``superseded``: the group's rows left the batch (see ``JobRecord.superseded``)."""

    provider: str
    status: str
    superseded: bool
    cost_json: str | None
    duplicate_cost_json: str | None
    jobs: int
    images: int


def tally_records(records: Iterable[JobRecord]) -> list[TallyRow]:
    """The tally of ``records``, as a store groups them (the same rows, in any order)."""
    groups: dict[tuple[str, str, bool, str | None, str | None], list[int]] = {}
    for r in records:
        row = r.row
        key = (row.provider, row.status, r.superseded, row.cost_json, row.duplicate_cost_json)
        group = groups.get(key)
        if group is None:
            groups[key] = [1, row.image_count]
        else:
            group[0] += 1
            group[1] += row.image_count
    return [TallyRow(*key, jobs, images) for key, (jobs, images) in groups.items()]


class DoneRow(NamedTuple):
    """What a resume reads of a completed job (``StateView.done``): enough to check its
    files, count it and know its task, never its whole row.

    Most jobs have one image: for those the database reads its path and size out of the
    stored list (``first_path``, ``first_bytes``: -1 unless an integer) and
    ``images_json`` is left empty, so no JSON is decoded in Python. A job with any other
    number of images has its list in ``images_json`` (see ``image_sizes``).
    ``superseded`` may come as 0 or 1 (sqlite's rows are taken as they are)."""

    id: str
    provider: str
    superseded: bool
    remote_id: str | None
    images_json: str
    cost_json: str | None
    duplicate_cost_json: str | None
    image_count: int
    first_path: str | None = None
    first_bytes: int = -1

    def sizes(self) -> list[tuple[str, int]]:
        """Each image's (path, bytes) as recorded."""
        if self.image_count == 1 and not self.images_json:
            return [(self.first_path or "", self.first_bytes)]
        return image_sizes(self.images_json)


def image_sizes(images_json: str) -> list[tuple[str, int]]:
    """Each image's (path, bytes) from a stored image list (JSON text); an entry that is
    not an object, a path that is not text or a size that is not an integer become
    values no stored file has. Not a list: no images."""
    images = json.loads(images_json) if images_json else []
    if not isinstance(images, list):
        return []
    return [_path_and_size(img) for img in images]


def _path_and_size(img: object) -> tuple[str, int]:
    if not isinstance(img, dict):
        return "", -1
    size = img.get("bytes")
    return str(img.get("path", "")), size if type(size) is int else -1
