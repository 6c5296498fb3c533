"""Fault injection and server-side limits of the emulator."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, FaultProfile, serve

pytestmark = pytest.mark.anyio

WS_SUBMIT = "/api/v3/kwaivgi/kling-image-o3/text-to-image"
SV_SUBMIT = "/api/v1/generation/kling-ai/o3-image"
WS_BODY: dict[str, Any] = {"prompt": "p", "aspect_ratio": "1:1", "resolution": "1k"}
SV_BODY: dict[str, Any] = {"prompt": "p"}


def config(faults: FaultProfile, **kw: Any) -> EmulatorConfig:
    return EmulatorConfig(
        latency_s=kw.pop("latency_s", 0.0), image_scale=0.125, faults=faults, **kw
    )


async def test_rate_429_with_retry_after(session: aiohttp.ClientSession) -> None:
    """``rate_429`` answers 429 in each provider's shape, with the configured Retry-After."""
    async with serve(config(FaultProfile(rate_429=1.0, retry_after=3))) as server:
        async with session.post(server.base_url + WS_SUBMIT, json=WS_BODY) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "3"
            assert (await resp.json())["code"] == 429
        async with session.post(server.base_url + SV_SUBMIT, json=SV_BODY) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "3"
            assert (await resp.json())["code"] == "IMAGE_GENERATION_RATE_LIMITED"
        stats = server.stats()
        assert stats.wavespeed.rate_limited == 1
        assert stats.skills_video.rate_limited == 1
        assert stats.wavespeed.submits == 0


async def test_429_without_retry_after(session: aiohttp.ClientSession) -> None:
    """With ``retry_after=None`` the 429 carries no Retry-After header."""
    async with serve(config(FaultProfile(rate_429=1.0))) as server:
        resp = await session.post(server.base_url + SV_SUBMIT, json=SV_BODY)
        resp.release()
        assert resp.status == 429
        assert "Retry-After" not in resp.headers


async def test_max_rps_is_enforced_per_provider(session: aiohttp.ClientSession) -> None:
    """A burst of ``max_rps`` passes, the rest get 429 until tokens refill; lanes apart."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(config(FaultProfile(max_rps=2)), clock=clock) as server:

        async def burst(path: str, body: dict[str, Any], count: int) -> list[int]:
            codes = []
            for _ in range(count):
                async with session.post(server.base_url + path, json=body) as resp:
                    codes.append(resp.status)
            return codes

        assert await burst(WS_SUBMIT, WS_BODY, 4) == [200, 200, 429, 429]
        assert await burst(SV_SUBMIT, SV_BODY, 3) == [200, 200, 429]
        clock.advance(0.5)  # one token back at 2 per second
        assert await burst(WS_SUBMIT, WS_BODY, 2) == [200, 429]
        clock.advance(10)  # the bucket refills only up to its burst size
        assert await burst(WS_SUBMIT, WS_BODY, 3) == [200, 200, 429]
        assert server.stats().wavespeed.rate_limited == 4


async def test_stuck_task_never_finishes(session: aiohttp.ClientSession) -> None:
    """A stuck task stays processing however long the client waits (within retention)."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(config(FaultProfile(stuck=1.0), latency_s=1.0), clock=clock) as server:
        async with session.post(server.base_url + WS_SUBMIT, json=WS_BODY) as resp:
            url = (await resp.json())["data"]["urls"]["get"]
        clock.advance(6 * 86400)
        async with session.get(url) as resp:
            data = (await resp.json())["data"]
        assert data["status"] == "processing"
        assert data["outputs"] == []
        assert server.stats().wavespeed.in_flight == 1


