"""Shared fixtures: every async test runs on asyncio; the emulator runs on 127.0.0.1:0.

A test that asks for ``clock`` runs in virtual time: the pipeline (``emulator_options(...,
clock=clock)``) and the emulator (the ``emulator`` fixture, or ``serve(...,
clock=clock)``) share one ``VirtualClock``, and stamina's back-off waits are off
(its testing mode, attempts unchanged). Requests still cross real sockets.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
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


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real PostgreSQL 16 (the ``pgserver`` wheel) for the whole session, on a unix
    socket in a temporary folder; stopped and removed at the end."""
    runtime = tmp_path_factory.mktemp("xdg-runtime")
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)  # pgserver's platformdirs asks for one
    from pgserver.postgres_server import get_server

    server = get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: Any) -> str:
    """The URL of a new, empty database of the session's PostgreSQL, for this test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    url: str = postgres_server.get_uri(name)
    return url


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
