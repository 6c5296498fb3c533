"""The WaveSpeed v3 API of the emulator, over real HTTP."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest
from PIL import Image

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer, image_size, serve

pytestmark = pytest.mark.anyio

T2I = "/api/v3/kwaivgi/kling-image-o3/text-to-image"
EDIT = "/api/v3/kwaivgi/kling-image-o3/edit"
BODY: dict[str, Any] = {
    "prompt": "a lighthouse at dusk",
    "aspect_ratio": "16:9",
    "resolution": "1k",
    "num_images": 1,
    "output_format": "png",
}


async def post(
    session: aiohttp.ClientSession, url: str, body: object
) -> tuple[int, dict[str, Any]]:
    async with session.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


async def test_text_to_image_happy_path(
    emulator: EmulatorServer, session: aiohttp.ClientSession
) -> None:
    """Submit, poll to completion and download: a PNG of the requested ratio and size."""
    status, sub = await post(session, emulator.base_url + T2I, BODY | {"num_images": 2})
    assert status == 200
    assert sub["code"] == 200
    assert sub["message"] == "success"
    data = sub["data"]
    assert data["status"] == "created"
    assert data["model"] == "kwaivgi/kling-image-o3/text-to-image"
    assert data["outputs"] == []
    assert data["has_nsfw_contents"] == []
    assert data["error"] == ""
    assert data["timings"] == {"inference": 0}
    assert data["created_at"].endswith("Z")
    assert data["urls"]["get"] == f"{emulator.base_url}/api/v3/predictions/{data['id']}/result"

    status, res = await get(session, data["urls"]["get"])
    assert status == 200
    done = res["data"]
    assert done["status"] == "completed"
    assert len(done["outputs"]) == 2
    assert done["has_nsfw_contents"] == [False, False]

    bodies = []
    for url in done["outputs"]:
        async with session.get(url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "image/png"
            body = await resp.read()
            assert int(resp.headers["Content-Length"]) == len(body)
        img = Image.open(io.BytesIO(body))
        assert img.format == "PNG"
        assert img.size == image_size("16:9", "1k", 0.125) == (160, 90)
        bodies.append(body)
    assert bodies[0] != bodies[1]

    stats = emulator.stats().wavespeed
    assert (stats.submits, stats.polls, stats.downloads, stats.errors) == (1, 1, 2, 0)
    assert stats.charged == pytest.approx(0.056)
    assert stats.open_tasks == 0
    assert stats.peak_open_tasks == 1


async def test_both_poll_paths_and_formats(
    emulator: EmulatorServer, session: aiohttp.ClientSession
) -> None:
    """``/predictions/{id}`` answers like ``/result``; jpeg and webp are what they say."""
    for fmt, pil_name, ratio in (("jpeg", "JPEG", "9:16"), ("webp", "WEBP", "21:9")):
        body = BODY | {"output_format": fmt, "aspect_ratio": ratio, "resolution": "2k"}
        _, sub = await post(session, emulator.base_url + T2I, body)
        task_id = sub["data"]["id"]
        _, res = await get(session, f"{emulator.base_url}/api/v3/predictions/{task_id}")
        url = res["data"]["outputs"][0]
        assert url.endswith(f"/1.{fmt}")
        async with session.get(url) as resp:
            assert resp.headers["Content-Type"] == f"image/{fmt}"
            img = Image.open(io.BytesIO(await resp.read()))
        assert img.format == pil_name
        assert img.size == image_size(ratio, "2k", 0.125)


async def test_edit_endpoint(emulator: EmulatorServer, session: aiohttp.ClientSession) -> None:
    """The edit model needs ``images`` and accepts ``auto`` as aspect ratio."""
    body = BODY | {"aspect_ratio": "auto", "images": ["https://example.com/a.png"]}
    status, sub = await post(session, emulator.base_url + EDIT, body)
    assert status == 200
    assert sub["data"]["model"] == "kwaivgi/kling-image-o3/edit"
    status, err = await post(session, emulator.base_url + EDIT, BODY)
    assert status == 400
    assert err["code"] == 400
    assert "images" in err["message"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "x" * 2501}, "prompt"),
        ({"resolution": "8k"}, "resolution"),
        ({"resolution": "1K"}, "resolution"),
        ({"aspect_ratio": "5:4"}, "aspect_ratio"),
        ({"aspect_ratio": "auto"}, "aspect_ratio"),
        ({"output_format": "gif"}, "output_format"),
        ({"num_images": 0}, "num_images"),
        ({"num_images": 10}, "num_images"),
        ({"num_images": "2"}, "num_images"),
    ],
)
async def test_invalid_parameters_are_400(
    emulator: EmulatorServer,
    session: aiohttp.ClientSession,
    change: dict[str, Any],
    field: str,
) -> None:
    """Each bad field gets 400 ``{code, message}`` naming it, and creates no task."""
    status, err = await post(session, emulator.base_url + T2I, BODY | change)
    assert status == 400
    assert err["code"] == 400
    assert field in err["message"]
    assert emulator.stats().wavespeed.submits == 0


async def test_body_not_json_is_400(
    emulator: EmulatorServer, session: aiohttp.ClientSession
) -> None:
    """A body that is not a JSON object is a 400, not a crash."""
    async with session.post(emulator.base_url + T2I, data=b"{nope") as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == 400


async def test_auth() -> None:
    """No bearer, or the wrong one, is 401 in WaveSpeed's shape; the right one passes."""
    config = EmulatorConfig(latency_s=0, api_keys={"wavespeed": "right"})
    async with serve(config) as server, aiohttp.ClientSession() as s:
        url = server.base_url + T2I
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            async with s.post(url, json=BODY, headers=headers) as resp:
                assert resp.status == 401
                assert (await resp.json())["code"] == 401
        async with s.post(url, json=BODY, headers={"Authorization": "Bearer right"}) as resp:
            assert resp.status == 200


