"""Serving the emulator: control endpoints, stats over HTTP, serve_forever."""

from __future__ import annotations

import aiohttp
import anyio
import pytest

from pipeline.emulator import EmulatorConfig, EmulatorServer, EmulatorStats, serve, serve_forever

pytestmark = pytest.mark.anyio

SV_SUBMIT = "/api/v1/generation/kling-ai/o3-image"


async def test_stats_and_tasks_endpoints(
    emulator: EmulatorServer, session: aiohttp.ClientSession
) -> None:
    """``/_emulator/stats`` equals ``stats()``; ``/_emulator/tasks`` lists every task."""
    async with session.post(emulator.base_url + SV_SUBMIT, json={"prompt": "p"}) as resp:
        task_id = (await resp.json())["id"]
    async with session.get(emulator.base_url + "/_emulator/stats") as resp:
        remote = EmulatorStats.from_dict(await resp.json())
    assert remote == emulator.stats()
    assert remote.skills_video.submits == 1
    async with session.get(emulator.base_url + "/_emulator/tasks?provider=skills_video") as resp:
        tasks = await resp.json()
    assert [t["id"] for t in tasks] == [task_id]
    assert tasks[0]["provider"] == "skills_video"
    assert tasks[0]["status"] == "completed"
    assert tasks[0]["input"]["prompt"] == "p"
    assert tasks[0]["completed_at"].endswith("Z")
    async with session.get(emulator.base_url + "/_emulator/tasks?provider=wavespeed") as resp:
        assert await resp.json() == []
    async with session.get(emulator.base_url + "/_emulator/tasks?provider=acme") as resp:
        assert resp.status == 400


async def test_serve_forever_reports_ready_and_stops_on_cancel() -> None:
    """``ready`` gets the base URL once listening; cancelling the scope shuts it down."""
    urls: list[str] = []
    listening = anyio.Event()

    def ready(url: str) -> None:
        urls.append(url)
        listening.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_forever, EmulatorConfig(latency_s=0), "127.0.0.1", 0, ready)
        with anyio.fail_after(5):
            await listening.wait()
        async with aiohttp.ClientSession() as s, s.get(urls[0] + "/_emulator/health") as resp:
            assert await resp.json() == {"ok": True}
        tg.cancel_scope.cancel()
    assert urls[0].startswith("http://127.0.0.1:")


async def test_shutdown_with_open_stream(session: aiohttp.ClientSession) -> None:
    """A stuck task's SSE stream does not hold up leaving ``serve``."""
    with anyio.fail_after(3):
        async with serve(EmulatorConfig(latency_s=0.01)) as server:
            url = server.base_url + "/api/v1/generation/sse/kling-ai/o3-image"
            resp = await session.post(url, json={"prompt": "hangs [[stuck]]"})
            lines = [await resp.content.readline() for _ in range(3)]
            assert b"IN_QUEUE" in lines[0]
            assert lines[1] == b"\n"
            assert b"IN_PROGRESS" in lines[2]
        resp.release()
