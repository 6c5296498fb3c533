"""The grid model: axis choice, ordering, cells with several jobs, unknown axes."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import UsageError
from pipeline.gallery._model import axis_value, build_grid, known_axes
from pipeline.gallery._records import Ledger

from ._support import job, sweep_jobs


def ledger_of(jobs: list[dict[str, Any]]) -> Ledger:
    return Ledger.model_validate({"name": "t", "jobs": jobs})


def test_default_rows_are_prompts_and_columns_all_variant_keys() -> None:
    """Default: one row per prompt id, columns = every variant key combined."""
    grid = build_grid(ledger_of(sweep_jobs()))
    assert grid.row_axes == ("prompt",)
    assert grid.col_axes == ("aspect_ratio", "provider", "style")
    assert grid.rows == (("lighthouse",), ("evil",))
    assert len(grid.cols) == 8
    assert grid.cols[0] == ("1:1", "wavespeed", "oil painting")
    assert grid.cols[1] == ("1:1", "wavespeed", "pixel art")
    for row in grid.rows:
        for col in grid.cols:
            assert len(grid.cell(row, col)) == 1


def test_superseded_jobs_are_left_out() -> None:
    """A job edited out of the manifest gets no row."""
    grid = build_grid(ledger_of(sweep_jobs()))
    assert ("old",) not in grid.rows
    assert all(j.id != "old--gone" for jobs in grid.cells.values() for j in jobs)


def test_chosen_axes_and_combined_columns() -> None:
    """--rows style --cols provider,aspect_ratio: prompts share cells, order follows the ledger."""
    grid = build_grid(ledger_of(sweep_jobs()), rows="style", cols="provider, aspect_ratio")
    assert grid.row_axes == ("style",)
    assert grid.col_axes == ("provider", "aspect_ratio")
    assert grid.rows == (("oil painting",), ("pixel art",))
    assert grid.cols == (
        ("wavespeed", "1:1"),
        ("wavespeed", "16:9"),
        ("skills_video", "1:1"),
        ("skills_video", "16:9"),
    )
    cell = grid.cell(("oil painting",), ("wavespeed", "1:1"))
    assert [j.prompt_id for j in cell] == ["lighthouse", "evil"]
    assert grid.off_axis(cell[0]) == {"prompt": "lighthouse"}


def test_rows_without_cols_put_every_other_axis_on_columns() -> None:
    """--rows provider alone: columns combine prompt and the remaining variant keys."""
    grid = build_grid(ledger_of(sweep_jobs()), rows="provider")
    assert grid.col_axes == ("prompt", "aspect_ratio", "style")


def test_cols_prompt_moves_variants_to_rows() -> None:
    """--cols prompt alone: rows combine the variant keys instead of prompts."""
    grid = build_grid(ledger_of(sweep_jobs()), cols="prompt")
    assert grid.row_axes == ("aspect_ratio", "provider", "style")


def test_axis_off_both_sides_stacks_jobs_in_one_cell() -> None:
    """An axis on neither side puts several jobs in a cell; each keeps its own values."""
    grid = build_grid(ledger_of(sweep_jobs()), cols="provider")
    cell = grid.cell(("lighthouse",), ("wavespeed",))
    assert len(cell) == 4
    assert [grid.off_axis(j) for j in cell][:2] == [
        {"aspect_ratio": "1:1", "style": "oil painting"},
        {"aspect_ratio": "16:9", "style": "oil painting"},
    ]


def test_cell_keeps_every_image_and_status() -> None:
    """Multiple images per job, failed and pending jobs all land in their cells intact."""
    grid = build_grid(ledger_of(sweep_jobs()))
    row = ("lighthouse",)
    by_id = {j.id: j for col in grid.cols for j in grid.cell(row, col)}
    assert len(by_id["lighthouse--1x1-wavespeed-pix"].images) == 2
    failed = by_id["lighthouse--1x1-skills_video-oil"]
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "task_failed"
    assert by_id["lighthouse--16x9-wavespeed-oil"].shown_status == "pending"
    assert by_id["lighthouse--16x9-skills_video-oil"].shown_status == "pending"


def test_parameters_and_provider_are_axes_even_when_not_swept() -> None:
    """A job's resolution or provider can be an axis though the sweep does not vary it."""
    jobs = [job("a", prompt_id="a"), job("b", prompt_id="b", provider="skills_video")]
    ledger = ledger_of(jobs)
    assert {"prompt", "provider", "resolution", "n"} <= set(known_axes(ledger.jobs))
    grid = build_grid(ledger, rows="resolution", cols="provider")
    assert grid.rows == (("1k",),)
    assert grid.cols == (("wavespeed",), ("skills_video",))
    assert axis_value(ledger.jobs[0], "prompt") == "a"


def test_missing_values_sort_last() -> None:
    """A job without a value on an axis gets its own row, after every real value."""
    jobs = [
        job("a", prompt_id="a", variant={"style": "x"}),
        job("b", prompt_id="b", variant={}),
        job("c", prompt_id="c", variant={"style": "y"}),
    ]
    grid = build_grid(ledger_of(jobs), rows="style", cols="prompt")
    assert grid.rows == (("x",), ("y",), (None,))


@pytest.mark.parametrize(
    ("rows", "cols", "fragment"),
    [
        ("colour", None, "unknown axis 'colour'"),
        (None, "provider,bogus", "unknown axis 'bogus'"),
        ("provider", "provider", "both"),
        ("style,style", None, "twice"),
        ("prompt,", None, "empty"),
    ],
)
def test_bad_axis_is_a_usage_error(rows: str | None, cols: str | None, fragment: str) -> None:
    """Unknown, repeated, empty or doubly used axis names raise UsageError."""
    with pytest.raises(UsageError, match=fragment):
        build_grid(ledger_of(sweep_jobs()), rows=rows, cols=cols)


def test_numbers_in_a_variant_become_text() -> None:
    """A sweep over n gives numeric variant values; they are axis values like any other."""
    ledger = ledger_of([job("a", prompt_id="a", variant={"n": 2})])  # type: ignore[dict-item]
    assert build_grid(ledger).cols == (("2",),)


def test_empty_ledger_gives_an_empty_grid() -> None:
    """No jobs: no rows, no columns, no error."""
    grid = build_grid(ledger_of([]))
    assert grid.rows == ()
