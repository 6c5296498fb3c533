"""WaveSpeed adapter: the listing (``recent``), lost replies found again, retention and
expiring output URLs, against the emulator."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile, serve
from pipeline.errors import ErrorCode, OutcomeUnknown, ProviderError
from pipeline.providers import SPECS, ImageRef, ListedTask, TaskState
from pipeline.providers._wavespeed import WaveSpeedAdapter, iso_time, listing_matches, parse_time

from ._support import KEY, make_job

pytestmark = pytest.mark.anyio

DAY = 86400.0
T2I = "kwaivgi/kling-image-o3/text-to-image"
EDIT = "kwaivgi/kling-image-o3/edit"
REF = "https://example.com/ref.png"


def _adapter(server: EmulatorServer) -> WaveSpeedAdapter:
    return WaveSpeedAdapter(base_url=server.base_url, api_key=KEY)


def _config(latency_s: float = 0.0, **faults: Any) -> EmulatorConfig:
    return EmulatorConfig(latency_s=latency_s, image_scale=0.125, faults=FaultProfile(**faults))


async def test_recent_lists_tasks_since_newest_first() -> None:
    """``recent`` returns every status, both models, newest first, nothing before since."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(_config(latency_s=5.0), clock=clock) as server, _adapter(server) as ws:
        old = await ws.submit(make_job("old"))
        clock.advance(60)
        since = server.state.wall()
        done = await ws.submit(make_job("done"))
        failed = await ws.submit(make_job("x [[fail]]"))
        clock.advance(10)
        edit = await ws.submit(make_job("@Image1 again", image_urls=[REF]))
        listed = await ws.recent(since=since)
        assert [t.remote_id for t in listed] == [edit.remote_id, failed.remote_id, done.remote_id]
        assert [t.state for t in listed] == [
            TaskState.RUNNING,
            TaskState.FAILED,
            TaskState.COMPLETED,
        ]
        assert [t.model for t in listed] == [EDIT, T2I, T2I]
        assert all(t.input is None for t in listed)
        assert listed[0].created_at == pytest.approx(since + 10, abs=0.01)
        assert listed[2].created_at == pytest.approx(since, abs=0.01)
        assert len(listed[2].images) == 1
        assert old.remote_id not in {t.remote_id for t in await ws.recent(since=since)}
        assert len(await ws.recent(since=since - 60)) == 4
        assert [t.remote_id for t in await ws.recent(since=since, limit=1)] == [edit.remote_id]


async def test_recent_pages_through_the_listing(emulator: EmulatorServer) -> None:
    """More tasks than a page: ``recent`` follows the pages up to ``limit``."""
    async with _adapter(emulator) as ws:
        since = emulator.state.wall() - 1
        ids = [(await ws.submit(make_job(f"p{i}"))).remote_id for i in range(130)]
        polls = emulator.stats().wavespeed.polls
        listed = await ws.recent(since=since, limit=120)
        assert [t.remote_id for t in listed] == ids[::-1][:120]
        assert emulator.stats().wavespeed.polls == polls + 2
        everything = await ws.recent(since=since, limit=1000)
        assert len(everything) == 130
        assert len(await ws.recent(since=since)) == 100


async def test_a_lost_submit_is_found_again() -> None:
    """A submit whose reply was lost (OutcomeUnknown) shows up in ``recent``, and
    ``matches`` tells the job's task from another job's."""
    async with serve(_config(latency_s=30.0, lost_reply=0.5)) as server, _adapter(server) as ws:
        since = server.state.wall()
        other = await ws.submit(make_job("@Image1 edit", image_urls=[REF]))
        job = make_job("a lighthouse")
        with pytest.raises(OutcomeUnknown):
            await ws.submit(job)
        listed = await ws.recent(since=since)
        assert len(listed) == 2
        candidates = [t for t in listed if ws.matches(t, job)]
        assert len(candidates) == 1
        assert candidates[0].remote_id != other.remote_id
        assert (await ws.poll(candidates[0].remote_id)).state is TaskState.RUNNING
        assert server.stats().wavespeed.submits == 2