async def test_stuck_prompt_trigger(session: aiohttp.ClientSession) -> None:
    """The ``[[stuck]]`` marker makes just that task stuck."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(EmulatorConfig(latency_s=1.0), clock=clock) as server:
        ids = []
        for prompt in ("fine", "hangs [[stuck]]"):
            async with session.post(server.base_url + SV_SUBMIT, json={"prompt": prompt}) as r:
                ids.append((await r.json())["id"])
        clock.advance(100)
        statuses = []
        for task_id in ids:
            async with session.get(f"{server.base_url}/api/v1/generation/{task_id}") as r:
                statuses.append((await r.json())["status"])
        assert statuses == ["COMPLETED", "IN_PROGRESS"]


async def test_task_fail_codes(session: aiohttp.ClientSession) -> None:
    """``task_fail`` ends WaveSpeed tasks failed with 1403 or 5000 and an error message."""
    async with serve(config(FaultProfile(task_fail=1.0), seed=7)) as server:
        codes = set()
        for i in range(12):
            body = WS_BODY | {"prompt": f"p{i}"}
            async with session.post(server.base_url + WS_SUBMIT, json=body) as resp:
                url = (await resp.json())["data"]["urls"]["get"]
            async with session.get(url) as resp:
                data = (await resp.json())["data"]
            assert data["status"] == "failed"
            assert data["error"]
            assert data["outputs"] == []
            codes.add(data["code"])
        assert codes == {1403, 5000}


async def test_content_reject(session: aiohttp.ClientSession) -> None:
    """Moderation: skills.video refuses the submit with 422; WaveSpeed fails with 1200."""
    async with serve(config(FaultProfile(content_reject=1.0))) as server:
        async with session.post(server.base_url + SV_SUBMIT, json=SV_BODY) as resp:
            assert resp.status == 422
            assert (await resp.json())["code"] == "IMAGE_GENERATION_CONTENT_REJECTED"
        async with session.post(server.base_url + WS_SUBMIT, json=WS_BODY) as resp:
            url = (await resp.json())["data"]["urls"]["get"]
        async with session.get(url) as resp:
            data = (await resp.json())["data"]
        assert data["status"] == "failed"
        assert data["code"] == 1200


async def test_submit_and_poll_5xx(session: aiohttp.ClientSession) -> None:
    """``submit_5xx`` fails submits without creating tasks; ``poll_5xx`` fails polls."""
    async with serve(config(FaultProfile(submit_5xx=1.0))) as server:
        for _ in range(4):
            async with session.post(server.base_url + SV_SUBMIT, json=SV_BODY) as resp:
                assert resp.status in (500, 502, 503, 504)
                assert (await resp.json())["code"]
        assert server.stats().skills_video.submits == 0
        assert server.stats().skills_video.errors == 4
    async with serve(config(FaultProfile(poll_5xx=1.0))) as server:
        async with session.post(server.base_url + WS_SUBMIT, json=WS_BODY) as resp:
            url = (await resp.json())["data"]["urls"]["get"]
        async with session.get(url) as resp:
            assert resp.status in (500, 502, 503, 504)
            assert (await resp.json())["code"] == resp.status


async def test_reset_after_create_leaves_a_task(session: aiohttp.ClientSession) -> None:
    """A reset submit gets no reply, yet its task exists (the ambiguous outcome)."""
    async with serve(config(FaultProfile(reset=1.0))) as server:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.post(server.base_url + SV_SUBMIT, json=SV_BODY):
                pass
        stats = server.stats().skills_video
        assert stats.resets == 1
        assert stats.submits == 1
    async with serve(config(FaultProfile(reset=1.0, reset_before_create=True))) as server:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.post(server.base_url + SV_SUBMIT, json=SV_BODY):
                pass
        assert server.stats().skills_video.submits == 0


async def test_malformed_json(session: aiohttp.ClientSession) -> None:
    """``malformed_json`` answers 200 with a body that does not parse."""
    async with serve(config(FaultProfile(malformed_json=1.0))) as server:
        async with session.post(server.base_url + WS_SUBMIT, json=WS_BODY) as resp:
            assert resp.status == 200
            with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
                await resp.json()
        assert server.stats().wavespeed.submits == 1


async def test_truncated_download(session: aiohttp.ClientSession) -> None:
    """``truncate_download`` sends fewer bytes than its Content-Length promises."""
    async with serve(config(FaultProfile(truncate_download=1.0))) as server:
        async with session.post(server.base_url + WS_SUBMIT, json=WS_BODY) as resp:
            url = (await resp.json())["data"]["urls"]["get"]
        async with session.get(url) as resp:
            image_url = (await resp.json())["data"]["outputs"][0]
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get(image_url) as resp:
                await resp.read()


async def test_auth_fail_after_and_credits_after(session: aiohttp.ClientSession) -> None:
    """401 after N requests; 402 after N created tasks, each in the provider's shape."""
    async with serve(config(FaultProfile(auth_fail_after=2))) as server:
        codes = []
        for _ in range(3):
            async with session.post(server.base_url + SV_SUBMIT, json=SV_BODY) as resp:
                codes.append(resp.status)
        assert codes == [200, 200, 401]
    async with serve(config(FaultProfile(credits_after=1))) as server:
        for path, body, code in (
            (SV_SUBMIT, SV_BODY, "IMAGE_GENERATION_INSUFFICIENT_CREDITS"),
            (WS_SUBMIT, WS_BODY, 402),
        ):
            statuses = []
            for _ in range(2):
                async with session.post(server.base_url + path, json=body) as resp:
                    statuses.append(resp.status)
                    last = await resp.json()
            assert statuses == [200, 402]
            assert last["code"] == code


