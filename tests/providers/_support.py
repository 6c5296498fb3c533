"""Helpers shared by the provider tests."""

from __future__ import annotations

from typing import Any, Protocol

import anyio

from pipeline.jobs import Job, JobParams
from pipeline.providers.base import TaskStatus

KEY = "test-key"
# A key that must never show up in any error message.
SECRET = "sk-test-0123456789abcdef"


class Poller(Protocol):
    """Anything with the adapters' ``poll``."""

    async def poll(self, remote_id: str) -> TaskStatus: ...


def make_job(prompt: str = "a lighthouse at dusk", provider: str = "x", **params: Any) -> Job:
    """A job with this prompt and these ``JobParams`` fields (the rest default)."""
    if "image_urls" in params:
        params["image_urls"] = tuple(params["image_urls"])
    return Job(
        id="job-1", prompt_id="p1", provider=provider, prompt=prompt, params=JobParams(**params)
    )


async def wait_done(adapter: Poller, remote_id: str, *, timeout_s: float = 5.0) -> TaskStatus:
    """Poll until the task is terminal (fails the test after ``timeout_s``)."""
    with anyio.fail_after(timeout_s):
        while True:
            status = await adapter.poll(remote_id)
            if status.state.terminal:
                return status
            await anyio.sleep(0.02)
