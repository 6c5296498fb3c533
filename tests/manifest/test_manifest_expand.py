"""Expansion: precedence, sweeps, vars, job ids, CSV and prompts_file, output folder."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.errors import ManifestError
from pipeline.jobs import Budget, Job, JobParams, ProviderSettings
from pipeline.manifest import MAX_ID, load_manifest, slug
from pipeline.manifest._newjob import new_job
from pipeline.providers.specs import SPECS

from ._support import Write

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def test_bare_strings_get_builtin_defaults_and_position_ids(write: Write) -> None:
    """A bare string is a prompt with id p<n> and the built-in settings."""
    path = write("m.yaml", 'name: m\nprompts: ["a cat", "a dog"]\n')
    batch = load_manifest(path)
    assert [(j.id, j.prompt, j.provider) for j in batch.jobs] == [
        ("p1", "a cat", "wavespeed"),
        ("p2", "a dog", "wavespeed"),
    ]
    assert batch.jobs[0].params == JobParams("1:1", "1k", "png", 1, ())
    assert batch.jobs[0].variant == {}
    assert (batch.jobs[0].source, batch.jobs[0].line) == (path, 2)
    assert batch.name == "m"
    assert batch.manifest_path == path


def test_precedence_builtin_defaults_prompt_sweep(write: Write) -> None:
    """defaults beat built-ins, prompt fields beat defaults, sweep beats both."""
    path = write(
        "m.yaml",
        """
        name: m
        defaults: {aspect_ratio: "4:3", resolution: 2k, n: 2}
        sweep: {n: [3]}
        prompts:
          - prompt: from defaults
          - prompt: own fields
            aspect_ratio: "3:2"
            output_format: webp
        """,
    )
    first, second = load_manifest(path).jobs
    assert first.params == JobParams("4:3", "2k", "png", 3)
    assert first.variant == {"n": "3"}
    assert second.params == JobParams("3:2", "2k", "webp", 3)


def test_axis_set_by_prompt_is_not_swept(write: Write) -> None:
    """A prompt that sets a swept axis keeps its own value and is not multiplied by it."""
    path = write(
        "m.yaml",
        """
        name: m
        sweep:
          aspect_ratio: ["1:1", "16:9"]
          provider: [wavespeed, skills_video]
        prompts:
          - id: pinned
            prompt: x
            provider: skills_video
        """,
    )
    jobs = load_manifest(path).jobs
    assert [j.id for j in jobs] == ["pinned--1x1", "pinned--16x9"]
    assert {j.provider for j in jobs} == {"skills_video"}
    assert jobs[1].variant == {"aspect_ratio": "16:9"}


def test_prompts_with_and_without_own_settings_interleaved(write: Write) -> None:
    """Prompts that share their settings and prompts with their own, interleaved: each job
    gets its own prompt's resolved settings (prompts with the same ones share them)."""
    path = write(
        "m.yaml",
        """
        name: m
        defaults: {resolution: 2k}
        sweep:
          n: [1, 2]
          provider: [wavespeed, skills_video]
        prompts:
          - {id: a, prompt: plain}
          - {id: b, prompt: own, resolution: 1k, image_urls: ["https://x.test/1.png"]}
          - {id: c, prompt: "plain {x}", vars: {x: [one]}}
          - {id: d, prompt: pinned, provider: skills_video, n: 3}
          - {id: e, prompt: own again, resolution: 1k}
        """,
    )
    jobs = load_manifest(path).jobs
    got = {j.id: (j.provider, j.params) for j in jobs}
    assert got["a--2-skills-video"] == ("skills_video", JobParams("1:1", "2k", "png", 2))
    assert got["b--1-wavespeed"] == (
        "wavespeed",
        JobParams("1:1", "1k", "png", 1, ("https://x.test/1.png",)),
    )
    assert got["c--2-wavespeed-one"] == ("wavespeed", JobParams("1:1", "2k", "png", 2))
    assert got["c--2-wavespeed-one"][1] == got["a--2-wavespeed"][1]
    assert got["d"] == ("skills_video", JobParams("1:1", "2k", "png", 3))
    assert got["e--2-skills-video"] == ("skills_video", JobParams("1:1", "1k", "png", 2))
    assert [j.id for j in jobs][:4] == [
        "a--1-wavespeed",
        "a--1-skills-video",
        "a--2-wavespeed",
        "a--2-skills-video",
    ]
    assert jobs[8].variant == {"n": "1", "provider": "wavespeed", "x": "one"}


