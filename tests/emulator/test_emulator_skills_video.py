"""The skills.video v1 API of the emulator, over real HTTP."""

from __future__ import annotations

import io
import json
from typing import Any

import aiohttp
import pytest
from PIL import Image

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer, image_size, serve

pytestmark = pytest.mark.anyio

SUBMIT = "/api/v1/generation/kling-ai/o3-image"
BODY: dict[str, Any] = {"prompt": "a lighthouse at dusk", "aspect_ratio": "1:1", "n": 1}


async def post(session: aiohttp.ClientSession, url: str, body: object) -> tuple[int, Any]:
    async with session.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


async def test_happy_path(emulator: EmulatorServer, session: aiohttp.ClientSession) -> None:
    """Submit, poll, download: normalized input, usage in credits, sized images."""
    body = {"prompt": "a fox", "resolution": "2K", "output_format": "jpeg", "n": 2}
    status, sub = await post(session, emulator.base_url + SUBMIT, body)
    assert status == 200
    assert set(sub) == {"id", "status", "input", "usage"}
    assert sub["status"] == "IN_QUEUE"
    assert sub["input"] == {
        "prompt": "a fox",
        "resolution": "2K",
        "aspect_ratio": "16:9",
        "output_format": "jpeg",
        "n": 2,
    }
    assert sub["usage"] == {"total": 80, "subscription": 80, "permanent": 0}

    status, gen = await get(session, f"{emulator.base_url}/api/v1/generation/{sub['id']}")
    assert status == 200
    assert gen["status"] == "COMPLETED"
    assert gen["usage"] == sub["usage"]
    data = gen["data"]
    assert data["type"] == "image"
    assert data["n"] == 2
    assert data["actual_prompt"] == "a fox"
    assert data["image"] == data["images"][0]
    width, height = image_size("16:9", "2k", 0.125)
    hashes = set()
    for item in data["images"]:
        assert item["content_type"] == "image/jpeg"
        assert (item["width"], item["height"]) == (width, height)
        assert item["file_name"].endswith(".jpeg")
        async with session.get(item["url"]) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "image/jpeg"
            raw = await resp.read()
        img = Image.open(io.BytesIO(raw))
        assert img.format == "JPEG"
        assert img.size == (width, height)
        hashes.add(raw)
    assert len(hashes) == 2

    stats = emulator.stats().skills_video
    assert (stats.submits, stats.polls, stats.downloads) == (1, 1, 2)
    assert stats.charged == 80
    assert emulator.stats().wavespeed.requests == 0


async def test_image_references(emulator: EmulatorServer, session: aiohttp.ClientSession) -> None:
    """``@ImageN`` within image_urls and a bare ``@Image`` with one image are accepted."""
    urls = ["https://example.com/a.png", "http://example.com/b.png"]
    ok = [
        {"prompt": "@Image1 and @Image2 together", "image_urls": urls},
        {"prompt": "@Image as a watercolour", "image_urls": urls[:1]},
        {"prompt": "no references, @Images is just a word", "image_urls": urls},
    ]
    for body in ok:
        status, sub = await post(session, emulator.base_url + SUBMIT, body)
        assert status == 200, sub
        assert sub["input"]["image_urls"] == body["image_urls"]


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": ""},
        {"prompt": 3},
        {"prompt": "x" * 2501},
        {"resolution": "1k"},
        {"resolution": "4K"},
        {"aspect_ratio": "auto"},
        {"output_format": "gif"},
        {"n": 0},
        {"n": 5},
        {"n": True},
        {"image_urls": "https://example.com/a.png"},
        {"image_urls": ["ftp://example.com/a.png"]},
        {"image_urls": [f"https://example.com/{i}.png" for i in range(11)]},
        {"prompt": "@Image1 alone"},
        {"prompt": "@Image3 of two", "image_urls": ["https://a.io/1", "https://a.io/2"]},
        {"prompt": "@Image of two", "image_urls": ["https://a.io/1", "https://a.io/2"]},
    ],
)
async def test_invalid_input_is_400(
    emulator: EmulatorServer, session: aiohttp.ClientSession, change: dict[str, Any]
) -> None:
    """Each bad field gets 400 ``IMAGE_GENERATION_INVALID_INPUT`` and creates no task."""
    status, err = await post(session, emulator.base_url + SUBMIT, BODY | change)
    assert status == 400
    assert err["code"] == err["error"] == "IMAGE_GENERATION_INVALID_INPUT"
    assert err["message"]
    assert emulator.stats().skills_video.submits == 0


