"""Shared fixtures: every async test runs on asyncio; the emulator runs on 127.0.0.1:0.

A test that asks for ``clock`` runs in virtual time: the pipeline (``emulator_options(...,
clock=clock)``) and the emulator (the ``emulator`` fixture, or ``serve(...,
clock=clock)``) share one ``VirtualClock``, and stamina's back-off waits are off
(its testing mode, attempts unchanged). Requests still cross real sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import stamina

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer, serve


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs only on asyncio."""
    return "asyncio"


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """The test's virtual clock (``clock`` runs it)."""
    return VirtualClock()


@pytest.fixture
async def clock(virtual_clock: VirtualClock) -> AsyncIterator[VirtualClock]:
    """Virtual time for the test (see the module docstring)."""
    with stamina.set_testing(True, attempts=1000, cap=True):
        async with virtual_clock.running() as running:
            yield running


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Zero latency and small images: fast, but every request is real HTTP."""
    return EmulatorConfig(latency_s=0.0, image_scale=0.125)


@pytest.fixture
async def emulator(
    emulator_config: EmulatorConfig, request: pytest.FixtureRequest
) -> AsyncIterator[EmulatorServer]:
    """A running emulator serving both providers on an ephemeral port (on the test's
    virtual clock when it has one)."""
    virtual = None
    if "clock" in request.fixturenames:  # the same clock (a plain fixture: asked for here)
        virtual = request.getfixturevalue("virtual_clock")
    async with serve(emulator_config, host="127.0.0.1", port=0, clock=virtual) as server:
        yield server
