"""skills.video adapter: the SSE submit (``stream``), its errors and dropped streams,
against the emulator."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import pytest

from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile, serve
from pipeline.errors import (
    AuthError,
    InsufficientCredits,
    OutcomeUnknown,
    ProviderError,
    ProviderUnreachable,
    RateLimited,
)
from pipeline.jobs import Job
from pipeline.providers import StreamDropped, TaskState, TaskStatus
from pipeline.providers._skills_video import SkillsVideoAdapter

from ._support import KEY, make_job, wait_done

pytestmark = pytest.mark.anyio


def _config(latency_s: float = 0.0, queue_s: float = 0.0, **faults: Any) -> EmulatorConfig:
    profile = FaultProfile(**faults)
    return EmulatorConfig(latency_s=latency_s, queue_s=queue_s, image_scale=0.125, faults=profile)


def _adapter(server: EmulatorServer) -> SkillsVideoAdapter:
    return SkillsVideoAdapter(base_url=server.base_url, api_key=KEY, usd_per_credit=0.002)


async def _collect(adapter: SkillsVideoAdapter, job: Job, into: list[TaskStatus]) -> None:
    async with aclosing(adapter.stream(job)) as statuses:
        async for status in statuses:
            into.append(status)


async def test_stream_yields_each_status_to_the_end() -> None:
    """One status per frame: queued (with the id) first, completed with images last."""
    async with serve(_config(latency_s=0.1, queue_s=0.05)) as server, _adapter(server) as sv:
        seen: list[TaskStatus] = []
        await _collect(sv, make_job(n=2), seen)
    assert [s.state for s in seen] == [TaskState.QUEUED, TaskState.RUNNING, TaskState.COMPLETED]
    assert len({s.remote_id for s in seen}) == 1
    assert len(seen[-1].images) == 2
    assert seen[0].usage == {"total": 40, "subscription": 40, "permanent": 0}
    assert server.stats().skills_video.submits == 1


async def test_failed_generation_ends_the_stream() -> None:
    """A generation that fails ends its stream with a FAILED status and its code."""
    async with serve(_config()) as server, _adapter(server) as sv:
        seen: list[TaskStatus] = []
        await _collect(sv, make_job("x [[fail]]"), seen)
    assert seen[-1].state is TaskState.FAILED
    assert (seen[-1].error_code, seen[-1].retryable) == ("IMAGE_GENERATION_FAILED", True)


async def test_dropped_stream_names_the_task_to_poll() -> None:
    """A stream cut after its first frame raises StreamDropped with the task's id; the
    task is there to poll, and nothing was submitted twice."""
    async with serve(_config(latency_s=0.05, sse_drop=1.0)) as server, _adapter(server) as sv:
        seen: list[TaskStatus] = []
        with pytest.raises(StreamDropped) as info:
            await _collect(sv, make_job(), seen)
        assert [s.state for s in seen] == [TaskState.QUEUED]
        err = info.value
        assert err.remote_id == seen[0].remote_id
        assert (err.code, err.retryable, err.provider) == ("stream_dropped", False, "skills_video")
        assert isinstance(err, ProviderError)
        done = await wait_done(sv, err.remote_id)
        assert done.state is TaskState.COMPLETED
        assert server.stats().skills_video.submits == 1


async def test_a_silent_stream_counts_as_dropped() -> None:
    """No frame for ``stream_idle_s`` (a stuck task) is a dropped stream, id known."""
    async with serve(_config(latency_s=0.01)) as server, _adapter(server) as sv:
        sv.stream_idle_s = 0.3
        seen: list[TaskStatus] = []
        with pytest.raises(StreamDropped) as info:
            await _collect(sv, make_job("hangs [[stuck]]"), seen)
    assert [s.state for s in seen] == [TaskState.QUEUED, TaskState.RUNNING]
    assert info.value.remote_id == seen[0].remote_id


async def test_leaving_early_closes_the_stream() -> None:
    """A caller may stop after the first status; the task goes on at the provider."""
    async with serve(_config(latency_s=0.05)) as server, _adapter(server) as sv:
        async with aclosing(sv.stream(make_job())) as statuses:
            first = await anext(statuses)
        assert first.state is TaskState.QUEUED
        assert (await wait_done(sv, first.remote_id)).state is TaskState.COMPLETED


@pytest.mark.parametrize(
    ("faults", "prompt", "error", "code"),
    [
        ({"credits_after": 0}, "p", InsufficientCredits, "IMAGE_GENERATION_INSUFFICIENT_CREDITS"),
        ({}, "x [[reject]]", ProviderError, "IMAGE_GENERATION_CONTENT_REJECTED"),
        ({"permission_denied": 1.0}, "p", AuthError, "permission_denied"),
        ({"rate_429": 1.0}, "p", RateLimited, "IMAGE_GENERATION_RATE_LIMITED"),
        ({"submit_5xx": 1.0}, "p", ProviderError, None),
    ],
)
async def test_errors_before_the_stream_are_submit_errors(
    faults: dict[str, Any], prompt: str, error: type[ProviderError], code: str | None
) -> None:
    """Errors answered before the stream starts are mapped like a submit's (no task)."""
    async with serve(_config(**faults)) as server, _adapter(server) as sv:
        with pytest.raises(error) as info:
            await _collect(sv, make_job(prompt), [])
        assert server.stats().skills_video.submits == 0
    if code is not None:
        assert info.value.code == code
    else:
        assert info.value.retryable
    assert not isinstance(info.value, OutcomeUnknown | StreamDropped)


async def test_lost_before_the_first_frame_is_outcome_unknown() -> None:
    """A stream lost before its first frame is OutcomeUnknown, and the task is found
    again in the running list."""
    async with serve(_config(latency_s=30.0, lost_reply=1.0)) as server, _adapter(server) as sv:
        job = make_job("a lighthouse at dusk")
        with pytest.raises(OutcomeUnknown):
            await _collect(sv, job, [])
        running = await sv.running()
        assert len(running) == 1
        assert sv.matches(running[0], job)
        assert server.stats().skills_video.submits == 1


async def test_unreadable_first_answer_is_outcome_unknown() -> None:
    """A 200 that is neither a stream nor readable JSON is OutcomeUnknown (the task
    exists)."""
    async with serve(_config(malformed_json=1.0)) as server, _adapter(server) as sv:
        with pytest.raises(OutcomeUnknown) as info:
            await _collect(sv, make_job(), [])
        assert info.value.code == "bad_response"
        assert server.stats().skills_video.submits == 1


async def test_stream_start_cannot_connect() -> None:
    """Nothing listening: the stream's start is ProviderUnreachable (nothing was sent)."""
    async with serve(_config()) as server:
        base_url = server.base_url
    async with SkillsVideoAdapter(base_url=base_url, api_key=KEY) as sv:
        with pytest.raises(ProviderUnreachable) as info:
            await _collect(sv, make_job(), [])
    assert info.value.retryable
