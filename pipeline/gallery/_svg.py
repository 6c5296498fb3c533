"""The latency histogram, drawn as inline SVG (no script, no external anything).

Bins have a "nice" width (1, 2 or 5 times a power of ten) so the axis reads naturally; about
sqrt(n) of them, at most ``MAX_BINS``. The markup holds only numbers this module formats, so
nothing in it needs escaping; it carries no ``xmlns`` because inline SVG in HTML needs none
(and the page stays free of any ``http://`` reference).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MAX_BINS = 20
_BAR = "#4f7cff"
_INK = "#5b6472"
_GRID = "#e3e6ec"


@dataclass(frozen=True, slots=True)
class Bins:
    """Equal-width bins from ``start``: ``counts[i]`` values fell in [start+i*step, +step)."""

    start: float
    step: float
    counts: tuple[int, ...]

    def edge(self, i: int) -> float:
        return self.start + i * self.step


def nice_step(raw: float) -> float:
    """The smallest 1/2/5 x 10^k at least ``raw`` (``raw`` > 0)."""
    power = 10.0 ** math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 5.0, 10.0):
        if mult * power >= raw * (1 - 1e-9):
            return mult * power
    return 10.0 * power  # pragma: no cover - the loop always returns


def bin_values(values: Sequence[float], max_bins: int = MAX_BINS) -> Bins:
    """Count ``values`` (non-empty, finite, >= 0) into nice bins."""
    lo, hi = min(values), max(values)
    wanted = max(1, min(max_bins, math.ceil(math.sqrt(len(values)))))
    step = nice_step((hi - lo) / wanted if hi > lo else max(hi, 0.1) / 10)
    start = math.floor(lo / step) * step
    n = max(1, math.floor((hi - start) / step + 1e-9) + 1)
    counts = [0] * n
    for v in values:
        counts[min(n - 1, max(0, math.floor((v - start) / step + 1e-9)))] += 1
    return Bins(start=start, step=step, counts=tuple(counts))


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def latency_histogram(
    latencies: Sequence[float], *, width: int = 360, height: int = 150, max_bins: int = MAX_BINS
) -> str:
    """An ``<svg>`` histogram of job latencies in seconds; a short note when there are none."""
    values = [v for v in latencies if math.isfinite(v) and v >= 0]
    if not values:
        return '<p class="muted">No latencies yet (no job has completed).</p>'
    bins = bin_values(values, max_bins)
    left, right, top, bottom = 34, 10, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(bins.counts)
    bar_w = plot_w / len(bins.counts)
    parts = [
        f'<svg class="histogram" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Histogram of {len(values)} job latencies in seconds">',
        f'<line x1="{left}" y1="{top}" x2="{left + plot_w}" y2="{top}" stroke="{_GRID}"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" fill="{_INK}" '
        f'font-size="11">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" fill="{_INK}" '
        f'font-size="11">0</text>',
    ]
    for i, count in enumerate(bins.counts):
        h = plot_h * count / peak
        x = left + i * bar_w
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
            f'height="{h:.1f}" rx="2" fill="{_BAR}"><title>{_fmt(bins.edge(i))}–'
            f"{_fmt(bins.edge(i + 1))} s: {count} job{'s' if count != 1 else ''}</title></rect>"
        )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        f'stroke="{_INK}"/>'
    )
    # Label at most ~8 edges so the numbers never collide.
    every = max(1, math.ceil((len(bins.counts) + 1) / 8))
    for i in range(0, len(bins.counts) + 1, every):
        x = left + i * bar_w
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 15}" text-anchor="middle" fill="{_INK}" '
            f'font-size="11">{_fmt(bins.edge(i))}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle" '
        f'fill="{_INK}" font-size="11">latency (s)</text></svg>'
    )
    return "".join(parts)
