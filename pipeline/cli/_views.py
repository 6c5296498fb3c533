"""Human-readable renderings (rich tables) of plans and statuses; the CLI prints them."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.manifest import Plan, PlanRow


def _money(usd: float | None, credits: float | None) -> tuple[str, str]:
    return ("?" if usd is None else f"${usd:.3f}", "" if credits is None else f"{credits:g}")


def _to_text(*renderables: object) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=120, force_terminal=False, no_color=True)
    for r in renderables:
        console.print(r)
    return buf.getvalue().rstrip("\n")


def _add(table: Table, label: str, row: PlanRow) -> None:
    usd, credits = _money(row.usd, row.credits)
    table.add_row(label, str(row.jobs), str(row.images), usd, credits)


def render_plan(plan: Plan) -> str:
    """Jobs, images and estimated cost per provider and per sweep variant."""
    providers = Table(title=f"{plan.name}: {plan.total.jobs} jobs -> {plan.output_dir}")
    for col in ("provider", "jobs", "images", "est. USD", "est. credits"):
        providers.add_column(col, justify="left" if col == "provider" else "right")
    for name, row in plan.providers.items():
        _add(providers, name, row)
    _add(providers, "total", plan.total)
    parts: list[object] = [providers]
    if plan.variants:
        variants = Table(title="per sweep variant")
        for col in ("variant", "jobs", "images", "est. USD", "est. credits"):
            variants.add_column(col, justify="left" if col == "variant" else "right")
        for row in plan.variants:
            _add(variants, ", ".join(f"{k}={v}" for k, v in row.variant.items()), row)
        parts.append(variants)
    b = plan.budget
    if b.max_usd is not None or b.max_credits is not None:
        caps = ", ".join(
            x
            for x in (
                f"${b.max_usd:g}" if b.max_usd is not None else "",
                f"{b.max_credits:g} credits" if b.max_credits is not None else "",
            )
            if x
        )
        if plan.over_budget:
            parts.append(
                f"warning: the estimate exceeds the budget ({caps}); the run will "
                "stop submitting when the budget is reached"
            )
        else:
            parts.append(f"budget: {caps} (estimate within it)")
    if plan.total.usd is None:
        parts.append(
            "note: skills_video cost in USD is unknown without "
            "providers.skills_video.usd_per_credit"
        )
    return _to_text(*parts)


def render_status(doc: dict[str, Any]) -> str:
    """``pipeline status`` as text: totals, providers, failures by code with examples."""
    t = doc["totals"]
    head = (
        f"{doc['name']} ({doc['manifest']}), started {doc['started_at']}\n"
        f"{t['completed']}/{t['jobs']} completed, {t['failed']} failed, {t['pending']} pending "
        f"({doc['in_flight']} at the provider); {t['images']} images; ${t['cost_usd']:.3f}"
        + (f", {t['credits']:g} credits" if t["credits"] else "")
    )
    table = Table()
    for col in (
        "provider",
        "jobs",
        "completed",
        "failed",
        "images",
        "USD",
        "credits",
        "requests",
        "429s",
    ):
        table.add_column(col, justify="left" if col == "provider" else "right")
    for name, p in doc["providers"].items():
        table.add_row(
            name,
            str(p["jobs"]),
            str(p["completed"]),
            str(p["failed"]),
            str(p["images"]),
            f"${p['cost_usd']:.3f}",
            f"{p['credits']:g}",
            str(p["requests"]),
            str(p["rate_limited"]),
        )
    parts: list[object] = [head, table]
    if doc["failures"]:
        lines = ["failures by code:"]
        for code, group in sorted(doc["failures"].items(), key=lambda kv: -kv[1]["count"]):
            lines.append(f"  {code}: {group['count']}")
            lines.extend(f"    {ex['id']}: {ex['message']}" for ex in group["examples"])
        parts.append("\n".join(lines))
    return _to_text(*parts)
