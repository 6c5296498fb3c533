"""skills.video adapter: request and status mapping (both spellings), running list, cost."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pipeline.emulator import EmulatorConfig, EmulatorServer
from pipeline.errors import ProviderError
from pipeline.providers._body import Fields
from pipeline.providers._registry import ADAPTERS, create_adapter
from pipeline.providers._skills_video import (
    SkillsVideoAdapter,
    failure_retryable,
    parse_generation,
    request_for,
)
from pipeline.providers.base import ImageRef, ListedTask, TaskState, TaskStatus

from ._support import KEY, make_job, wait_done

Tasks = Callable[[str], Awaitable[list[dict[str, Any]]]]
REF = "https://example.com/ref.png"
SLOW = EmulatorConfig(latency_s=30.0, image_scale=0.125)
IMAGE = {"url": "https://x/1.png", "width": 1024, "height": 576, "content_type": "image/png"}


def _gen(**fields: Any) -> TaskStatus:
    return parse_generation(Fields({"id": "gen_1", **fields}, provider="skills_video"))


# --- pure mapping -----------------------------------------------------------------------


def test_body_text_only() -> None:
    """Resolution is upper case, and image_urls is left out when there are none."""
    body = request_for(make_job(resolution="2k", aspect_ratio="3:2", n=4, output_format="webp"))
    assert body == {
        "prompt": "a lighthouse at dusk",
        "resolution": "2K",
        "aspect_ratio": "3:2",
        "output_format": "webp",
        "n": 4,
    }


def test_body_with_images() -> None:
    """image_urls is sent as a list when the job has some."""
    assert request_for(make_job(image_urls=[REF]))["image_urls"] == [REF]


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("IN_QUEUE", TaskState.QUEUED),
        ("starting", TaskState.QUEUED),
        ("IN_PROGRESS", TaskState.RUNNING),
        ("processing", TaskState.RUNNING),
        ("something_new", TaskState.RUNNING),
        ("FAILED", TaskState.FAILED),
        ("failed", TaskState.FAILED),
        ("CANCELED", TaskState.FAILED),
        ("canceled", TaskState.FAILED),
        ("CANCELLED", TaskState.FAILED),
    ],
)
def test_statuses_both_spellings(status: str, state: TaskState) -> None:
    """Both documented spellings map to the same state; unknown ones read as running."""
    assert _gen(status=status, data=None).state is state


@pytest.mark.parametrize("status", ["COMPLETED", "succeeded"])
def test_completed_images(status: str) -> None:
    """Completed images keep url, size and content type; usage is kept verbatim."""
    usage = {"total": 40, "subscription": 40, "permanent": 0, "extra": [1]}
    got = _gen(status=status, data={"images": [IMAGE, IMAGE], "image": IMAGE}, usage=usage)
    assert got.state is TaskState.COMPLETED
    assert got.images == (ImageRef("https://x/1.png", 1024, 576, "image/png"),) * 2
    assert got.usage == usage


def test_completed_falls_back_to_image() -> None:
    """Without ``images``, the single ``image`` is used."""
    got = _gen(status="COMPLETED", data={"image": {"url": "https://x/1.png"}})
    assert got.images == (ImageRef("https://x/1.png"),)


def test_failed_generation() -> None:
    """A failure carries the generation's code and message."""
    got = _gen(status="FAILED", code="IMAGE_GENERATION_FAILED", message="Image generation failed")
    assert (got.error_code, got.error_message, got.retryable) == (
        "IMAGE_GENERATION_FAILED",
        "Image generation failed",
        True,
    )


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("IMAGE_GENERATION_FAILED", True),
        ("IMAGE_GENERATION_UPSTREAM_FAILED", True),
        ("IMAGE_GENERATION_TIMEOUT", True),
        ("IMAGE_GENERATION_PROVIDER_UNAVAILABLE", True),
        ("INTERNAL_ERROR", True),
        ("IMAGE_GENERATION_CONTENT_REJECTED", False),
        ("IMAGE_GENERATION_INVALID_INPUT", False),
        ("IMAGE_GENERATION_INSUFFICIENT_CREDITS", False),
        ("SOMETHING_ELSE", False),
        (None, False),
    ],
)
def test_failure_retryable_table(code: str | None, retryable: bool) -> None:
    """Transient failure codes are retryable, content/input/credit ones and unknowns not."""
    assert failure_retryable(code) is retryable


