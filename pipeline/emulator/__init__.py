"""A local emulator of both provider APIs (WaveSpeedAI v3 and skills.video v1).

One aiohttp application serves both APIs at their real paths, plus the generated images
and a few control endpoints (``/_emulator/...``). Used by ``pipeline run --emulate``,
``pipeline emulate``, the tests and the benchmarks. Faults and server-side limits are
configured with :class:`FaultProfile`.
"""

from __future__ import annotations

from pipeline.emulator.app import create_app
from pipeline.emulator.config import PROVIDERS, EmulatorConfig, FaultProfile
from pipeline.emulator.images import image_size
from pipeline.emulator.server import EmulatorServer, serve, serve_forever
from pipeline.emulator.stats import EmulatorStats, ProviderStats

__all__ = [
    "PROVIDERS",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorStats",
    "FaultProfile",
    "ProviderStats",
    "create_app",
    "image_size",
    "serve",
    "serve_forever",
]
