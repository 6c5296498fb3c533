"""What a batch will do and roughly cost, before anything is sent (``pipeline plan``).

Estimates come from :meth:`ProviderSpec.estimate` (wavespeed: its price table; skills_video:
credits per image times the manifest's ``usd_per_credit``). A dollar figure is ``None`` when
any job in it has no known price (skills_video without ``usd_per_credit``); a credits
figure is ``None`` when no job in it is billed in credits. The budget counts as exceeded
when the dollars that are known, or the credits, already pass a cap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.jobs import Batch, Budget, Job
from pipeline.manifest._fields import SWEEP_AXES
from pipeline.providers.specs import SPECS, Cost


@dataclass(frozen=True, slots=True)
class PlanRow:
    """Jobs, images and estimated cost of a group of jobs (a provider, a variant, all)."""

    jobs: int
    images: int
    usd: float | None
    credits: float | None
    known_usd: float = 0.0  # the part of the dollars that is known, for budget checks
    variant: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Plan:
    """The plan of a batch: per provider, per sweep variant, and in total."""

    name: str
    manifest_path: str
    output_dir: str
    providers: dict[str, PlanRow] = field(hash=False)
    variants: tuple[PlanRow, ...]
    total: PlanRow
    budget: Budget
    over_budget: bool


class _Tally:
    """Running sums for one row; ``row()`` freezes them into a :class:`PlanRow`."""

    __slots__ = ("credits", "images", "jobs", "usd", "usd_known")

    def __init__(self) -> None:
        self.jobs = self.images = 0
        self.usd = 0.0
        self.usd_known = True
        self.credits: float | None = None

    def add(self, n: int, cost: Cost, jobs: int = 1) -> None:
        """Count ``jobs`` jobs of ``n`` images each, each costing ``cost``."""
        self.jobs += jobs
        self.images += n * jobs
        if cost.usd is None:
            self.usd_known = False
        else:
            self.usd += cost.usd * jobs
        if cost.credits is not None:
            self.credits = (self.credits or 0.0) + cost.credits * jobs

    def row(self, variant: dict[str, str] | None = None) -> PlanRow:
        return PlanRow(
            jobs=self.jobs,
            images=self.images,
            usd=round(self.usd, 6) if self.usd_known else None,
            credits=round(self.credits, 6) if self.credits is not None else None,
            known_usd=round(self.usd, 6),
            variant=variant or {},
        )


_GroupKey = tuple[str, int, tuple[str, ...]]


def _groups(jobs: Iterable[Job]) -> list[tuple[Job, int]]:
    """One job of each group of alike jobs, with the group's size, in the order the
    groups first appear. Alike: the same provider, the same params object and the same
    variant keys. Jobs with the same settings share one params object, so a large batch
    is a few groups: counted once, then priced per group, not per job.
    """
    first: dict[_GroupKey, Job] = {}
    sizes: dict[_GroupKey, int] = {}
    for job in jobs:
        key = (job.provider, id(job.params), tuple(job.variant))
        size = sizes.get(key)
        if size is None:
            first[key] = job
            sizes[key] = 1
        else:
            sizes[key] = size + 1
    return [(job, sizes[key]) for key, job in first.items()]


def make_plan(batch: Batch) -> Plan:
    """Count and price the batch's jobs per provider, per sweep variant and in total.

    A sweep variant is the job's value on each swept axis (prompt vars left out); a prompt
    that sets an axis itself is counted under its own value.
    """
    groups = _groups(batch.jobs)
    # The sweep axes of the batch, in the order they appear in the job variants.
    axes = tuple(dict.fromkeys(k for job, _ in groups for k in job.variant if k in SWEEP_AXES))
    total = _Tally()
    providers: dict[str, _Tally] = {}
    variants: dict[tuple[object, ...], _Tally] = {}
    # A batch repeats a few (provider, resolution, n) combinations many times over.
    costs: dict[tuple[str, str, int], Cost] = {}
    for job, count in groups:
        params = job.params
        key = (job.provider, params.resolution, params.n)
        cost = costs.get(key)
        if cost is None:
            settings = batch.providers.get(job.provider)
            usd_per_credit = settings.usd_per_credit if settings else None
            cost = costs[key] = SPECS[job.provider].estimate(params, usd_per_credit)
        total.add(params.n, cost, count)
        if job.provider not in providers:
            providers[job.provider] = _Tally()
        providers[job.provider].add(params.n, cost, count)
        if axes:
            where = tuple(job.provider if a == "provider" else getattr(params, a) for a in axes)
            if where not in variants:
                variants[where] = _Tally()
            variants[where].add(params.n, cost, count)
    summary = total.row()
    budget = batch.budget
    over = (budget.max_usd is not None and summary.known_usd > budget.max_usd) or (
        budget.max_credits is not None
        and summary.credits is not None
        and summary.credits > budget.max_credits
    )
    return Plan(
        name=batch.name,
        manifest_path=batch.manifest_path,
        output_dir=batch.output_dir,
        providers={name: tally.row() for name, tally in providers.items()},
        variants=tuple(
            tally.row({a: str(v) for a, v in zip(axes, where, strict=True)})
            for where, tally in variants.items()
        ),
        total=summary,
        budget=budget,
        over_budget=over,
    )


def _row_json(row: PlanRow) -> dict[str, Any]:
    return {"jobs": row.jobs, "images": row.images, "usd": row.usd, "credits": row.credits}


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The plan as plain JSON values (for ``pipeline plan --json``)."""
    return {
        "name": plan.name,
        "manifest": plan.manifest_path,
        "output_dir": plan.output_dir,
        "totals": _row_json(plan.total),
        "providers": {name: _row_json(row) for name, row in plan.providers.items()},
        "variants": [{"variant": dict(row.variant), **_row_json(row)} for row in plan.variants],
        "budget": {
            "max_usd": plan.budget.max_usd,
            "max_credits": plan.budget.max_credits,
            "exceeded": plan.over_budget,
        },
    }