def test_problems_of_shared_settings_are_reported_per_prompt(write: Write) -> None:
    """A swept value one provider refuses is reported once for every prompt it affects,
    while a prompt's own value is reported against that prompt (settings shared between
    prompts still report each prompt)."""
    path = write(
        "m.yaml",
        """
        name: m
        sweep:
          provider: [wavespeed, skills_video]
          resolution: [1k, 4k]
        prompts:
          - {id: a, prompt: x}
          - {id: b, prompt: y}
          - {id: c, prompt: z, provider: skills_video, n: 5}
        """,
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert [str(issue) for issue in info.value.issues] == [
        f"{path}:6: sweep.resolution: '4k' is not one of 1k, 2k for skills_video "
        "(prompt 'a' and 2 more)",
        f"{path}:8: prompts[2].n: 5 is not within 1..4 for skills_video",
    ]


def test_cartesian_product_follows_written_axis_order(write: Write) -> None:
    """The first axis written varies slowest, and ids list values in that order."""
    body = "name: m\nsweep:\n  {a}\n  {b}\nprompts: [{{id: x, prompt: p}}]\n"
    ar = 'aspect_ratio: ["1:1", "16:9"]'
    pr = "provider: [wavespeed, skills_video]"
    jobs = load_manifest(write("ab.yaml", body.format(a=ar, b=pr))).jobs
    assert [j.id for j in jobs] == [
        "x--1x1-wavespeed",
        "x--1x1-skills-video",
        "x--16x9-wavespeed",
        "x--16x9-skills-video",
    ]
    jobs = load_manifest(write("ba.yaml", body.format(a=pr, b=ar))).jobs
    assert [j.id for j in jobs][:2] == ["x--wavespeed-1x1", "x--wavespeed-16x9"]
    assert list(jobs[0].variant) == ["provider", "aspect_ratio"]


def test_vars_expand_after_axes_with_design_example_id(write: Write) -> None:
    """The design's lighthouse example yields its documented id, prompt and variant."""
    path = write(
        "m.yaml",
        """
        name: spring
        sweep:
          aspect_ratio: ["1:1", "16:9"]
          provider: [wavespeed, skills_video]
        prompts:
          - id: lighthouse
            prompt: "A lighthouse at dusk, {style}"
            vars: {style: [oil painting, pixel art]}
            resolution: 2k
        """,
    )
    jobs = {j.id: j for j in load_manifest(path).jobs}
    assert len(jobs) == 8
    job = jobs["lighthouse--16x9-wavespeed-oil-painting"]
    assert job.prompt == "A lighthouse at dusk, oil painting"
    assert job.variant == {"aspect_ratio": "16:9", "provider": "wavespeed", "style": "oil painting"}
    assert job.params.resolution == "2k"
    assert job.prompt_id == "lighthouse"


def test_vars_single_string_and_literal_braces(write: Write) -> None:
    """A var may be one string; {{ and }} are literal braces; vars expand in written order."""
    path = write(
        "m.yaml",
        """
        name: m
        prompts:
          - id: t
            prompt: "{{json}} {a} {b}"
            vars: {b: ["1", "2"], a: only}
        """,
    )
    jobs = load_manifest(path).jobs
    assert [j.prompt for j in jobs] == ["{json} only 1", "{json} only 2"]
    assert [j.id for j in jobs] == ["t--1-only", "t--2-only"]
    assert list(jobs[0].variant) == ["b", "a"]


def test_ids_are_stable_unique_and_safe() -> None:
    """Two loads give the same ids; all are unique, safe and at most 120 characters."""
    path = Path(__file__).parents[2] / "jobs" / "demo.yaml"
    first = [j.id for j in load_manifest(path).jobs]
    second = [j.id for j in load_manifest(path).jobs]
    assert first == second
    assert len(set(first)) == len(first) == 12
    assert all(SAFE_ID.fullmatch(i) and len(i) <= MAX_ID for i in first)


def test_slug_collisions_and_long_ids_are_hashed(write: Write) -> None:
    """Variants equal after slugging, ids differing only in case, and long ids get a hash."""
    long_value = "word " * 40
    path = write(
        "m.yaml",
        f"""
        name: m
        prompts:
          - id: c
            prompt: "{{v}}"
            vars: {{v: ["a b", "a-b", "ok"]}}
          - {{id: Up, prompt: x}}
          - {{id: up, prompt: y}}
          - id: long
            prompt: "{{v}}"
            vars: {{v: ["{long_value}"]}}
        """,
    )
    ids = [j.id for j in load_manifest(path).jobs]
    hashed = re.compile(r"(c--a-b|Up|up)-[0-9a-f]{8}")
    assert all(hashed.fullmatch(i) for i in ids[:2] + ids[3:5]), ids
    assert ids[2] == "c--ok"
    assert len({i.casefold() for i in ids}) == len(ids)
    assert len(ids[5]) <= MAX_ID
    assert re.search(r"-[0-9a-f]{8}$", ids[5])
    assert ids == [j.id for j in load_manifest(path).jobs]


@pytest.mark.parametrize("by", ["slug", "case"])
def test_ids_that_clash_thousands_of_jobs_apart_are_hashed(by: str) -> None:
    """Ids are checked thousands at a time: a clash between far-apart jobs, in slug or in
    case, is found all the same."""
    values = ["a b", *(f"v{i}" for i in range(9000))]
    if by == "slug":
        values.append("a-b")  # c--a-b, as the first
    prompts: list[object] = [{"id": "c", "prompt": "{v}", "vars": {"v": values}}]
    prompts += [{"id": f"q{i}", "prompt": "x"} for i in range(3)]
    if by == "case":
        prompts.append({"id": "C--V7", "prompt": "y"})  # c--v7, folded
    ids = [j.id for j in load_manifest({"name": "m", "prompts": prompts}).jobs]
    clashing = [0, len(values) - 1] if by == "slug" else [8, len(ids) - 1]
    hashed = re.compile(r"(c--a-b|c--v7|C--V7)-[0-9a-f]{8}")
    assert all(hashed.fullmatch(ids[i]) for i in clashing), [ids[i] for i in clashing]
    assert ids[1:8] == [f"c--v{i}" for i in range(7)]
    assert ids[len(values) : len(values) + 3] == ["q0", "q1", "q2"]
    assert len({i.casefold() for i in ids}) == len(ids)


def test_slug_spelling() -> None:
    """Slugs are lower-case [a-z0-9-], ':' becomes 'x', accents are dropped."""
    assert slug("16:9") == "16x9"
    assert slug("Oil Painting!") == "oil-painting"
    assert slug("café au lait") == "cafe-au-lait"
    assert slug("skills_video") == "skills-video"


def test_settings_are_normalised(write: Write) -> None:
    """Resolution and format are case-insensitive, jpg means jpeg, unquoted 16:9 works."""
    path = write(
        "m.yaml",
        "name: m\nprompts:\n"
        "  - {prompt: x, resolution: 2K, output_format: JPG, aspect_ratio: 16:9}\n",
    )
    (job,) = load_manifest(path).jobs
    assert job.params == JobParams("16:9", "2k", "jpeg", 1)


def test_yaml_anchors_and_merge_keys(write: Write) -> None:
    """Anchors, aliases and << merges behave as in yaml.safe_load."""
    path = write(
        "m.yaml",
        """
        name: m
        defaults: &base {resolution: 2k, n: 2}
        prompts:
          - <<: *base
            prompt: merged
            n: 3
        """,
    )
    (job,) = load_manifest(path).jobs
    assert (job.params.resolution, job.params.n) == ("2k", 3)


def test_csv_manifest(write: Write) -> None:
    """A CSV manifest: name from the file stem, one job per row, lines of the rows."""
    path = write(
        "my jobs.csv",
        "ID,prompt,provider,n,image_urls,resolution\n"
        "a,first,skills_video,2,https://x.test/1.png | https://x.test/2.png,\n"
        "\n"
        ',"multi\nline",,,,2K\n',
    )
    batch = load_manifest(path)
    assert batch.name == "my-jobs"
    assert batch.output_dir == str(Path("out") / "my-jobs")
    a, b = batch.jobs
    assert (a.id, a.provider, a.params.n, a.line) == ("a", "skills_video", 2, 2)
    assert a.params.image_urls == ("https://x.test/1.png", "https://x.test/2.png")
    assert (b.id, b.prompt, b.provider, b.params.resolution, b.line) == (
        "p2",
        "multi\nline",
        "wavespeed",
        "2k",
        4,
    )


def test_prompts_file_relative_to_manifest_continues_ids(write: Write) -> None:
    """prompts_file is read beside the manifest and its rows continue the p<n> count."""
    write("sub/more.csv", "prompt,aspect_ratio\nfrom csv,9:16\n")
    write("sub/list.yaml", "- from yaml list\n- {id: named, prompt: y}\n")
    path = write(
        "sub/m.yaml",
        "name: m\nsweep: {n: [1, 2]}\nprompts: [a, b]\nprompts_file: more.csv\n",
    )
    jobs = load_manifest(path).jobs
    assert [j.id for j in jobs][-2:] == ["p3--1", "p3--2"]
    assert jobs[-1].source.endswith(str(Path("sub") / "more.csv"))
    assert (jobs[-1].line, jobs[-1].params.aspect_ratio) == (2, "9:16")
    path = write("sub/n.yaml", "name: n\nprompts_file: list.yaml\n")
    assert [j.id for j in load_manifest(path).jobs] == ["p1", "named"]


@pytest.mark.parametrize(
    ("manifest_out", "cli_out", "expected"),
    [
        (None, None, str(Path("out") / "m")),
        ("elsewhere/x", None, "elsewhere/x"),
        ("elsewhere/x", "cli/dir", "cli/dir"),
    ],
)
def test_output_dir_precedence(
    write: Write, manifest_out: str | None, cli_out: str | None, expected: str
) -> None:
    """--out beats the manifest's output_dir, which beats out/<name>."""
    extra = f"output_dir: {manifest_out}\n" if manifest_out else ""
    path = write("m.yaml", f"name: m\n{extra}prompts: [x]\n")
    assert load_manifest(path, out=cli_out).output_dir == expected


def test_provider_settings_for_used_providers(write: Write) -> None:
    """Every provider the jobs use gets settings, spec defaults filled in; unused ones none."""
    path = write(
        "m.yaml",
        """
        name: m
        providers:
          skills_video: {max_concurrent: 5, usd_per_credit: 0.002, base_url: "http://h:1/"}
          wavespeed: {requests_per_second: 9}
        budget: {max_usd: 3, max_credits: 400}
        prompts: [{prompt: x, provider: skills_video}]
        """,
    )
    batch = load_manifest(path)
    spec = SPECS["skills_video"]
    assert batch.providers == {
        "skills_video": ProviderSettings(
            requests_per_second=spec.default_requests_per_second,
            max_concurrent=5,
            job_timeout_s=spec.default_job_timeout_s,
            usd_per_credit=0.002,
            base_url="http://h:1",
        )
    }
    assert batch.budget == Budget(max_usd=3, max_credits=400)
    plain = load_manifest(write("p.yaml", "name: p\nprompts: [x]\n"))
    assert plain.providers["wavespeed"].base_url == SPECS["wavespeed"].default_base_url
    assert plain.budget == Budget()


def test_jobs_with_the_same_settings_share_their_records(write: Write) -> None:
    """Jobs alike but for the prompt share one params object and one variant dict."""
    path = write(
        "m.yaml",
        """
        name: m
        sweep: {aspect_ratio: ["1:1", "16:9"], provider: [wavespeed, skills_video]}
        prompts: [a, b, c, {prompt: "d {s}", vars: {s: [x, y]}}]
        """,
    )
    jobs = load_manifest(path).jobs
    by_variant: dict[tuple[str, ...], list[Job]] = {}
    for job in jobs[:12]:  # the prompts without vars
        by_variant.setdefault(tuple(job.variant.values()), []).append(job)
    assert len(by_variant) == 4
    for alike in by_variant.values():
        assert [j.prompt for j in alike] == ["a", "b", "c"]
        assert all(j.params is alike[0].params for j in alike)
        assert all(j.variant is alike[0].variant for j in alike)
    with_vars = jobs[12:]
    assert [j.variant for j in with_vars[:2]] == [
        {"aspect_ratio": "1:1", "provider": "wavespeed", "s": "x"},
        {"aspect_ratio": "1:1", "provider": "wavespeed", "s": "y"},
    ]
    assert with_vars[0].params is by_variant[("1:1", "wavespeed")][0].params


def test_new_job_is_the_same_record_as_job() -> None:
    """new_job (no dataclass __init__) makes a Job equal to one made by Job(...)."""
    params = JobParams(aspect_ratio="16:9", n=2)
    values = ("p--16x9", "p", "wavespeed", "a cat", params, {"aspect_ratio": "16:9"}, "m.yaml", 3)
    made = new_job(*values)
    assert type(made) is Job
    assert made == Job(*values)
    assert tuple(getattr(made, f.name) for f in dataclasses.fields(Job)) == values
    assert replace(made, id="q") == Job("q", *values[1:])
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.id = "other"  # type: ignore[misc]
