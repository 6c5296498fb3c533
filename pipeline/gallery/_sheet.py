"""The contact sheet itself: one HTML table, rows x columns of job cells.

Everything taken from the ledger goes through ``esc`` (html.escape, quotes included); links
and image sources are built only from paths the thumbnailer accepted, percent-encoded.
Header cells that repeat the same leading axis values are merged (colspan / rowspan).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from urllib.parse import quote

from pipeline.gallery._model import PROMPT_AXIS, Grid, Key
from pipeline.gallery._records import JobEntry
from pipeline.gallery._thumbs import Thumb

MISSING = "—"


def esc(value: object) -> str:
    """Text from the ledger, safe in element content and in quoted attributes."""
    return escape(str(value), quote=True)


def href(rel: str) -> str:
    """A relative URL for a checked path inside the batch folder."""
    return esc(quote(rel, safe="/"))


def usd(x: float) -> str:
    return f"${x:,.3f}"


def credits(x: float) -> str:
    return f"{x:,.6g}"


def _spans(keys: Sequence[Key], level: int) -> list[int]:
    """For each key, how many keys from it on share its values up to ``level``: the
    header's span, or 0 where the cell is merged into one above or to the left."""
    spans = [0] * len(keys)
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i][: level + 1] != keys[start][: level + 1]:
            spans[start] = i - start
            start = i
    return spans


def _axis_cell(axis: str, value: str | None, attrs: str, extra: str = "", cls: str = "hdr") -> str:
    shown = MISSING if value is None else value
    return (
        f'<th class="{cls}"{attrs}><span class="axis">{esc(axis)}</span>'
        f'<span class="val">{esc(shown)}</span>{extra}</th>'
    )


def _head(grid: Grid) -> str:
    rows_label = " × ".join(grid.row_axes) or "all"
    cols_label = " × ".join(grid.col_axes) or "all"
    levels = max(1, len(grid.col_axes))
    corner = (
        f'<th class="corner sticky" rowspan="{levels}" colspan="{max(1, len(grid.row_axes))}">'
        f'<span class="axis">rows ↓</span> {esc(rows_label)}<br>'
        f'<span class="axis">columns →</span> {esc(cols_label)}</th>'
    )
    if not grid.col_axes:
        all_jobs = '<th class="hdr" scope="col"><span class="val">all jobs</span></th>'
        return f"<thead><tr>{corner}{all_jobs}</tr></thead>"
    out = ["<thead>"]
    for level, axis in enumerate(grid.col_axes):
        cells = [corner] if level == 0 else []
        for col, span in zip(grid.cols, _spans(grid.cols, level), strict=True):
            if span:
                attr = f' colspan="{span}"' if span > 1 else ""
                cells.append(_axis_cell(axis, col[level], attr + ' scope="col"'))
        out.append(f"<tr>{''.join(cells)}</tr>")
    out.append("</thead>")
    return "".join(out)


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def _prompt_text(jobs: Sequence[JobEntry]) -> str:
    """The prompt under a prompt id. When template variables make it differ across the
    row, the shared beginning is shown, cut at a word and ended with an ellipsis."""
    texts = sorted({job.prompt for job in jobs})
    if not texts or not texts[0]:
        return ""
    if len(texts) == 1:
        shown = full = texts[0]
    else:
        # Sorted, so the first and last differ the most: their prefix is everyone's.
        common = _common_prefix(texts[0], texts[-1])
        cut = common[: common.rfind(" ") + 1] if " " in common else ""
        if len(cut.strip()) < 8:
            return ""
        shown, full = cut.rstrip(" ,;:-") + " …", "\n".join(texts)
    return f'<span class="prompt" title="{esc(full)}">{esc(shown)}</span>'


def _thumb(thumb: Thumb | None, job: JobEntry, rel: str) -> str:
    if thumb is None or not thumb.safe:
        why = thumb.problem if thumb else "not processed"
        return f'<span class="noimg" title="{esc(rel)}">{esc(why)}</span>'
    if thumb.thumb is None:
        return (
            f'<a class="noimg" href="{href(thumb.image)}" title="{esc(rel)}">'
            f"{esc(thumb.problem or 'no thumbnail')}</a>"
        )
    return (
        f'<a class="img" href="{href(thumb.image)}" title="{esc(rel)}">'
        f'<img src="{href(thumb.thumb)}" width="{thumb.width}" height="{thumb.height}" '
        f'alt="{esc(job.prompt)}" loading="lazy"></a>'
    )