async def test_wavespeed_max_concurrent_queues(session: aiohttp.ClientSession) -> None:
    """Over ``max_concurrent``, WaveSpeed tasks wait ``created`` until a slot frees."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    faults = FaultProfile(max_concurrent=2)
    async with serve(config(faults, latency_s=1.0), clock=clock) as server:
        urls = []
        for i in range(3):
            body = WS_BODY | {"prompt": f"p{i}"}
            async with session.post(server.base_url + WS_SUBMIT, json=body) as resp:
                assert resp.status == 200
                urls.append((await resp.json())["data"]["urls"]["get"])

        async def statuses() -> list[str]:
            out = []
            for url in urls:
                async with session.get(url) as resp:
                    out.append((await resp.json())["data"]["status"])
            return out

        assert await statuses() == ["processing", "processing", "created"]
        clock.advance(1.0)
        assert await statuses() == ["completed", "completed", "processing"]
        clock.advance(1.0)
        assert await statuses() == ["completed", "completed", "completed"]
        assert server.stats().wavespeed.peak_in_flight == 3


async def test_skills_max_concurrent_refuses(session: aiohttp.ClientSession) -> None:
    """Over ``max_concurrent``, skills.video answers 429 until a task finishes."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    faults = FaultProfile(max_concurrent=1, retry_after=2)
    async with serve(config(faults, latency_s=1.0), clock=clock) as server:
        statuses = []
        for step in (0.0, 0.5, 0.5):
            clock.advance(step)
            async with session.post(server.base_url + SV_SUBMIT, json=SV_BODY) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert resp.headers["Retry-After"] == "2"
        assert statuses == [200, 429, 200]


async def test_provider_faults_override(session: aiohttp.ClientSession) -> None:
    """``provider_faults`` applies a profile to one provider only."""
    cfg = EmulatorConfig(latency_s=0, provider_faults={"skills_video": FaultProfile(rate_429=1.0)})
    async with serve(cfg) as server:
        async with session.post(server.base_url + SV_SUBMIT, json=SV_BODY) as resp:
            assert resp.status == 429
        async with session.post(server.base_url + WS_SUBMIT, json=WS_BODY) as resp:
            assert resp.status == 200


def test_profile_validation() -> None:
    """Out-of-range rates and limits are refused when the profile is built."""
    with pytest.raises(ValueError, match="task_fail"):
        FaultProfile(task_fail=1.5)
    with pytest.raises(ValueError, match="max_rps"):
        FaultProfile(max_rps=0)
    with pytest.raises(ValueError, match="skills_status_style"):
        EmulatorConfig(skills_status_style="camel")
    with pytest.raises(ValueError, match="provider_faults"):
        EmulatorConfig(provider_faults={"acme": FaultProfile()})