def test_cancelled_is_final() -> None:
    """A cancelled generation without a code is final, coded by its status."""
    got = _gen(status="CANCELED")
    assert (got.error_code, got.retryable) == ("CANCELED", False)


@pytest.mark.parametrize(
    "fields",
    [
        {"status": 1},
        {"status": "COMPLETED", "data": None},
        {"status": "COMPLETED", "data": {"type": "image"}},
        {"status": "COMPLETED", "data": {"images": "https://x/1.png"}},
        {"status": "COMPLETED", "data": {"images": [{"width": 3}]}},
    ],
)
def test_bad_generations(fields: dict[str, Any]) -> None:
    """Ill-typed status, or completed without readable images, is a retryable bad_response."""
    with pytest.raises(ProviderError) as info:
        _gen(**fields)
    assert (info.value.code, info.value.retryable) == ("bad_response", True)


def _status(usage: dict[str, Any]) -> TaskStatus:
    return TaskStatus("gen_1", TaskState.COMPLETED, usage=usage)


def test_cost_reported_with_rate() -> None:
    """Reported credits convert to USD with usd_per_credit."""
    adapter = SkillsVideoAdapter(base_url="http://127.0.0.1:9", api_key=KEY, usd_per_credit=0.0014)
    cost = adapter.cost(make_job(n=2), _status({"total": 40, "subscription": 40}))
    assert (cost.credits, cost.basis) == (40.0, "reported")
    assert cost.usd == pytest.approx(0.056)


def test_cost_reported_without_rate() -> None:
    """Without usd_per_credit, the cost is credits only."""
    adapter = SkillsVideoAdapter(base_url="http://127.0.0.1:9", api_key=KEY)
    cost = adapter.cost(make_job(), _status({"total": 20}))
    assert (cost.usd, cost.credits, cost.basis) == (None, 20.0, "reported")


@pytest.mark.parametrize("usage", [{}, {"total": "20"}, {"total": True}])
def test_cost_estimate_without_usage(usage: dict[str, Any]) -> None:
    """Missing or ill-typed usage falls back to the spec's estimate."""
    adapter = SkillsVideoAdapter(base_url="http://127.0.0.1:9", api_key=KEY, usd_per_credit=0.001)
    cost = adapter.cost(make_job(resolution="2k", n=2), _status(usage))
    assert (cost.credits, cost.basis) == (80.0, "estimate")
    assert cost.usd == pytest.approx(0.08)


def test_running_task_matches() -> None:
    """A running task matches the job whose prompt it has, unless an echoed field differs."""
    job = make_job(resolution="2k", aspect_ratio="1:1", n=2)
    sent = request_for(job)
    adapter = SkillsVideoAdapter(base_url="http://127.0.0.1:9", api_key=KEY)

    def matches(echoed: dict[str, Any] | None) -> bool:
        return adapter.matches(ListedTask("g", TaskState.RUNNING, input=echoed), job)

    assert matches(sent)
    assert matches({**sent, "resolution": "2048x2048"})
    assert not matches({**sent, "n": 1})
    assert not matches({**sent, "resolution": "1K"})
    assert not matches({**sent, "prompt": "x"})
    assert not matches({})
    assert not matches(None)


# --- against the emulator ---------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("resolution", "n"), [("1k", 1), ("2k", 4)])
async def test_submit_and_poll_to_completion(
    skills: SkillsVideoAdapter,
    emulator: EmulatorServer,
    emulator_tasks: Tasks,
    resolution: str,
    n: int,
) -> None:
    """Submit sends the exact body; completion gives n sized images and reported credits."""
    job = make_job(aspect_ratio="16:9", resolution=resolution, n=n, output_format="webp")
    submitted = await skills.submit(job)
    assert submitted.state is TaskState.QUEUED
    assert submitted.usage["total"] > 0
    done = await wait_done(skills, submitted.remote_id)
    assert done.state is TaskState.COMPLETED
    assert len(done.images) == n
    for image in done.images:
        assert image.url.startswith(emulator.base_url)
        assert image.content_type == "image/webp"
        assert image.width is not None
        assert image.height is not None
        assert image.width > image.height
    [task] = await emulator_tasks("skills_video")
    assert task["input"] == request_for(job)
    cost = skills.cost(job, done)
    charged = emulator.stats().skills_video.charged
    assert (cost.basis, cost.credits) == ("reported", charged)
    assert cost.usd == pytest.approx(charged * 0.002)


