"""The whole report page: header, summary (totals, cost per provider, latency), the sheet.

Self-contained by construction: the stylesheet is inlined, the histogram is inline SVG,
there is no script, and the only URLs are relative paths into the batch folder.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping
from importlib.resources import files

from pipeline.gallery._model import Grid
from pipeline.gallery._records import Ledger, Totals
from pipeline.gallery._sheet import credits, esc, render_sheet, usd
from pipeline.gallery._svg import latency_histogram
from pipeline.gallery._thumbs import Thumb

_CSS = files("pipeline.gallery").joinpath("report.css")
MISSING_TEXT = "(unknown)"


def _card(label: str, value: str, cls: str = "") -> str:
    return (
        f'<div class="card {cls}"><div class="num">{value}</div>'
        f'<div class="lbl">{label}</div></div>'
    )


def _cards(t: Totals) -> str:
    return '<div class="cards">{}</div>'.format(
        "".join(
            (
                _card("jobs", str(t.jobs)),
                _card("completed", str(t.completed), "completed"),
                _card("failed", str(t.failed), "failed" if t.failed else ""),
                _card("pending", str(t.pending), "pending" if t.pending else ""),
                _card("images", str(t.images)),
                _card("cost USD", esc(usd(t.cost_usd))),
                _card("credits", esc(credits(t.credits))),
            )
        )
    )


def _providers(ledger: Ledger) -> str:
    if not ledger.providers:
        return '<p class="muted">No provider figures in the ledger.</p>'
    head = (
        "<tr><th>provider</th><th>jobs</th><th>done</th><th>failed</th><th>pending</th>"
        "<th>images</th><th>cost USD</th><th>credits</th><th>requests</th><th>429s</th></tr>"
    )
    rows = [
        f"<tr><th>{esc(name)}</th><td>{p.jobs}</td><td>{p.completed}</td><td>{p.failed}</td>"
        f"<td>{p.pending}</td><td>{p.images}</td><td>{esc(usd(p.cost_usd))}</td>"
        f"<td>{esc(credits(p.credits))}</td><td>{p.requests}</td><td>{p.rate_limited}</td></tr>"
        for name, p in ledger.providers.items()
    ]
    return f'<table class="providers"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _latency(ledger: Ledger) -> str:
    values = [
        j.latency_s
        for j in ledger.current_jobs
        if j.status == "completed" and j.latency_s is not None
    ]
    svg = latency_histogram(values)
    if not values:
        return svg
    cuts = statistics.quantiles(values, n=10, method="inclusive") if len(values) > 1 else values
    stats = (
        f"median {statistics.median(values):.2f} s · p90 {cuts[-1]:.2f} s · "
        f"max {max(values):.2f} s · {len(values)} completed jobs"
    )
    return f'{svg}<p class="muted small">{stats}</p>'


def _failures(ledger: Ledger) -> str:
    codes = Counter(
        (j.error.code or "error") if j.error else "error"
        for j in ledger.current_jobs
        if j.status == "failed"
    )
    if not codes:
        return ""
    items = "".join(
        f'<li><code>{esc(code)}</code> <span class="muted">× {n}</span></li>'
        for code, n in codes.most_common()
    )
    return f'<h2 class="sub">Failures by code</h2><ul class="codes">{items}</ul>'


def _header(ledger: Ledger) -> str:
    state = (
        '<span class="badge completed">finished</span>'
        if ledger.finished
        else '<span class="badge pending">in progress</span>'
    )
    facts = [f"manifest <b>{esc(ledger.manifest or MISSING_TEXT)}</b>"]
    if ledger.started_at:
        facts.append(f"started {esc(ledger.started_at)}")
    if ledger.updated_at:
        facts.append(f"updated {esc(ledger.updated_at)}")
    superseded = len(ledger.jobs) - len(ledger.current_jobs)
    if superseded:
        facts.append(f"{superseded} superseded job{'s' if superseded != 1 else ''} not shown")
    return (
        f"<header><h1>{esc(ledger.name or 'batch')} {state}</h1>"
        f'<p class="muted">{" · ".join(facts)}</p></header>'
    )


def render_page(ledger: Ledger, grid: Grid, thumbs: Mapping[str, Thumb]) -> str:
    """The complete, self-contained HTML document."""
    title = f"{ledger.name or 'batch'} · contact sheet"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS.read_text(encoding='utf-8')}</style></head>"
        f"<body>{_header(ledger)}"
        f'<section class="summary">{_cards(ledger.effective_totals())}<div class="panels">'
        f'<div class="panel"><h2>Cost per provider</h2>{_providers(ledger)}{_failures(ledger)}'
        f'</div><div class="panel"><h2>Latency</h2>{_latency(ledger)}</div>'
        "</div></section>"
        f'<section><h2 class="sheet-title">Contact sheet</h2>{render_sheet(grid, thumbs)}'
        "</section>"
        '<footer class="muted small">Written by <code>pipeline report</code>. Thumbnails in '
        "<code>thumbs/</code>; click one for the full image in <code>images/</code>.</footer>"
        "</body></html>\n"
    )