async def test_auth_and_not_found() -> None:
    """401 ``UNAUTHORIZED`` without/with a wrong key; 404 ``NOT_FOUND`` for unknown ids."""
    config = EmulatorConfig(latency_s=0, api_keys={"skills_video": "right"})
    async with serve(config) as server, aiohttp.ClientSession() as s:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with s.post(server.base_url + SUBMIT, json=BODY, headers=headers) as resp:
                assert resp.status == 401
                assert await resp.json() == {
                    "error": "UNAUTHORIZED",
                    "code": "UNAUTHORIZED",
                    "message": "Unauthorized: missing or invalid API key",
                }
        good = {"Authorization": "Bearer right"}
        async with s.get(server.base_url + "/api/v1/generation/gen_x", headers=good) as resp:
            assert resp.status == 404
            assert (await resp.json())["code"] == "NOT_FOUND"
        async with s.post(
            server.base_url + "/api/v1/generation/acme/other", json=BODY, headers=good
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["code"] == "IMAGE_GENERATION_UNSUPPORTED_MODEL"


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("upper", ["IN_QUEUE", "IN_QUEUE", "IN_PROGRESS", "COMPLETED"]),
        ("lower", ["starting", "starting", "processing", "succeeded"]),
    ],
)
async def test_life_cycle_and_status_styles(
    session: aiohttp.ClientSession, style: str, expected: list[str]
) -> None:
    """Both documented spellings, queued -> in progress -> completed on the clock."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    config = EmulatorConfig(latency_s=1.0, queue_s=0.4, skills_status_style=style)
    async with serve(config, clock=clock) as server:
        _, sub = await post(session, server.base_url + SUBMIT, BODY)
        seen, has_data = [sub["status"]], []
        for step in (0.0, 0.5, 0.5):
            clock.advance(step)
            _, gen = await get(session, f"{server.base_url}/api/v1/generation/{sub['id']}")
            seen.append(gen["status"])
            has_data.append(gen["data"] is not None)
        assert seen == expected
        assert has_data == [False, False, True]


async def test_failed_generation_carries_code(emulator: EmulatorServer) -> None:
    """A failed task shows FAILED with ``code`` and ``message`` and no data."""
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as s:
        _, sub = await post(s, emulator.base_url + SUBMIT, {"prompt": "x [[fail]]"})
        _, gen = await get(s, f"{emulator.base_url}/api/v1/generation/{sub['id']}")
    assert gen["status"] == "FAILED"
    assert gen["code"] == "IMAGE_GENERATION_FAILED"
    assert gen["message"]
    assert gen["data"] is None


async def test_running_list(session: aiohttp.ClientSession) -> None:
    """Unfinished tasks only, newest first, cut at ``limit``; bad limits are 400."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(EmulatorConfig(latency_s=1.0), clock=clock) as server:
        ids = []
        for i in range(3):
            _, sub = await post(session, server.base_url + SUBMIT, {"prompt": f"p{i}"})
            ids.append(sub["id"])
            clock.advance(0.4)
        url = server.base_url + "/api/v1/generations/running"
        status, items = await get(session, url + "?limit=100")
        assert status == 200
        assert [i["id"] for i in items] == [ids[2], ids[1]]  # ids[0] finished at t=1.0
        assert set(items[0]) == {"id", "status", "usage", "input"}
        _, items = await get(session, url + "?limit=1")
        assert [i["id"] for i in items] == [ids[2]]
        for bad in ("0", "101", "x"):
            status, err = await get(session, f"{url}?limit={bad}")
            assert status == 400
            assert err["code"] == "IMAGE_GENERATION_INVALID_INPUT"


async def test_sse_stream_sends_each_status(session: aiohttp.ClientSession) -> None:
    """The SSE variant sends one ``data:`` frame per status change, ending completed."""
    config = EmulatorConfig(latency_s=0.1, queue_s=0.05, image_scale=0.125)
    async with serve(config) as server:
        url = server.base_url + "/api/v1/generation/sse/kling-ai/o3-image"
        async with session.post(url, json=BODY) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            text = (await resp.read()).decode()
    frames = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert [f["status"] for f in frames] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert frames[-1]["data"]["images"][0]["url"].startswith(server.base_url)
