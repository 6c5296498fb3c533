"""WaveSpeed adapter: request and status mapping, failure table, cost, against the emulator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pipeline.emulator import EmulatorConfig, EmulatorServer
from pipeline.errors import AuthError, ProviderError
from pipeline.providers._body import Fields
from pipeline.providers._registry import create_adapter
from pipeline.providers._wavespeed import (
    EDIT_PATH,
    TEXT_TO_IMAGE_PATH,
    WaveSpeedAdapter,
    parse_prediction,
    request_for,
    unwrap,
)
from pipeline.providers.base import ImageRef, TaskState, TaskStatus

from ._support import make_job, wait_done

Tasks = Callable[[str], Awaitable[list[dict[str, Any]]]]
REF = "https://example.com/ref.png"


def _prediction(**data: Any) -> TaskStatus:
    return parse_prediction(Fields({"id": "t1", **data}, provider="wavespeed", where="data"))


# --- pure mapping -----------------------------------------------------------------------


def test_text_to_image_body() -> None:
    """A job without images goes to text-to-image with every field explicit."""
    path, body = request_for(make_job(aspect_ratio="16:9", resolution="2k", n=3))
    assert path == TEXT_TO_IMAGE_PATH
    assert body == {
        "prompt": "a lighthouse at dusk",
        "aspect_ratio": "16:9",
        "resolution": "2k",
        "num_images": 3,
        "output_format": "png",
    }


def test_edit_body() -> None:
    """A job with image_urls goes to the edit endpoint with ``images``."""
    path, body = request_for(make_job(image_urls=[REF]))
    assert path == EDIT_PATH
    assert body["images"] == [REF]


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("created", TaskState.QUEUED),
        ("processing", TaskState.RUNNING),
        ("PROCESSING", TaskState.RUNNING),
        ("warming_up", TaskState.RUNNING),
    ],
)
def test_open_states(status: str, state: TaskState) -> None:
    """Non-terminal statuses (and unknown ones) are not terminal."""
    assert _prediction(status=status, outputs=[]).state is state


def test_completed_outputs() -> None:
    """Completed outputs become ImageRefs; URL objects are accepted too."""
    got = _prediction(status="completed", outputs=["https://x/1.png", {"url": "https://x/2.png"}])
    assert got.state is TaskState.COMPLETED
    assert got.images == (ImageRef("https://x/1.png"), ImageRef("https://x/2.png"))
    assert got.usage == {}


@pytest.mark.parametrize(
    ("data", "code", "retryable"),
    [
        ({"status": "failed", "code": 1200, "error": "flagged"}, "1200", False),
        ({"status": "failed", "code": 1400}, "1400", False),
        ({"status": "failed", "code": 1401}, "1401", False),
        ({"status": "failed", "code": 1402}, "1402", False),
        ({"status": "failed", "code": 1403}, "1403", True),
        ({"status": "failed", "code": "1405"}, "1405", True),
        ({"status": "failed", "code": 5000}, "5000", True),
        ({"status": "failed", "code": 5003}, "5003", True),
        ({"status": "failed", "code": 5004}, "5004", True),
        ({"status": "failed"}, "failed", False),
        ({"status": "timeout"}, "timeout", True),
        ({"status": "cancelled"}, "cancelled", False),
        ({"status": "deleted"}, "expired", False),
    ],
)
def test_failure_table(data: dict[str, Any], code: str, retryable: bool) -> None:
    """Failed, timed-out, cancelled and deleted tasks map per the module's table."""
    got = _prediction(**data)
    assert got.state is TaskState.FAILED
    assert (got.error_code, got.retryable) == (code, retryable)


def test_failure_message() -> None:
    """``data.error`` becomes the error message."""
    got = _prediction(status="failed", code=1200, error="Content flagged")
    assert got.error_message == "Content flagged"


@pytest.mark.parametrize(
    "data",
    [
        {"status": 3},
        {"status": None},
        {"status": "completed"},
        {"status": "completed", "outputs": "https://x/1.png"},
        {"status": "completed", "outputs": [7]},
        {"status": "processing", "outputs": {}},
    ],
)
def test_bad_predictions(data: dict[str, Any]) -> None:
    """Ill-typed status or outputs give a retryable bad_response, never a TypeError."""
    with pytest.raises(ProviderError) as info:
        _prediction(**data)
    assert (info.value.code, info.value.retryable) == ("bad_response", True)


def test_missing_id() -> None:
    """A prediction without an id is a bad response."""
    with pytest.raises(ProviderError, match=r"data\.id"):
        parse_prediction(Fields({"status": "created"}, provider="wavespeed", where="data"))


def test_envelope_error_code_on_200() -> None:
    """A 200 whose envelope says 401 and carries no data is an AuthError."""
    with pytest.raises(AuthError):
        unwrap({"code": 401, "message": "Unauthorized"})


