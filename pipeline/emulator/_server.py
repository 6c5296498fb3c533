"""Running the emulator: inside a test or a run (``serve``), or as ``pipeline emulate``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from aiohttp import web

from pipeline.clock import Clock
from pipeline.emulator._app import create_app
from pipeline.emulator._config import EmulatorConfig
from pipeline.emulator._state import STATE_KEY, EmulatorState
from pipeline.emulator._stats import EmulatorStats

# Open streams (a stuck task's SSE, a sync-mode wait) must not hold up shutdown for long.
_SHUTDOWN_TIMEOUT_S = 0.25


class EmulatorServer:
    """A running emulator: where it listens, its app and config, and live counters."""

    __slots__ = ("app", "base_url", "config")

    def __init__(self, app: web.Application, config: EmulatorConfig, base_url: str) -> None:
        self.app = app
        self.config = config
        self.base_url = base_url

    def __repr__(self) -> str:
        return f"EmulatorServer(base_url={self.base_url!r})"

    @property
    def state(self) -> EmulatorState:
        """The emulator's internal state (tasks, counters), for tests."""
        return self.app[STATE_KEY]

    def stats(self) -> EmulatorStats:
        """Live counters, the same data as ``GET /_emulator/stats``."""
        return self.state.stats()


def _base_url(host: str, port: int) -> str:
    # A wildcard bind is reachable on loopback; IPv6 literals need brackets in URLs.
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def serve(
    config: EmulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Clock | None = None,
) -> AsyncIterator[EmulatorServer]:
    """Serve both APIs on ``host:port`` (0 = any free port) for the block's duration.

    ``clock`` (default: the system's) drives task timelines, rate limits and waits; tests
    give a virtual one.
    Raises ``OSError`` if the address cannot be bound.
    """
    app = create_app(config, clock=clock)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield EmulatorServer(app, config, _base_url(str(bound_host), int(bound_port)))
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


async def serve_forever(
    config: EmulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8787,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled; ``ready(base_url)`` is called once listening. Prints nothing.

    Raises ``OSError`` if the address cannot be bound.
    """
    async with serve(config, host=host, port=port) as server:
        if ready is not None:
            ready(server.base_url)
        await anyio.sleep_forever()
