"""Manifest edits between runs: the fast fingerprint equals the documented one, and the
sync plan archives, restores, inserts, retires and brings back exactly what it should."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.jobs import Job, JobParams
from pipeline.store._edits import (
    fingerprint,
    job_document,
    job_fingerprints,
    plan_sync,
    stored_document,
    stored_documents,
)

_text = st.text(max_size=30)


@given(
    prompt=_text,
    provider=st.sampled_from(["wavespeed", "skills_video", "ünï"]),
    aspect=_text,
    resolution=_text,
    fmt=_text,
    n=st.integers(min_value=-5, max_value=10**12),
    urls=st.lists(_text, max_size=3),
)
def test_job_fingerprint_equals_the_document_fingerprint(
    prompt: str, provider: str, aspect: str, resolution: str, fmt: str, n: int, urls: list[str]
) -> None:
    """The fast fingerprint is byte-for-byte the documented one, for any text."""
    params = JobParams(aspect, resolution, fmt, n, tuple(urls))
    job = Job(id="x", prompt_id="x", provider=provider, prompt=prompt, params=params)
    assert job_fingerprints([job]) == [fingerprint(job_document(job, "any-model"))]


@given(
    prompt=_text,
    prompt_id=_text,
    provider=st.sampled_from(["wavespeed", "skills_video", "ünï"]),
    model=_text,
    aspect=_text,
    n=st.integers(min_value=-5, max_value=10**12),
    urls=st.lists(_text, max_size=3),
    variant=st.dictionaries(_text, _text, max_size=3),
)
def test_stored_documents_are_the_documented_text(
    prompt: str,
    prompt_id: str,
    provider: str,
    model: str,
    aspect: str,
    n: int,
    urls: list[str],
    variant: dict[str, str],
) -> None:
    """The fast spelling of a job's stored document is byte-for-byte ``stored_document``,
    for any text, with params and variants shared between jobs or not."""
    params = JobParams(aspect, "2k", "png", n, tuple(urls))
    jobs = [
        Job(
            id="x",
            prompt_id=prompt_id,
            provider=provider,
            prompt=prompt,
            params=params,
            variant=variant,
        ),
        Job(
            id="y", prompt_id="p", provider=provider, prompt="other", params=params, variant=variant
        ),
        Job(id="z", prompt_id="p", provider=provider, prompt=prompt, params=JobParams()),
    ]
    models = {provider: model}
    expected = [stored_document(job_document(job, model)) for job in jobs]
    assert list(stored_documents(jobs, [0, 1, 2], models)) == expected
    assert list(stored_documents(jobs, [2, 0], models)) == [expected[2], expected[0]]


def test_jobs_sharing_params_are_fingerprinted_as_each_alone() -> None:
    """job_fingerprints spells a params object shared by many jobs once; every job still
    gets its own document's fingerprint (equal params in distinct objects too)."""
    shared = JobParams("16:9", "2k", "png", 2, ("https://x/a.png",))
    params = [shared, JobParams(), shared, JobParams("16:9", "2k", "png", 2, ("https://x/a.png",))]
    jobs = [
        Job(id=f"j{i}", prompt_id="p", provider=provider, prompt=f"prompt {i % 2}", params=p)
        for i, p in enumerate(params)
        for provider in ("wavespeed", "skills_video")
    ]
    expected = [fingerprint(job_document(job, "m")) for job in jobs]
    assert job_fingerprints(jobs) == expected
    assert len(set(expected)) == 6  # prompt 0 with equal params twice, on two providers


def test_plan_sync_covers_every_kind_of_edit() -> None:
    """New, unchanged, edited, edited back, removed and returning jobs, in one plan."""
    existing = [
        ("same", "f1", False),
        ("edited", "f2", False),
        ("back", "f3", False),
        ("back~f4f4f4f4", "f4f4f4f4", True),
        ("gone", "f5", False),
        ("returning", "f6", True),
    ]
    wanted = [
        ("same", "wavespeed", "f1"),
        ("edited", "wavespeed", "f2-new"),
        ("back", "wavespeed", "f4f4f4f4"),
        ("returning", "wavespeed", "f6"),
        ("new", "skills_video", "f7"),
    ]
    plan = plan_sync(existing, wanted, next_seq=10)
    assert plan.archive == [("edited", "edited~f2"), ("back", "back~f3")]
    assert plan.restore == [("back~f4f4f4f4", "back")]
    assert plan.insert == [
        (1, "edited", 11, "wavespeed", "f2-new"),
        (4, "new", 14, "skills_video", "f7"),
    ]
    assert plan.retire == ["gone"]
    assert plan.unretire == ["returning"]
    assert not plan_sync(existing[:1], wanted[:1], next_seq=1)