def test_envelope_without_data() -> None:
    """An envelope without ``data`` is a bad response."""
    with pytest.raises(ProviderError, match=r"response\.data"):
        unwrap({"code": 200, "message": "success"})


@pytest.mark.parametrize(
    ("resolution", "n", "usd"), [("1k", 1, 0.028), ("2k", 3, 0.084), ("4k", 2, 0.112)]
)
def test_cost_price_table(resolution: str, n: int, usd: float) -> None:
    """1k and 2k cost 0.028 per image, 4k 0.056; completed counts images returned."""
    adapter = WaveSpeedAdapter(base_url="http://127.0.0.1:9", api_key="k")
    job = make_job(resolution=resolution, n=n)
    images = tuple(ImageRef(f"https://x/{k}") for k in range(n))
    done = TaskStatus("t", TaskState.COMPLETED, images=images)
    assert adapter.cost(job, done) == adapter.cost(job, TaskStatus("t", TaskState.FAILED))
    cost = adapter.cost(job, done)
    assert cost.basis == "price_table"
    assert cost.credits is None
    assert cost.usd == pytest.approx(usd)
    fewer = TaskStatus("t", TaskState.COMPLETED, images=images[:1])
    assert adapter.cost(job, fewer).usd == pytest.approx(usd / n)


# --- against the emulator ---------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("resolution", "n"), [("1k", 1), ("2k", 3), ("4k", 2)])
async def test_submit_and_poll_to_completion(
    wavespeed: WaveSpeedAdapter,
    emulator: EmulatorServer,
    emulator_tasks: Tasks,
    resolution: str,
    n: int,
) -> None:
    """Submit creates a queued task with the exact body; polling ends with n image URLs."""
    job = make_job(aspect_ratio="9:16", resolution=resolution, n=n, output_format="jpeg")
    submitted = await wavespeed.submit(job)
    assert submitted.state is TaskState.QUEUED
    done = await wait_done(wavespeed, submitted.remote_id)
    assert done.state is TaskState.COMPLETED
    assert done.remote_id == submitted.remote_id
    assert len(done.images) == n
    assert all(i.url.startswith(emulator.base_url) for i in done.images)
    [task] = await emulator_tasks("wavespeed")
    assert task["model"] == "kwaivgi/kling-image-o3/text-to-image"
    assert task["input"] == request_for(job)[1]
    charged = emulator.stats().wavespeed.charged
    assert wavespeed.cost(job, done).usd == pytest.approx(charged)


@pytest.mark.anyio
async def test_edit_with_image_urls(wavespeed: WaveSpeedAdapter, emulator_tasks: Tasks) -> None:
    """A job with image_urls is an edit: ``images`` sent, ``auto`` aspect accepted."""
    job = make_job("@Image1 as a watercolour", image_urls=[REF], aspect_ratio="auto")
    done = await wait_done(wavespeed, (await wavespeed.submit(job)).remote_id)
    assert done.state is TaskState.COMPLETED
    [task] = await emulator_tasks("wavespeed")
    assert task["model"] == "kwaivgi/kling-image-o3/edit"
    assert task["input"]["images"] == [REF]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("marker", "code", "retryable"), [("[[fail]]", "1403", True), ("[[reject]]", "1200", False)]
)
async def test_failed_tasks(
    wavespeed: WaveSpeedAdapter, marker: str, code: str, retryable: bool
) -> None:
    """Task failures come back FAILED with the provider's code and message."""
    status = await wait_done(wavespeed, (await wavespeed.submit(make_job(marker))).remote_id)
    assert status.state is TaskState.FAILED
    assert (status.error_code, status.retryable) == (code, retryable)
    assert status.error_message


@pytest.mark.anyio
@pytest.mark.parametrize("emulator_config", [EmulatorConfig(latency_s=30.0, image_scale=0.125)])
async def test_cancel_deletes(wavespeed: WaveSpeedAdapter) -> None:
    """cancel() deletes a running task; a second cancel finds nothing; polls then 404."""
    submitted = await wavespeed.submit(make_job())
    assert (await wavespeed.poll(submitted.remote_id)).state is TaskState.RUNNING
    assert await wavespeed.cancel(submitted.remote_id) is True
    assert await wavespeed.cancel(submitted.remote_id) is False
    with pytest.raises(ProviderError) as info:
        await wavespeed.poll(submitted.remote_id)
    assert (info.value.http_status, info.value.retryable) == (404, False)


@pytest.mark.anyio
async def test_registry_builds_wavespeed(emulator: EmulatorServer) -> None:
    """create_adapter('wavespeed') gives a working WaveSpeed adapter."""
    adapter = create_adapter("wavespeed", base_url=emulator.base_url, api_key="k")
    try:
        assert isinstance(adapter, WaveSpeedAdapter)
        assert (await adapter.submit(make_job())).state is TaskState.QUEUED
    finally:
        await adapter.aclose()