def _error(job: JobEntry) -> str:
    err = job.error
    if err is None:
        return ""
    code = err.code or "error"
    details = [f"HTTP {err.http_status}"] if err.http_status is not None else []
    if err.provider_code is not None and str(err.provider_code) != code:
        details.append(f"provider code {err.provider_code}")
    extra = f' <span class="detail">({esc(", ".join(details))})</span>' if details else ""
    # A job still pending may carry the error of an attempt that will be retried.
    prefix = "" if job.shown_status == "failed" else '<span class="detail">last error:</span> '
    return (
        f'<div class="error">{prefix}<code>{esc(code)}</code>{extra}'
        f'<div class="msg">{esc(err.message or "")}</div></div>'
    )


def _meta(job: JobEntry) -> str:
    status = job.shown_status
    bits = [f'<span class="badge {status}">{esc(status)}</span>']
    if job.cost is not None and (job.cost.usd is not None or job.cost.credits is not None):
        money = []
        if job.cost.usd is not None:
            money.append(usd(job.cost.usd))
        if job.cost.credits is not None:
            money.append(f"{credits(job.cost.credits)} cr")
        basis = f' title="cost basis: {esc(job.cost.basis)}"' if job.cost.basis else ""
        bits.append(f'<span class="cost"{basis}>{esc(" · ".join(money))}</span>')
    if job.latency_s is not None:
        bits.append(f'<span class="lat">{job.latency_s:.2f} s</span>')
    if job.attempts > 1:
        bits.append(f'<span class="lat">{job.attempts} attempts</span>')
    return f'<div class="meta">{"".join(bits)}</div>'


_WAITING = {"pending": "not sent yet", "submitted": "at the provider", "intent": "being sent"}


def _visual(job: JobEntry, thumbs: Mapping[str, Thumb]) -> str:
    """The cell's picture area: thumbnails, the failure, or a placeholder."""
    if job.images:
        many = " many" if len(job.images) > 1 else ""
        inner = "".join(_thumb(thumbs.get(i.path), job, i.path) for i in job.images)
        return f'<div class="imgs{many}">{inner}</div>'
    status = job.shown_status
    if status == "failed":
        return f'<div class="placeholder failed">{_error(job) or "failed"}</div>'
    if status == "pending":
        waiting = _WAITING.get(job.status, job.status)
        return f'<div class="placeholder pending">{esc(waiting)}</div>{_error(job)}'
    return '<div class="placeholder completed">no images</div>'


def _job(grid: Grid, job: JobEntry, thumbs: Mapping[str, Thumb]) -> str:
    chips = [f'<span class="chip">{esc(k)}: {esc(v)}</span>' for k, v in grid.off_axis(job).items()]
    chips += [f'<span class="chip flag">{esc(f)}</span>' for f in job.flags]
    chip_row = f'<div class="chips">{"".join(chips)}</div>' if chips else ""
    return (
        f'<div class="job {job.shown_status}" title="{esc(job.prompt)}">{_visual(job, thumbs)}'
        f'{_meta(job)}{chip_row}<div class="jobid">{esc(job.id)}</div></div>'
    )


def _body(grid: Grid, thumbs: Mapping[str, Thumb]) -> str:
    spans = [_spans(grid.rows, level) for level in range(len(grid.row_axes))]
    out = ["<tbody>"]
    for r, row in enumerate(grid.rows):
        cells = []
        for level, axis in enumerate(grid.row_axes):
            span = spans[level][r]
            if not span:
                continue
            attr = f' rowspan="{span}"' if span > 1 else ""
            extra = ""
            if axis == PROMPT_AXIS:
                group = [j for k in grid.rows[r : r + span] for j in grid.row_jobs(k)]
                extra = _prompt_text(group)
            # The first row header stays in view while a wide sheet scrolls sideways.
            cls = "hdr sticky" if level == 0 else "hdr"
            cells.append(_axis_cell(axis, row[level], attr + ' scope="row"', extra, cls))
        if not grid.row_axes:
            cells.append('<th class="hdr"><span class="val">all jobs</span></th>')
        for col in grid.cols:
            jobs = grid.cell(row, col)
            inner = "".join(_job(grid, j, thumbs) for j in jobs)
            cells.append(
                f'<td class="cell"><div class="stack">{inner}</div></td>'
                if jobs
                else '<td class="empty">—</td>'
            )
        out.append(f"<tr>{''.join(cells)}</tr>")
    out.append("</tbody>")
    return "".join(out)


def render_sheet(grid: Grid, thumbs: Mapping[str, Thumb]) -> str:
    """The contact sheet table, or a short note for a batch with no jobs."""
    if not grid.rows:
        return '<p class="muted">This batch has no jobs.</p>'
    return (
        f'<div class="scroll"><table class="sheet">{_head(grid)}{_body(grid, thumbs)}</table></div>'
    )
