"""Shared fixtures: every async test runs on asyncio; the emulator runs on 127.0.0.1:0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline.emulator import EmulatorConfig, EmulatorServer, serve


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs only on asyncio."""
    return "asyncio"


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Zero latency and small images: fast, but every request is real HTTP."""
    return EmulatorConfig(latency_s=0.0, image_scale=0.125)


@pytest.fixture
async def emulator(emulator_config: EmulatorConfig) -> AsyncIterator[EmulatorServer]:
    """A running emulator serving both providers on an ephemeral port."""
    async with serve(emulator_config, host="127.0.0.1", port=0) as server:
        yield server