async def test_retention_deleted_is_expired_and_404_is_not() -> None:
    """Past retention a poll is FAILED ``expired`` (the API said ``deleted``) and the task
    leaves the listing; once purged, the 404 stays a final ProviderError."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(_config(purge_s=DAY), clock=clock) as server, _adapter(server) as ws:
        since = server.state.wall()
        task = await ws.submit(make_job())
        done = await ws.poll(task.remote_id)
        assert done.state is TaskState.COMPLETED
        clock.advance(7 * DAY)
        gone = await ws.poll(task.remote_id)
        assert (gone.state, gone.error_code, gone.retryable) == (
            TaskState.FAILED,
            ErrorCode.EXPIRED,
            False,
        )
        assert gone.error_message is not None
        assert "deleted" in gone.error_message
        assert gone.images == ()
        assert await ws.recent(since=since) == []
        async with aiohttp.ClientSession() as session, session.get(done.images[0].url) as resp:
            assert resp.status == 410
        clock.advance(DAY)
        with pytest.raises(ProviderError) as info:
            await ws.poll(task.remote_id)
        assert (info.value.http_status, info.value.code, info.value.retryable) == (
            404,
            "404",
            False,
        )


async def test_each_poll_carries_its_own_urls() -> None:
    """A poll's images are the URLs that poll issued: an older poll's expire first."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with (
        serve(_config(url_ttl_s=60.0), clock=clock) as server,
        _adapter(server) as ws,
        aiohttp.ClientSession() as session,
    ):
        task = await ws.submit(make_job())
        first = await ws.poll(task.remote_id)
        clock.advance(45)
        second = await ws.poll(task.remote_id)
        assert first.images != second.images
        clock.advance(15)
        async with session.get(first.images[0].url) as resp:
            assert resp.status == 403
        async with session.get(second.images[0].url) as resp:
            assert resp.status == 200


async def test_skills_cannot_list_recent_and_wavespeed_cannot_stream(
    emulator: EmulatorServer,
) -> None:
    """The protocol's defaults: ``recent`` None without a listing, ``stream`` refuses."""
    from pipeline.providers._skills_video import SkillsVideoAdapter

    async with (
        SkillsVideoAdapter(base_url=emulator.base_url, api_key=KEY) as sv,
        _adapter(emulator) as ws,
    ):
        assert await sv.recent(since=0.0) is None
        with pytest.raises(NotImplementedError, match="wavespeed"):
            ws.stream(make_job())
    assert SPECS["wavespeed"].lists_recent
    assert not SPECS["wavespeed"].streams
    assert SPECS["skills_video"].streams
    assert not SPECS["skills_video"].lists_recent
    assert SPECS["wavespeed"].retention_s == 7 * DAY


@pytest.mark.parametrize(
    ("task", "job_kw", "expected"),
    [
        (ListedTask("t", TaskState.RUNNING, model=T2I), {}, True),
        (ListedTask("t", TaskState.RUNNING), {}, True),
        (ListedTask("t", TaskState.RUNNING, model=EDIT), {}, False),
        (ListedTask("t", TaskState.RUNNING, model=EDIT), {"image_urls": [REF]}, True),
        (ListedTask("t", TaskState.RUNNING, input={"prompt": "other"}), {}, False),
        (
            ListedTask("t", TaskState.COMPLETED, images=(ImageRef("https://x/1.png"),)),
            {"n": 2},
            False,
        ),
        (
            ListedTask("t", TaskState.COMPLETED, images=(ImageRef("https://x/1.jpg?sig=1"),)),
            {"output_format": "jpeg"},
            True,
        ),
        (
            ListedTask("t", TaskState.COMPLETED, images=(ImageRef("https://x/1.webp"),)),
            {"output_format": "png"},
            False,
        ),
        (
            ListedTask("t", TaskState.COMPLETED, images=(ImageRef("https://x/file"),)),
            {"output_format": "png"},
            True,
        ),
    ],
)
def test_listing_matches(task: ListedTask, job_kw: dict[str, Any], expected: bool) -> None:
    """A listed task matches unless its model, prompt, image count or format contradicts."""
    assert listing_matches(task, make_job(**job_kw)) is expected


def test_times_round_trip() -> None:
    """ISO times read as epoch seconds (UTC when naive); garbage reads as None."""
    assert parse_time(iso_time(1_700_000_000.25)) == pytest.approx(1_700_000_000.25)
    assert parse_time("2023-11-14T22:13:20") == 1_700_000_000.0
    assert parse_time("2023-11-14T23:13:20+01:00") == 1_700_000_000.0
    assert parse_time("last tuesday") is None
    assert parse_time(None) is None
