"""plan: job and image counts, cost estimates per provider and variant, budget check."""

from __future__ import annotations

import json

import pytest

from pipeline.jobs import Batch, Job, JobParams, ProviderSettings
from pipeline.manifest import load_manifest
from pipeline.manifest._plan import PlanRow, make_plan, plan_to_json

from ._support import Write


def test_wavespeed_prices_per_image_by_resolution(write: Write) -> None:
    """wavespeed: $0.028 per image at 1k and 2k, $0.056 at 4k, times n."""
    path = write(
        "m.yaml",
        """
        name: w
        prompts:
          - {prompt: a, resolution: 1k, n: 2}
          - {prompt: b, resolution: 2k}
          - {prompt: c, resolution: 4k, n: 3}
        """,
    )
    plan = make_plan(load_manifest(path))
    assert plan.providers == {"wavespeed": PlanRow(3, 6, 0.252, None, 0.252)}
    assert plan.total == PlanRow(3, 6, 0.252, None, 0.252)
    assert plan.variants == ()
    assert plan.over_budget is False


def test_skills_video_credits_times_usd_per_credit(write: Write) -> None:
    """skills_video: credits per image (20 at 1k, 40 at 2k) times usd_per_credit."""
    body = """
        name: s
        {providers}
        prompts:
          - {{prompt: a, provider: skills_video, n: 2}}
          - {{prompt: b, provider: skills_video, resolution: 2k}}
        """
    priced = write(
        "p.yaml", body.format(providers="providers: {skills_video: {usd_per_credit: 0.01}}")
    )
    row = make_plan(load_manifest(priced)).providers["skills_video"]
    assert (row.jobs, row.images, row.credits, row.usd) == (2, 3, 80.0, 0.8)
    unpriced = write("u.yaml", body.format(providers=""))
    plan = make_plan(load_manifest(unpriced))
    assert (plan.providers["skills_video"].usd, plan.providers["skills_video"].credits) == (
        None,
        80,
    )
    assert plan.total.usd is None


def test_rows_per_provider_and_sweep_variant(write: Write) -> None:
    """Variants group by swept axes (vars left out); a pinned prompt counts under its value."""
    path = write(
        "m.yaml",
        """
        name: v
        providers: {skills_video: {usd_per_credit: 0.001}}
        sweep:
          aspect_ratio: ["1:1", "16:9"]
          provider: [wavespeed, skills_video]
        prompts:
          - prompt: "x {s}"
            vars: {s: [a, b]}
          - {prompt: pinned, aspect_ratio: "16:9"}
        """,
    )
    plan = make_plan(load_manifest(path))
    assert plan.total.jobs == 10
    assert plan.providers["wavespeed"] == PlanRow(5, 5, 0.14, None, 0.14)
    assert plan.providers["skills_video"] == PlanRow(5, 5, 0.1, 100.0, 0.1)
    by_variant = {tuple(r.variant.values()): (r.jobs, r.usd) for r in plan.variants}
    assert by_variant == {
        ("1:1", "wavespeed"): (2, 0.056),
        ("1:1", "skills_video"): (2, 0.04),
        ("16:9", "wavespeed"): (3, 0.084),
        ("16:9", "skills_video"): (3, 0.06),
    }
    assert list(plan.variants[0].variant) == ["aspect_ratio", "provider"]


@pytest.mark.parametrize(
    ("budget", "over"),
    [
        ("{max_usd: 1}", False),
        ("{max_usd: 0.05}", True),
        ("{max_credits: 1000}", False),
        ("{max_credits: 10}", True),
    ],
)
def test_budget_exceeded(write: Write, budget: str, over: bool) -> None:
    """The plan says whether the estimate passes max_usd or max_credits."""
    path = write(
        "m.yaml",
        f"""
        name: b
        budget: {budget}
        prompts:
          - {{prompt: a, n: 3}}
          - {{prompt: b, provider: skills_video}}
        """,
    )
    assert make_plan(load_manifest(path)).over_budget is over


def test_plan_to_json_is_plain_json(write: Write) -> None:
    """plan_to_json gives totals, providers, variants and budget as JSON values."""
    path = write(
        "m.yaml",
        """
        name: j
        budget: {max_usd: 0.01}
        sweep: {n: [1, 2]}
        prompts: [a]
        """,
    )
    data = json.loads(json.dumps(plan_to_json(make_plan(load_manifest(path)))))
    assert data["name"] == "j"
    assert data["totals"] == {"jobs": 2, "images": 3, "usd": 0.084, "credits": None}
    assert data["providers"]["wavespeed"]["images"] == 3
    assert data["variants"][1] == {
        "variant": {"n": "2"},
        "jobs": 1,
        "images": 2,
        "usd": 0.056,
        "credits": None,
    }
    assert data["budget"] == {"max_usd": 0.01, "max_credits": None, "exceeded": True}


def test_plan_counts_alike_jobs_per_group_as_per_job() -> None:
    """Jobs counted by group (provider, params, variant keys) give the per-job sums, in
    the order first seen, whether or not alike jobs share one params object."""
    one = JobParams()
    variant = {"aspect_ratio": "1:1"}
    jobs = [
        *(Job(f"a{i}", "a", "wavespeed", "x", one, variant) for i in range(1000)),
        Job("b", "b", "skills_video", "x", JobParams(n=2), {"aspect_ratio": "1:1"}),
        *(
            Job(f"c{i}", "c", "wavespeed", "x", JobParams(), {"aspect_ratio": "1:1"})
            for i in range(3)
        ),
        Job("d", "d", "wavespeed", "x", JobParams(aspect_ratio="4:3"), {"aspect_ratio": "4:3"}),
        Job("e", "e", "wavespeed", "x", one, {"aspect_ratio": "1:1", "s": "v"}),
    ]
    settings = ProviderSettings(1.0, 1, 60.0, usd_per_credit=0.001)
    batch = Batch(
        "b", "m.yaml", "out", tuple(jobs), {"wavespeed": settings, "skills_video": settings}
    )
    plan = make_plan(batch)
    assert list(plan.providers) == ["wavespeed", "skills_video"]
    assert plan.providers["wavespeed"] == PlanRow(1005, 1005, 28.14, None, 28.14)
    assert plan.providers["skills_video"] == PlanRow(1, 2, 0.04, 40.0, 0.04)
    assert plan.total == PlanRow(1006, 1007, 28.18, 40.0, 28.18)
    rows = [(r.variant, r.jobs, r.images) for r in plan.variants]
    assert rows == [
        ({"aspect_ratio": "1:1"}, 1005, 1006),
        ({"aspect_ratio": "4:3"}, 1, 1),
    ]
