"""Adapter fixtures wired to the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from pipeline.emulator import EmulatorServer
from pipeline.providers._skills_video import SkillsVideoAdapter
from pipeline.providers._wavespeed import WaveSpeedAdapter

from ._support import KEY


@pytest.fixture
async def wavespeed(emulator: EmulatorServer) -> AsyncIterator[WaveSpeedAdapter]:
    """A WaveSpeed adapter pointed at the emulator."""
    async with WaveSpeedAdapter(base_url=emulator.base_url, api_key=KEY) as adapter:
        yield adapter


@pytest.fixture
async def skills(emulator: EmulatorServer) -> AsyncIterator[SkillsVideoAdapter]:
    """A skills.video adapter pointed at the emulator (0.002 USD per credit)."""
    async with SkillsVideoAdapter(
        base_url=emulator.base_url, api_key=KEY, usd_per_credit=0.002
    ) as adapter:
        yield adapter


@pytest.fixture
def emulator_tasks(emulator: EmulatorServer) -> Callable[[str], Awaitable[list[dict[str, Any]]]]:
    """Read what the emulator received: ``GET /_emulator/tasks?provider=``."""

    async def fetch(provider: str) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{emulator.base_url}/_emulator/tasks", params={"provider": provider}) as r,
        ):
            r.raise_for_status()
            tasks: list[dict[str, Any]] = await r.json()
            return tasks

    return fetch
