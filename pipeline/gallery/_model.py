"""The contact sheet's grid: which jobs go in which row and which column.

An *axis* is one thing that tells jobs apart: ``prompt`` (the prompt id), a variant key
(``provider``, ``aspect_ratio``, a template variable such as ``style``), or a resolved
parameter (``resolution``, ``n``...). Rows and columns each combine one or more axes
(``--cols aspect_ratio,provider``). An axis's values are ordered as they first appear in the
ledger, which is the manifest's order; combinations are ordered axis by axis, so rows or
columns that share leading values sit side by side and their headers can be merged.

Only combinations that occur become rows and columns (no empty bands for a sparse sweep).
Several jobs can share a cell when an axis is on neither side; the cell keeps them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pipeline.errors import UsageError
from pipeline.gallery._records import JobEntry, Ledger

PROMPT_AXIS = "prompt"
# Job fields that can be an axis even when the sweep does not vary them.
_FIELD_AXES = ("provider", "model")

Key = tuple[str | None, ...]


def axis_value(job: JobEntry, axis: str) -> str | None:
    """The job's value on ``axis``; None when the job has none (shown as a dash)."""
    if axis == PROMPT_AXIS:
        return job.prompt_id or job.id
    if axis in job.variant:
        return job.variant[axis]
    if axis == "provider":
        return job.provider or None
    if axis == "model":
        return job.model
    value = job.params.get(axis)
    if value is None or isinstance(value, list | dict):
        return None
    return str(value)


def variant_keys(jobs: Iterable[JobEntry]) -> list[str]:
    """Every variant key in the ledger, in order of first appearance."""
    keys: dict[str, None] = {}
    for job in jobs:
        keys.update(dict.fromkeys(job.variant))
    keys.pop(PROMPT_AXIS, None)
    return list(keys)


def known_axes(jobs: Sequence[JobEntry]) -> list[str]:
    """The axis names ``--rows`` and ``--cols`` accept for these jobs."""
    names: dict[str, None] = {PROMPT_AXIS: None}
    names.update(dict.fromkeys(variant_keys(jobs)))
    names.update(dict.fromkeys(_FIELD_AXES))
    for job in jobs:
        names.update(
            dict.fromkeys(k for k, v in job.params.items() if not isinstance(v, list | dict))
        )
    return list(names)


def parse_axes(spec: str | None, option: str, known: Sequence[str]) -> tuple[str, ...] | None:
    """``"aspect_ratio,provider"`` -> ``("aspect_ratio", "provider")``; None stays None.

    Raises ``UsageError`` for an empty name, a repeated name or a name that is not an axis.
    """
    if spec is None:
        return None
    names = tuple(part.strip() for part in spec.split(","))
    for name in names:
        if not name:
            raise UsageError(f"{option}: empty axis name in {spec!r}")
        if name not in known:
            raise UsageError(f"{option}: unknown axis {name!r}; this batch has: {', '.join(known)}")
    if len(set(names)) != len(names):
        raise UsageError(f"{option}: an axis is named twice in {spec!r}")
    return names


def choose_axes(
    jobs: Sequence[JobEntry], rows: str | None, cols: str | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Resolve ``--rows`` / ``--cols`` with their defaults.

    Rows default to ``prompt``; columns default to every other axis that tells the jobs
    apart, combined. Raises ``UsageError`` for unknown axes or an axis on both sides.
    """
    known = known_axes(jobs)
    row_axes = parse_axes(rows, "--rows", known)
    col_axes = parse_axes(cols, "--cols", known)
    distinguishing = [PROMPT_AXIS, *variant_keys(jobs)]
    if row_axes is None:
        if col_axes is not None and PROMPT_AXIS in col_axes:
            row_axes = tuple(a for a in distinguishing if a not in col_axes)
        else:
            row_axes = (PROMPT_AXIS,)
    if col_axes is None:
        col_axes = tuple(a for a in distinguishing if a not in row_axes)
    both = sorted(set(row_axes) & set(col_axes))
    if both:
        raise UsageError(f"axis {both[0]!r} is on both --rows and --cols")
    return row_axes, col_axes


@dataclass(frozen=True, slots=True)
class Grid:
    """Rows x columns of jobs. ``rows`` / ``cols`` are value tuples, one value per axis."""

    row_axes: tuple[str, ...]
    col_axes: tuple[str, ...]
    rows: tuple[Key, ...]
    cols: tuple[Key, ...]
    cells: dict[tuple[Key, Key], tuple[JobEntry, ...]] = field(hash=False)

    def cell(self, row: Key, col: Key) -> tuple[JobEntry, ...]:
        """The jobs at ``row`` x ``col`` (empty when that combination was never planned)."""
        return self.cells.get((row, col), ())

    def row_jobs(self, row: Key) -> list[JobEntry]:
        """Every job on one row, left to right."""
        return [job for col in self.cols for job in self.cell(row, col)]

    def off_axis(self, job: JobEntry) -> dict[str, str]:
        """What tells this job apart that neither rows nor columns show: its prompt id
        (when prompts are not an axis) and its other variant values."""
        shown = {*self.row_axes, *self.col_axes}
        hidden = {} if PROMPT_AXIS in shown else {PROMPT_AXIS: job.prompt_id or job.id}
        hidden.update((k, v) for k, v in job.variant.items() if k not in shown)
        return hidden


def _ordered_keys(jobs: Sequence[JobEntry], axes: tuple[str, ...]) -> tuple[Key, ...]:
    """The value combinations present, ordered axis by axis by first appearance."""
    rank: list[dict[str | None, int]] = [{} for _ in axes]
    seen: dict[Key, None] = {}
    for job in jobs:
        key = tuple(axis_value(job, axis) for axis in axes)
        for order, value in zip(rank, key, strict=True):
            if value is not None:
                order.setdefault(value, len(order))
        seen[key] = None

    def sort_key(key: Key) -> tuple[int, ...]:
        # A missing value sorts after every real one on its axis.
        return tuple(order.get(v, len(order)) for order, v in zip(rank, key, strict=True))

    return tuple(sorted(seen, key=sort_key))


def build_grid(ledger: Ledger, rows: str | None = None, cols: str | None = None) -> Grid:
    """Place the batch's current jobs (superseded ones left out) on a grid.

    Raises ``UsageError`` for an unknown axis name, see ``choose_axes``.
    """
    jobs = ledger.current_jobs
    row_axes, col_axes = choose_axes(jobs, rows, cols)
    cells: dict[tuple[Key, Key], list[JobEntry]] = {}
    for job in jobs:
        row = tuple(axis_value(job, a) for a in row_axes)
        col = tuple(axis_value(job, a) for a in col_axes)
        cells.setdefault((row, col), []).append(job)
    return Grid(
        row_axes=row_axes,
        col_axes=col_axes,
        rows=_ordered_keys(jobs, row_axes),
        cols=_ordered_keys(jobs, col_axes),
        cells={k: tuple(v) for k, v in cells.items()},
    )
