"""The official WaveSpeed SDK runs unchanged against the emulator."""

from __future__ import annotations

import io

import aiohttp
import anyio.to_thread
import pytest
import wavespeed
from PIL import Image

from pipeline.emulator import EmulatorConfig, image_size, serve

pytestmark = pytest.mark.anyio

MODEL = "kwaivgi/kling-image-o3/text-to-image"


async def test_sdk_run_completes_text_to_image() -> None:
    """``Client.run`` submits, polls to completion and returns downloadable PNG URLs."""
    config = EmulatorConfig(latency_s=0.2, queue_s=0.05, image_scale=0.125)
    async with serve(config) as server:
        client = wavespeed.Client(api_key="test-key", base_url=server.base_url)
        body = {"prompt": "a lighthouse", "aspect_ratio": "3:2", "resolution": "1k"}

        def run() -> dict[str, object]:
            result: dict[str, object] = client.run(MODEL, body, timeout=10, poll_interval=0.05)
            return result

        result = await anyio.to_thread.run_sync(run)
        outputs = result["outputs"]
        assert isinstance(outputs, list)
        assert len(outputs) == 1
        async with aiohttp.ClientSession() as s, s.get(outputs[0]) as resp:
            raw = await resp.read()
        img = Image.open(io.BytesIO(raw))
        assert img.format == "PNG"
        assert img.size == image_size("3:2", "1k", 0.125)
        assert img.size[0] * 2 == img.size[1] * 3
        stats = server.stats().wavespeed
        assert stats.submits == 1
        assert stats.polls >= 2
        assert stats.errors == 0


async def test_sdk_reports_a_failed_task() -> None:
    """A task that fails reaches the SDK as its documented failure, with our message."""
    async with serve(EmulatorConfig(latency_s=0.0, image_scale=0.125)) as server:
        client = wavespeed.Client(api_key="test-key", base_url=server.base_url, max_retries=0)

        def run() -> object:
            return client.run(MODEL, {"prompt": "x [[fail]]"}, timeout=10, poll_interval=0.05)

        with pytest.raises(RuntimeError, match="Task execution failed"):
            await anyio.to_thread.run_sync(run)
