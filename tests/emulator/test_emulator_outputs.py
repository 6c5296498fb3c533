"""Outputs over time in the emulator: retention, expiring signed URLs, cut downloads."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from PIL import Image

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, FaultProfile, serve

pytestmark = pytest.mark.anyio

WS_SUBMIT = "/api/v3/kwaivgi/kling-image-o3/text-to-image"
SV_SUBMIT = "/api/v1/generation/kling-ai/o3-image"
WS_BODY: dict[str, Any] = {"prompt": "p", "aspect_ratio": "1:1", "resolution": "1k"}


def config(**faults: Any) -> EmulatorConfig:
    return EmulatorConfig(latency_s=0.0, image_scale=0.125, faults=FaultProfile(**faults))


async def ws_poll(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as resp:
        await resp.read()
        return resp.status


async def test_wavespeed_retention_deleted_then_purged(session: aiohttp.ClientSession) -> None:
    """Past retention a WaveSpeed poll says ``deleted`` (no outputs, images 410); once
    purged it is 404 like an unknown id."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(config(retention_s=100.0, purge_s=50.0), clock=clock) as server:
        async with session.post(server.base_url + WS_SUBMIT, json=WS_BODY) as resp:
            poll_url = (await resp.json())["data"]["urls"]["get"]
        _, done = await ws_poll(session, poll_url)
        image_url = done["data"]["outputs"][0]
        assert done["data"]["status"] == "completed"
        assert await status_of(session, image_url) == 200
        clock.advance(100.0)
        status, gone = await ws_poll(session, poll_url)
        assert status == 200
        assert gone["data"]["status"] == "deleted"
        assert gone["data"]["outputs"] == []
        assert await status_of(session, image_url) == 410
        clock.advance(50.0)
        status, answer = await ws_poll(session, poll_url)
        assert (status, answer["code"]) == (404, 404)
        assert await status_of(session, image_url) == 404


async def test_skills_retention_is_404(session: aiohttp.ClientSession) -> None:
    """skills.video documents no deleted status: past retention a poll answers 404 and
    the images 410."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(config(retention_s=60.0), clock=clock) as server:
        async with session.post(server.base_url + SV_SUBMIT, json={"prompt": "p"}) as resp:
            task_id = (await resp.json())["id"]
        poll_url = f"{server.base_url}/api/v1/generation/{task_id}"
        _, done = await ws_poll(session, poll_url)
        image_url = done["data"]["images"][0]["url"]
        clock.advance(60.0)
        status, answer = await ws_poll(session, poll_url)
        assert (status, answer["code"]) == (404, "NOT_FOUND")
        assert await status_of(session, image_url) == 410


async def test_signed_urls_expire_and_each_poll_issues_fresh_ones(
    session: aiohttp.ClientSession,
) -> None:
    """With ``url_ttl_s`` every poll signs new URLs; one expires ``url_ttl_s`` after the
    poll that issued it (403), a later poll's still works; unsigned or forged URLs 403."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(config(url_ttl_s=30.0), clock=clock) as server:
        async with session.post(server.base_url + WS_SUBMIT, json=WS_BODY) as resp:
            poll_url = (await resp.json())["data"]["urls"]["get"]
        _, first = await ws_poll(session, poll_url)
        old = first["data"]["outputs"][0]
        clock.advance(20.0)
        _, second = await ws_poll(session, poll_url)
        new = second["data"]["outputs"][0]
        assert urlsplit(old).path == urlsplit(new).path
        assert old != new
        assert await status_of(session, old) == 200
        clock.advance(10.0)  # 30 s after the first poll, 10 s after the second
        async with session.get(old) as resp:
            assert resp.status == 403
            assert (await resp.json())["message"] == "Request has expired"
        async with session.get(new) as resp:
            assert resp.status == 200
            assert Image.open(io.BytesIO(await resp.read())).format == "PNG"
        plain = urlsplit(new)._replace(query="").geturl()
        assert await status_of(session, plain) == 403
        expires = parse_qs(urlsplit(new).query)["expires"][0]
        forged = f"{plain}?expires={int(expires) + 60_000}&sig=0123456789abcdef0123456789abcdef"
        async with session.get(forged) as resp:
            assert resp.status == 403
            assert (await resp.json())["message"] == "Signature does not match"


async def test_skills_urls_are_signed_too(session: aiohttp.ClientSession) -> None:
    """skills.video's ``data.images[].url`` are signed the same way."""
    async with serve(config(url_ttl_s=5.0)) as server:
        async with session.post(server.base_url + SV_SUBMIT, json={"prompt": "p"}) as resp:
            task_id = (await resp.json())["id"]
        _, done = await ws_poll(session, f"{server.base_url}/api/v1/generation/{task_id}")
        url = done["data"]["images"][0]["url"]
        assert "sig=" in url
        assert "expires=" in url
        assert await status_of(session, url) == 200


async def test_first_download_of_each_image_is_cut(session: aiohttp.ClientSession) -> None:
    """``truncate_first_download`` cuts each image's first download short, not later ones."""
    async with serve(config(truncate_first_download=True)) as server:
        body = WS_BODY | {"num_images": 2}
        async with session.post(server.base_url + WS_SUBMIT, json=body) as resp:
            poll_url = (await resp.json())["data"]["urls"]["get"]
        _, done = await ws_poll(session, poll_url)
        for url in done["data"]["outputs"]:
            with pytest.raises(aiohttp.ClientPayloadError):
                async with session.get(url) as resp:
                    await resp.read()
            async with session.get(url) as resp:
                raw = await resp.read()
                assert len(raw) == int(resp.headers["Content-Length"])
            assert Image.open(io.BytesIO(raw)).size == (128, 128)
        assert server.stats().wavespeed.downloads == 4
