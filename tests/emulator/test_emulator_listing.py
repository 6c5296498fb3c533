"""WaveSpeed's prediction listing (``POST /api/v3/predictions``) in the emulator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile, serve

pytestmark = pytest.mark.anyio

T2I = "/api/v3/kwaivgi/kling-image-o3/text-to-image"
EDIT = "/api/v3/kwaivgi/kling-image-o3/edit"
LIST = "/api/v3/predictions"
BODY: dict[str, Any] = {"prompt": "p", "aspect_ratio": "1:1", "resolution": "1k"}
DAY = 86400.0


async def post(session: aiohttp.ClientSession, url: str, body: object) -> tuple[int, Any]:
    async with session.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def submit(session: aiohttp.ClientSession, server: EmulatorServer, **body: Any) -> str:
    status, sub = await post(session, server.base_url + T2I, BODY | body)
    assert status == 200
    task_id: str = sub["data"]["id"]
    return task_id


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


async def test_newest_first_paged_without_input(session: aiohttp.ClientSession) -> None:
    """Pages of the listing go newest first, count ``total``, and carry no input."""
    async with serve(EmulatorConfig(latency_s=0.0, image_scale=0.125)) as server:
        ids = [await submit(session, server, prompt=f"p{i}") for i in range(5)]
        status, first = await post(session, server.base_url + LIST, {"page": 1, "page_size": 2})
        assert status == 200
        assert (first["code"], first["message"]) == (200, "success")
        assert (first["data"]["page"], first["data"]["total"]) == (1, 5)
        assert [i["id"] for i in first["data"]["items"]] == [ids[4], ids[3]]
        _, third = await post(session, server.base_url + LIST, {"page": 3, "page_size": 2})
        assert [i["id"] for i in third["data"]["items"]] == [ids[0]]
        _, past = await post(session, server.base_url + LIST, {"page": 4, "page_size": 2})
        assert past["data"]["items"] == []
        item = first["data"]["items"][0]
        assert set(item) == {
            "id",
            "model",
            "outputs",
            "urls",
            "has_nsfw_contents",
            "status",
            "created_at",
            "error",
            "timings",
        }
        assert item["status"] == "completed"
        assert item["outputs"][0].startswith(server.base_url + "/_emulator/files/")
        assert server.stats().wavespeed.polls == 3


async def test_filters(session: aiohttp.ClientSession) -> None:
    """``model``, ``status`` and the creation window select what is listed."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(EmulatorConfig(latency_s=10.0), clock=clock) as server:
        done = await submit(session, server)
        failed = await submit(session, server, prompt="x [[fail]]")
        clock.advance(20)
        running = await submit(session, server)
        _, sub = await post(session, server.base_url + EDIT, BODY | {"images": ["https://a.io/1"]})
        edit = sub["data"]["id"]
        wall = server.state.wall()

        async def listed(**query: Any) -> list[str]:
            status, answer = await post(session, server.base_url + LIST, query)
            assert status == 200, answer
            return [i["id"] for i in answer["data"]["items"]]

        assert await listed() == [edit, running, failed, done]
        assert await listed(model="kwaivgi/kling-image-o3/edit") == [edit]
        assert await listed(status="completed") == [done]
        assert await listed(status="failed") == [failed]
        assert await listed(status="processing") == [edit, running]
        assert await listed(created_after=iso(wall - 5)) == [edit, running]
        assert await listed(created_before=iso(wall - 5)) == [failed, done]
        naive = datetime.fromtimestamp(wall - 5, UTC).replace(tzinfo=None).isoformat()
        assert await listed(created_after=naive) == [edit, running]


@pytest.mark.parametrize(
    "query",
    [
        {"page": 0},
        {"page": "1"},
        {"page_size": 0},
        {"page_size": 101},
        {"status": "created"},
        {"model": 3},
        {"created_after": "yesterday"},
        {"created_before": 1700000000},
    ],
)
async def test_bad_query_is_400(
    emulator: EmulatorServer, session: aiohttp.ClientSession, query: dict[str, Any]
) -> None:
    """Each out-of-range or ill-typed listing field is a 400 in WaveSpeed's shape."""
    status, answer = await post(session, emulator.base_url + LIST, query)
    assert status == 400
    assert answer["code"] == 400
    assert answer["message"]


async def test_lists_only_within_retention(session: aiohttp.ClientSession) -> None:
    """Tasks older than the retention are gone from the listing (7 days by default)."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(EmulatorConfig(latency_s=0.0), clock=clock) as server:
        old = await submit(session, server)
        clock.advance(6 * DAY)
        new = await submit(session, server)
        _, answer = await post(session, server.base_url + LIST, {})
        assert [i["id"] for i in answer["data"]["items"]] == [new, old]
        clock.advance(1.5 * DAY)
        _, answer = await post(session, server.base_url + LIST, {})
        assert [i["id"] for i in answer["data"]["items"]] == [new]
        assert answer["data"]["total"] == 1


async def test_lost_replies_are_listed_by_both_apis(session: aiohttp.ClientSession) -> None:
    """A task whose submit reply was lost is in WaveSpeed's listing and skills.video's
    running list like any other."""
    faults = FaultProfile(lost_reply=1.0)
    config = EmulatorConfig(latency_s=30.0, faults=faults)
    async with serve(config) as server:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(session, server.base_url + T2I, BODY)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(
                session, server.base_url + "/api/v1/generation/kling-ai/o3-image", {"prompt": "p"}
            )
        [ws_task] = server.state.store.tasks("wavespeed")
        [sv_task] = server.state.store.tasks("skills_video")
        _, answer = await post(session, server.base_url + LIST, {"status": "processing"})
        assert [i["id"] for i in answer["data"]["items"]] == [ws_task.id]
        async with session.get(server.base_url + "/api/v1/generations/running") as resp:
            assert [i["id"] for i in await resp.json()] == [sv_task.id]
        stats = server.stats()
        assert (stats.wavespeed.submits, stats.wavespeed.resets) == (1, 1)
        assert (stats.skills_video.submits, stats.skills_video.resets) == (1, 1)
