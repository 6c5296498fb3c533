"""Figures: one measured claim each, the table ``make bench`` prints, and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.procs import cores


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the table. ``ok`` is ``None`` for figures with no target.

    ``value`` is in ``unit``; ``target`` says the bound in words (``<= 1.15``).
    ``details`` holds the raw measurements behind the value, for the JSON file.
    """

    key: str
    label: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def measured(self) -> str:
        v = self.value
        text = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 10 else f"{v:,.1f}"
        return f"{text} {self.unit}".strip()


def at_most(key: str, label: str, value: float, unit: str, bound: float, **kw: Any) -> Figure:
    """A figure whose target is ``value <= bound``."""
    return Figure(key, label, value, unit, f"<= {bound:.3g} {unit}".strip(), value <= bound, **kw)


def at_least(key: str, label: str, value: float, unit: str, bound: float, **kw: Any) -> Figure:
    """A figure whose target is ``value >= bound``."""
    return Figure(key, label, value, unit, f">= {bound:.3g} {unit}".strip(), value >= bound, **kw)


def info(key: str, label: str, value: float, unit: str, **kw: Any) -> Figure:
    """A figure with no target (context for the others)."""
    return Figure(key, label, value, unit, **kw)


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else "pass" if ok else "FAIL"


def render_table(figures: Iterable[Figure]) -> str:
    """The final table: figure | measured | target | pass/fail."""
    rows = [("figure", "measured", "target", "result")]
    rows += [(f.label, f.measured(), f.target or "-", _verdict(f.ok)) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """The machine the figures were measured on (they are only comparable within it)."""
    return {
        "cores": cores(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_results(path: Path, env: Mapping[str, Any], figures: Iterable[Figure]) -> None:
    """Write every figure, with the environment, as JSON to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"environment": dict(env), "figures": [asdict(f) for f in figures]}
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