async def test_unknown_id_and_path_are_404(
    emulator: EmulatorServer, session: aiohttp.ClientSession
) -> None:
    """Unknown predictions and unknown models answer 404 ``{code, message}``."""
    status, err = await get(session, emulator.base_url + "/api/v3/predictions/nope/result")
    assert status == 404
    assert err["code"] == 404
    status, err = await post(session, emulator.base_url + "/api/v3/acme/other-model", BODY)
    assert status == 404
    assert err["code"] == 404


async def test_life_cycle_with_queue_and_latency(session: aiohttp.ClientSession) -> None:
    """created -> processing -> completed at the fixed times; inference time reported."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    config = EmulatorConfig(latency_s=2.0, queue_s=0.5, image_scale=0.125)
    async with serve(config, clock=clock) as server:
        _, sub = await post(session, server.base_url + T2I, BODY)
        url = sub["data"]["urls"]["get"]
        seen = []
        for step in (0.0, 0.49, 0.02, 1.48, 0.02):
            clock.advance(step)
            _, res = await get(session, url)
            seen.append(res["data"]["status"])
        assert seen == ["created", "created", "processing", "processing", "completed"]
        assert res["data"]["timings"]["inference"] == 1500
        assert server.stats().wavespeed.in_flight == 0
        assert server.stats().wavespeed.peak_in_flight == 1


async def test_images_404_until_completed(session: aiohttp.ClientSession) -> None:
    """An image URL of an unfinished task, a bad index or extension is 404."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(EmulatorConfig(latency_s=1.0, image_scale=0.125), clock=clock) as server:
        _, sub = await post(session, server.base_url + T2I, BODY)
        task_id = sub["data"]["id"]
        base = f"{server.base_url}/_emulator/files/{task_id}"
        async with session.get(f"{base}/1.png") as resp:
            assert resp.status == 404
        clock.advance(1.0)
        for name, expected in (("1.png", 200), ("2.png", 404), ("1.jpeg", 404), ("x.png", 404)):
            async with session.get(f"{base}/{name}") as resp:
                assert resp.status == expected, name
        assert server.stats().wavespeed.downloads == 1


async def test_sync_mode_waits_for_the_result(session: aiohttp.ClientSession) -> None:
    """``enable_sync_mode`` returns the finished prediction in the submit reply."""
    async with serve(EmulatorConfig(latency_s=0.05, image_scale=0.125)) as server:
        _, sub = await post(session, server.base_url + T2I, BODY | {"enable_sync_mode": True})
        assert sub["data"]["status"] == "completed"
        assert len(sub["data"]["outputs"]) == 1


async def test_sync_mode_times_out_with_5004(session: aiohttp.ClientSession) -> None:
    """A sync submit that outlives ``sync_timeout_s`` answers processing with code 5004."""
    config = EmulatorConfig(latency_s=30, sync_timeout_s=0.05, image_scale=0.125)
    async with serve(config) as server:
        _, sub = await post(session, server.base_url + T2I, BODY | {"enable_sync_mode": True})
        assert sub["data"]["status"] == "processing"
        assert sub["data"]["code"] == 5004


async def test_delete_and_balance(emulator: EmulatorServer, session: aiohttp.ClientSession) -> None:
    """Deleted predictions are gone; the balance drops by the price of created tasks."""
    _, sub = await post(session, emulator.base_url + T2I, BODY | {"resolution": "4k"})
    task_id = sub["data"]["id"]
    _, bal = await get(session, emulator.base_url + "/api/v3/balance")
    assert bal["code"] == 200
    assert bal["data"]["balance"] == pytest.approx(100 - 0.056)
    status, res = await post(
        session, emulator.base_url + "/api/v3/predictions/delete", {"ids": [task_id, "nope"]}
    )
    assert status == 200
    assert res["data"]["ids"] == [task_id]
    status, _ = await get(session, f"{emulator.base_url}/api/v3/predictions/{task_id}/result")
    assert status == 404


async def test_duplicate_submits_are_counted(
    emulator: EmulatorServer, session: aiohttp.ClientSession
) -> None:
    """Two submits with the same normalized input count one duplicate; others none."""
    url = emulator.base_url + T2I
    await post(session, url, BODY)
    await post(session, url, BODY | {"extra_field": "ignored"})
    await post(session, url, BODY | {"prompt": "something else"})
    stats = emulator.stats().wavespeed
    assert stats.submits == 3
    assert stats.duplicate_submits == 1