@pytest.mark.anyio
async def test_image_urls_sent(skills: SkillsVideoAdapter, emulator_tasks: Tasks) -> None:
    """Reference images are sent as image_urls and the generation completes."""
    job = make_job("@Image1 and @Image2 together", image_urls=[REF, REF + "?2"])
    done = await wait_done(skills, (await skills.submit(job)).remote_id)
    assert done.state is TaskState.COMPLETED
    [task] = await emulator_tasks("skills_video")
    assert task["input"]["image_urls"] == [REF, REF + "?2"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(latency_s=0.0, skills_status_style="lower")]
)
async def test_lower_case_spelling(skills: SkillsVideoAdapter) -> None:
    """The lower-case spelling (starting/succeeded/failed) maps the same way."""
    submitted = await skills.submit(make_job())
    assert submitted.state is TaskState.QUEUED
    assert (await wait_done(skills, submitted.remote_id)).state is TaskState.COMPLETED
    failed = await wait_done(skills, (await skills.submit(make_job("[[fail]]"))).remote_id)
    assert (failed.state, failed.error_code) == (TaskState.FAILED, "IMAGE_GENERATION_FAILED")


@pytest.mark.anyio
@pytest.mark.parametrize("emulator_config", [EmulatorConfig(latency_s=0.0, image_scale=0.125)])
async def test_failed_generation_from_emulator(skills: SkillsVideoAdapter) -> None:
    """A failed generation is FAILED, retryable, with the provider's message."""
    status = await wait_done(skills, (await skills.submit(make_job("x [[fail]]"))).remote_id)
    assert (status.state, status.error_code, status.retryable) == (
        TaskState.FAILED,
        "IMAGE_GENERATION_FAILED",
        True,
    )
    assert status.error_message


@pytest.mark.anyio
@pytest.mark.parametrize("emulator_config", [SLOW])
async def test_running_lists_unfinished(skills: SkillsVideoAdapter) -> None:
    """running() lists unfinished generations with their input, matchable to their job."""
    first, second = make_job("first prompt"), make_job("second prompt", n=2)
    ids = [(await skills.submit(job)).remote_id for job in (first, second)]
    running = await skills.running()
    assert running is not None
    assert sorted(t.remote_id for t in running) == sorted(ids)
    assert all(not t.state.terminal for t in running)
    by_id = {t.remote_id: t for t in running}
    assert skills.matches(by_id[ids[0]], first)
    assert not skills.matches(by_id[ids[0]], second)
    assert skills.matches(by_id[ids[1]], second)
    assert by_id[ids[1]].usage["total"] > 0
    assert len(await skills.running(limit=1) or []) == 1
    assert len(await skills.running(limit=500) or []) == 2


@pytest.mark.anyio
async def test_cancel_is_unsupported(skills: SkillsVideoAdapter, emulator: EmulatorServer) -> None:
    """skills.video has no cancel: False, and nothing is sent."""
    before = emulator.stats().skills_video.requests
    assert await skills.cancel("gen_1") is False
    assert emulator.stats().skills_video.requests == before


@pytest.mark.anyio
async def test_registry_builds_skills(emulator: EmulatorServer) -> None:
    """create_adapter('skills_video') passes usd_per_credit through."""
    assert set(ADAPTERS) == {"wavespeed", "skills_video"}
    adapter = create_adapter(
        "skills_video", base_url=emulator.base_url, api_key=KEY, usd_per_credit=0.5
    )
    try:
        assert isinstance(adapter, SkillsVideoAdapter)
        done = await wait_done(adapter, (await adapter.submit(make_job())).remote_id)
        assert adapter.cost(make_job(), done).usd == pytest.approx(10.0)
    finally:
        await adapter.aclose()
